"""The recommendation arm: real MovieLens, Last.fm and Book-Crossing data as LLM tasks.

Data (this part): raw readers (:mod:`~eraserlib.rec.readers`), item names
(:mod:`~eraserlib.rec.catalog`), the per-user leave-last-out split
(:mod:`~eraserlib.rec.sequences`), the LLaRA-style next-item task
(:mod:`~eraserlib.rec.next_item`), the TALLRec-style binary task
(:mod:`~eraserlib.rec.preference`) and the seeded corruptions that become unlearning requests
(:mod:`~eraserlib.rec.corruption`).
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
