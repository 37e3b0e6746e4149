"""The recommendation arm: real MovieLens, Last.fm and Book-Crossing data as LLM tasks.

Data (this part): raw readers (:mod:`~eraserlib.rec.readers`), item names
(:mod:`~eraserlib.rec.catalog`), the per-user leave-last-out split
(:mod:`~eraserlib.rec.sequences`), the LLaRA-style next-item task
(:mod:`~eraserlib.rec.next_item`), the TALLRec-style binary task
(:mod:`~eraserlib.rec.preference`) and the seeded corruptions that become unlearning requests
(:mod:`~eraserlib.rec.corruption`).

Models and experiments: the tokenizer (:mod:`~eraserlib.rec.tokenizer`), the prompts
(:mod:`~eraserlib.rec.prompts`), examples → tensors and the loss (:mod:`~eraserlib.rec.task`),
the small Llama or a local checkpoint with a LoRA adapter (:mod:`~eraserlib.rec.model`), the
cached base pre-trained on held-out users (:mod:`~eraserlib.rec.pretrain`), generation and
scoring (:mod:`~eraserlib.rec.evaluate`), LLaRA's metrics (:mod:`~eraserlib.rec.metrics`), one
request's data (:mod:`~eraserlib.rec.scenarios`) and the experiment that runs every method on it
(``from eraserlib.rec.experiment import run_experiment``; not imported here, so that the data
layer stays free of torch).
"""

from eraserlib.rec.catalog import clean_movie_title
from eraserlib.rec.corruption import (
    Corruption,
    Removal,
    remove_examples,
    remove_last_history_item,
    replace_last_history_item,
    replace_targets,
)
from eraserlib.rec.next_item import (
    NextItemDataset,
    NextItemExample,
    lastfm_next_item,
    llara_next_item,
    movielens_next_item,
)
from eraserlib.rec.preference import (
    MissingTitlesWarning,
    PreferenceDataset,
    PreferenceExample,
    bookcrossing_preference,
    movielens_preference,
)

__all__ = [
    "Corruption",
    "MissingTitlesWarning",
    "NextItemDataset",
    "NextItemExample",
    "PreferenceDataset",
    "PreferenceExample",
    "Removal",
    "bookcrossing_preference",
    "clean_movie_title",
    "lastfm_next_item",
    "llara_next_item",
    "movielens_next_item",
    "movielens_preference",
    "remove_examples",
    "remove_last_history_item",
    "replace_last_history_item",
    "replace_targets",
]
