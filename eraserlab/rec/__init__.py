"""The recommendation arm: real MovieLens, Last.fm and Book-Crossing data as LLM tasks.

Data (this part): raw readers (:mod:`~eraserlab.rec.readers`), item names
(:mod:`~eraserlab.rec.catalog`), the per-user leave-last-out split
(:mod:`~eraserlab.rec.sequences`), the LLaRA-style next-item task
(:mod:`~eraserlab.rec.next_item`), the TALLRec-style binary task
(:mod:`~eraserlab.rec.preference`) and the seeded corruptions that become unlearning requests
(:mod:`~eraserlab.rec.corruption`).

Models and experiments: the tokenizer (:mod:`~eraserlab.rec.tokenizer`), the prompts
(:mod:`~eraserlab.rec.prompts`), examples → tensors and the loss (:mod:`~eraserlab.rec.task`),
the small Llama or a local checkpoint with a LoRA adapter (:mod:`~eraserlab.rec.model`), the
cached base pre-trained on held-out users (:mod:`~eraserlab.rec.pretrain`), generation and
scoring (:mod:`~eraserlab.rec.evaluate`), LLaRA's metrics (:mod:`~eraserlab.rec.metrics`), one
request's data (:mod:`~eraserlab.rec.scenarios`) and the experiment that runs every method on it
(``from eraserlab.rec.experiment import run_experiment``; not imported here, so that the data
layer stays free of torch).
"""

from eraserlab.rec.catalog import clean_movie_title
from eraserlab.rec.corruption import (
    Corruption,
    Removal,
    remove_examples,
    remove_last_history_item,
    replace_last_history_item,
    replace_targets,
)
from eraserlab.rec.next_item import (
    NextItemDataset,
    NextItemExample,
    lastfm_next_item,
    llara_next_item,
    movielens_next_item,
)
from eraserlab.rec.preference import (
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
