"""Per-user interaction sequences and the leave-last-out split both recommendation tasks use.

Split (the same for the next-item and the binary preference task): each user's interactions
are put in order (by time where the data has it); the item at position ``p`` is a *target*
when at least ``min_history`` items precede it, and its history is the up to ``max_history``
items just before it. The user's last target is a **test** example, the one before it a
**validation** example, and all earlier ones are **training** examples. So every user is seen
in training and evaluated on their most recent behaviour, no evaluation target is ever a
training target, and a user's test history may contain that user's training targets (as in
SASRec-style leave-one-out evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The three splits, in the order a dataset stores them.
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class UserSequence:
    """One user's interactions in order.

    Args:
        user: The user id.
        items: ``(L,)`` int64 item ids, oldest (or first in the chosen order) first.
        ratings: ``(L,)`` the ratings / weights aligned with ``items``, or ``None``.
    """

    user: int
    items: np.ndarray
    ratings: np.ndarray | None = None


def user_sequences(
    interactions: pd.DataFrame,
    order_by: Sequence[str],
    rating_column: str | None = None,
) -> list[UserSequence]:
    """Group interactions by user and order each user's items.

    Ties in ``order_by`` (e.g. MovieLens ratings given in the same second) are broken by item
    id, so the order never depends on the file's row order.

    Args:
        interactions: Columns ``user``, ``item`` and those named in ``order_by``.
        order_by: Columns that define the order within a user (e.g. ``["timestamp"]``).
        rating_column: A column to carry along (``"rating"``, ``"weight"``), or ``None``.

    Returns:
        One :class:`UserSequence` per user, by increasing user id.
    """
    keys = ["user", *order_by, "item"]
    ordered = interactions.sort_values(keys, kind="stable")
    users = ordered["user"].to_numpy()
    items = ordered["item"].to_numpy(dtype=np.int64)
    ratings = ordered[rating_column].to_numpy() if rating_column else None
    # Boundaries of each user's block in the sorted arrays.
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return [
        UserSequence(
            user=int(users[s]),
            items=items[s:e],
            ratings=None if ratings is None else ratings[s:e],
        )
        for s, e in zip(starts, ends)
    ]


def leave_last_out(length: int, min_history: int) -> dict[str, list[int]]:
    """Target positions of one user's sequence for each split (see the module docstring).

    Args:
        length: Number of interactions of the user.
        min_history: The fewest items a history may have.

    Returns:
        ``{"train": [...], "validation": [p] or [], "test": [p] or []}``, positions in order.
    """
    targets = list(range(min_history, length))
    return {
        "train": targets[:-2],
        "validation": targets[-2:-1],
        "test": targets[-1:],
    }


def iter_targets(
    sequences: Sequence[UserSequence],
    min_history: int,
    max_history: int,
    max_train_per_user: int | None = None,
) -> Iterator[tuple[str, UserSequence, int, slice]]:
    """Walk every target of every user with its split and its history window.

    Args:
        sequences: From :func:`user_sequences`.
        min_history: The fewest items a history may have.
        max_history: The most items a history keeps (the most recent ones).
        max_train_per_user: Keep only each user's most recent training targets (``None``: all).
            Evaluation examples are unaffected.

    Yields:
        ``(split, sequence, position, history_slice)`` where ``sequence.items[history_slice]``
        is the history and ``sequence.items[position]`` the target.
    """
    if min_history < 1 or max_history < min_history:
        raise ValueError(
            f"need 1 <= min_history <= max_history, got min_history={min_history}, "
            f"max_history={max_history}"
        )
    for sequence in sequences:
        positions = leave_last_out(len(sequence.items), min_history)
        if max_train_per_user is not None:
            # The most recent ones: they are closest in time to the evaluation targets.
            keep = max(0, max_train_per_user)
            positions["train"] = positions["train"][-keep:] if keep else []
        for split in SPLITS:
            for position in positions[split]:
                yield split, sequence, position, slice(max(0, position - max_history), position)


def describe_split(min_history: int, max_history: int, max_train_per_user: int | None) -> str:
    """One sentence that tells a reader how examples and splits were made (datasets' notes).

    Args:
        min_history: Fewest history items.
        max_history: Most history items.
        max_train_per_user: The cap on training targets per user, or ``None``.

    Returns:
        The sentence.
    """
    cap = (
        ""
        if max_train_per_user is None
        else f" Only each user's {max_train_per_user} most recent training targets are kept."
    )
    return (
        f"Histories of {min_history}–{max_history} items; per-user leave-last-out split (each "
        "user's last target is a test example, the one before a validation example, earlier "
        "ones are training examples)." + cap
    )
