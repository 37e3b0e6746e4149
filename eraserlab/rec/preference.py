"""The TALLRec-style binary task: "will the user like this item?", scored by AUC.

Each example shows a user's up to 10 previous items, each marked liked or not, and asks about
one more item; the label says whether the user liked it. TALLRec (Bao et al., RecSys 2023)
builds it this way, and LLMEraser uses it on Book-Crossing for instance removal.

* MovieLens: liked means rating > 3 (TALLRec's rule), items in time order.
* Book-Crossing: liked means rating > 5, i.e. 6–10 on the 1–10 scale (TALLRec's rule). TALLRec
  keeps the implicit ratings (0, "interacted, no rating") and so counts them as "not liked";
  here they are left out by default (``include_implicit=False``), because an implicit rating
  says nothing about liking. Book-Crossing has no timestamps: as TALLRec does, each user's
  books are put in a seeded random order. Without ``BX-Books.csv`` (the project's data folder
  lacks it) books are named by their ISBN; the dataset's ``title_source`` says ``"isbn"`` and a
  :class:`MissingTitlesWarning` is raised.

Splits are per-user leave-last-out (see :mod:`eraserlab.rec.sequences`); TALLRec instead keeps
one example per user and splits users 8:1:1.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eraserlab.rec import catalog, readers
from eraserlab.rec.random_draws import random_draws
from eraserlab.rec.sequences import (
    SPLITS,
    UserSequence,
    describe_split,
    iter_targets,
    user_sequences,
)

MIN_HISTORY = 3
MAX_HISTORY = 10
#: TALLRec's "liked" rule: rating strictly above this.
MOVIELENS_LIKE_ABOVE = 3
BOOKCROSSING_LIKE_ABOVE = 5


class MissingTitlesWarning(UserWarning):
    """Items are named by an identifier (ISBN) because the file with their titles is absent."""


@dataclass(frozen=True)
class PreferenceExample:
    """One binary preference question: history (with likes) → will the user like ``item``?

    Args:
        user: The user id.
        position: Index of ``item`` in the user's ordered sequence.
        history: Previous item ids, oldest first (1 to 10).
        history_titles: Their names.
        history_liked: Whether the user liked each history item.
        item: The item asked about.
        item_title: Its name.
        label: 1 if the user liked it, else 0.
        rating: The user's raw rating of it.
    """

    user: int
    position: int
    history: tuple[int, ...]
    history_titles: tuple[str, ...]
    history_liked: tuple[bool, ...]
    item: int
    item_title: str
    label: int
    rating: int


@dataclass(frozen=True)
class PreferenceDataset:
    """The three splits of a binary preference task.

    Args:
        name: ``"movielens"`` or ``"bookcrossing"``.
        item_titles: ``{item id: name}``.
        train: Training examples, by user then position.
        validation: One example per user (where the user has enough ratings).
        test: One example per user.
        like_above: An item is liked when its rating is strictly above this.
        title_source: ``"title"`` when items are named by title, ``"isbn"`` when by ISBN.
        item_keys: ``{item id: original key}`` where ids were assigned here (Book-Crossing:
            the ISBN), else empty.
        notes: How the data was built, in sentences for a reader.
    """

    name: str
    item_titles: Mapping[int, str]
    train: tuple[PreferenceExample, ...]
    validation: tuple[PreferenceExample, ...]
    test: tuple[PreferenceExample, ...]
    like_above: int
    title_source: str = "title"
    item_keys: Mapping[int, str] | None = None
    notes: tuple[str, ...] = ()

    def split(self, name: str) -> tuple[PreferenceExample, ...]:
        """The examples of one split (``"train"``, ``"validation"`` or ``"test"``)."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; one of {SPLITS}")
        return getattr(self, name)


def build_preference_examples(
    sequences: Sequence[UserSequence],
    item_titles: Mapping[int, str],
    like_above: int,
    *,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    max_train_per_user: int | None = None,
) -> dict[str, tuple[PreferenceExample, ...]]:
    """Turn ordered, rated user sequences into binary examples for each split.

    Args:
        sequences: From :func:`eraserlab.rec.sequences.user_sequences` with ratings.
        item_titles: ``{id: name}``.
        like_above: Liked means rating > ``like_above``.
        min_history: Fewest history items.
        max_history: Most history items (the most recent).
        max_train_per_user: Keep only each user's most recent training targets.

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}``.
    """
    splits: dict[str, list[PreferenceExample]] = {split: [] for split in SPLITS}
    for split, sequence, position, window in iter_targets(
        sequences, min_history, max_history, max_train_per_user
    ):
        history = tuple(sequence.items[window].tolist())
        liked = tuple(bool(r > like_above) for r in sequence.ratings[window].tolist())
        item = int(sequence.items[position])
        rating = int(sequence.ratings[position])
        splits[split].append(
            PreferenceExample(
                user=sequence.user,
                position=position,
                history=history,
                history_titles=tuple(map(item_titles.__getitem__, history)),
                history_liked=liked,
                item=item,
                item_title=item_titles[item],
                label=int(rating > like_above),
                rating=rating,
            )
        )
    return {split: tuple(examples) for split, examples in splits.items()}


def movielens_preference(
    root: str | os.PathLike | None = None,
    *,
    like_above: int = MOVIELENS_LIKE_ABOVE,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    max_train_per_user: int | None = None,
) -> PreferenceDataset:
    """MovieLens 100K as TALLRec's "will the user like this movie?" task.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        like_above: Liked means rating > this (TALLRec: 3).
        min_history: Fewest history items.
        max_history: Most history items.
        max_train_per_user: Keep only each user's most recent training targets (``None``: all).

    Returns:
        The dataset, items named by cleaned title.
    """
    ratings = readers.read_movielens_ratings(root)
    titles = catalog.movielens_titles(root)
    sequences = user_sequences(ratings, ["timestamp"], rating_column="rating")
    splits = build_preference_examples(
        sequences,
        titles,
        like_above,
        min_history=min_history,
        max_history=max_history,
        max_train_per_user=max_train_per_user,
    )
    liked_share = float((ratings["rating"] > like_above).mean())
    notes = (
        f"MovieLens 100K, liked = rating > {like_above} (TALLRec's rule; {liked_share:.1%} of "
        "ratings); histories in time order.",
        describe_split(min_history, max_history, max_train_per_user),
    )
    return PreferenceDataset(
        name="movielens", item_titles=titles, like_above=like_above, notes=notes, **splits
    )


def bookcrossing_preference(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    like_above: int = BOOKCROSSING_LIKE_ABOVE,
    include_implicit: bool = False,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    max_train_per_user: int | None = None,
) -> PreferenceDataset:
    """Book-Crossing as TALLRec's "will the user like this book?" task (LLMEraser's IR setting).

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        seed: Seeds each user's random order of books (the data has no timestamps).
        like_above: Liked means rating > this (TALLRec: 5).
        include_implicit: Keep implicit ratings (0) as "not liked", as TALLRec does.
        min_history: Fewest history items.
        max_history: Most history items.
        max_train_per_user: Keep only each user's last training targets (``None``: all).

    Returns:
        The dataset. Item ids are assigned here (0..N-1 in ISBN order, ``item_keys`` maps them
        back). ``title_source`` is ``"isbn"`` when ``BX-Books.csv`` is absent.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the partial-slice warning is restated in the notes
        ratings = readers.read_bx_ratings(root)
    source, partial = ratings.attrs["source"], ratings.attrs["partial"]
    if not include_implicit:
        ratings = ratings[ratings["rating"] > 0]
    isbns = sorted(ratings["isbn"].unique())
    item_ids = {isbn: i for i, isbn in enumerate(isbns)}
    ratings = ratings.assign(item=ratings["isbn"].map(item_ids).astype("int64"))
    names, title_source = catalog.book_names(isbns, root)
    titles = {item_ids[isbn]: name for isbn, name in names.items()}
    # No timestamps: a seeded, per-(user, book) random key orders each user's books.
    keys = np.stack([ratings["user"].to_numpy(), ratings["item"].to_numpy()], axis=1)
    ratings = ratings.assign(shuffle_key=random_draws(seed, keys, 0, 1)[:, 0])
    sequences = user_sequences(ratings, ["shuffle_key"], rating_column="rating")
    splits = build_preference_examples(
        sequences,
        titles,
        like_above,
        min_history=min_history,
        max_history=max_history,
        max_train_per_user=max_train_per_user,
    )
    notes = [
        f"Book-Crossing from {source}"
        + (" (a 3.4% slice of the ratings: users 43,842–55,178)" if partial else "")
        + f": {len(ratings):,} {'' if include_implicit else 'explicit '}ratings of "
        f"{len(sequences):,} users on {len(isbns):,} books; liked = rating > {like_above} "
        "(TALLRec's rule)"
        + ("; implicit ratings (0) count as not liked, as in TALLRec." if include_implicit
           else "; implicit ratings (0) are left out."),
        f"No timestamps: each user's books are in a random order fixed by seed {seed}.",
        describe_split(min_history, max_history, max_train_per_user),
    ]
    if title_source == "isbn":
        message = (
            "Book-Crossing: BX-Books.csv is missing, so books are named by their ISBN, not by "
            "title; an LLM sees no text about the books. Put BX-Books.csv in the book-crossing "
            "data folder to use titles."
        )
        warnings.warn(message, MissingTitlesWarning, stacklevel=2)
        notes.append(message)
    return PreferenceDataset(
        name="bookcrossing",
        item_titles=titles,
        like_above=like_above,
        title_source=title_source,
        item_keys={i: isbn for isbn, i in item_ids.items()},
        notes=tuple(notes),
        **splits,
    )

