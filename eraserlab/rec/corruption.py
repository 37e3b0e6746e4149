"""Seeded corruptions of a training set, each returned with its clean twin so the request is exact.

LLMEraser's experiments (Ding et al., ICLR 2025) corrupt part of the training data, fine-tune the adapter on
the corrupted set, then ask for the corruption to be undone:

* **Query modification (QM)**: a share of histories lose their last item
  (:func:`remove_last_history_item`) or have it replaced by a random item
  (:func:`replace_last_history_item`).
* **Response correction (RC)**: a share of targets are replaced by a wrong item
  (:func:`replace_targets`).
* **Instance removal (IR)**: a share of the examples, or all examples of chosen users, are to be
  forgotten (:func:`remove_examples`).

For QM and RC the result is a :class:`Corruption`: train the adapter on ``corrupted``, retrain
on ``clean``, and ask eraserlib for ``QueryModification(old, new)`` /
``ResponseCorrection(old, new)`` with ``old`` the corrupted examples and ``new`` their clean
versions. For IR it is a :class:`Removal`: train on ``train``, retrain on ``retained``, and ask
for ``InstanceRemoval(removed)``.

How many: ``floor(ratio × n)`` examples of the n in the training set (the official code's
``int(ratio * total_rows)``), chosen uniformly without replacement among the eligible ones.
Which examples and which replacement items are chosen depends only on the seed and the
examples given.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eraserlab.rec.next_item import MIN_HISTORY, NextItemExample

QM_REMOVAL = "query_modification/remove_last_history_item"
QM_REPLACEMENT = "query_modification/replace_last_history_item"
RC_TARGET = "response_correction/replace_target"


@dataclass(frozen=True)
class Corruption:
    """A training set and its corrupted twin; they differ exactly at ``indices``.

    Args:
        kind: Which corruption (:data:`QM_REMOVAL`, :data:`QM_REPLACEMENT`, :data:`RC_TARGET`).
        clean: The whole clean training set (what Retrain trains on).
        corrupted: The whole corrupted training set (what the adapter is trained on), same
            order and length as ``clean``.
        indices: Positions of the changed examples, ascending.
        ratio: The requested share.
        seed: The seed used.
    """

    kind: str
    clean: tuple[Any, ...]
    corrupted: tuple[Any, ...]
    indices: tuple[int, ...]
    ratio: float
    seed: int

    @property
    def old(self) -> tuple[Any, ...]:
        """The corrupted examples (the request's ``old``), in ``indices`` order."""
        return tuple(self.corrupted[i] for i in self.indices)

    @property
    def new(self) -> tuple[Any, ...]:
        """Their clean versions (the request's ``new``), aligned with :attr:`old`."""
        return tuple(self.clean[i] for i in self.indices)


@dataclass(frozen=True)
class Removal:
    """A training set and the examples an instance-removal request deletes from it.

    Args:
        train: The whole training set (what the adapter is trained on).
        indices: Positions of the examples to forget, ascending.
        seed: The seed used (``None`` when users were given explicitly).
    """

    train: tuple[Any, ...]
    indices: tuple[int, ...]
    seed: int | None = None

    @property
    def removed(self) -> tuple[Any, ...]:
        """The examples to forget (the request's examples)."""
        return tuple(self.train[i] for i in self.indices)

    @property
    def retained(self) -> tuple[Any, ...]:
        """The training set without them (what Retrain trains on)."""
        drop = set(self.indices)
        return tuple(example for i, example in enumerate(self.train) if i not in drop)


def corruption_count(ratio: float, n: int) -> int:
    """How many of ``n`` examples a ratio selects: ``floor(ratio × n)``.

    Args:
        ratio: A share in [0, 1].
        n: The training-set size.

    Returns:
        The count.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    # The epsilon keeps e.g. 0.1 × 30 (= 3.0000000000000004 or 2.9999999999999996) at 3.
    return int(math.floor(ratio * n + 1e-9))


def remove_last_history_item(
    examples: Sequence[NextItemExample],
    ratio: float,
    seed: int,
    min_history: int = MIN_HISTORY,
) -> Corruption:
    """QM "removal": drop the most recent history item of a share of the examples.

    Only examples whose history is longer than ``min_history`` are eligible, so that every
    corrupted history still has at least ``min_history`` items (as the official code requires
    ``len_seq > 3``). Candidates and target are unchanged.

    Args:
        examples: The clean training set.
        ratio: Share of the whole training set to corrupt.
        seed: Chooses the examples.
        min_history: Fewest items a corrupted history may keep.

    Returns:
        The :class:`Corruption`.

    Raises:
        ValueError: Fewer eligible examples than the ratio asks for.
    """
    eligible = [i for i, e in enumerate(examples) if len(e.history) > min_history]
    chosen = _choose(eligible, corruption_count(ratio, len(examples)), seed, QM_REMOVAL)
    corrupted = list(examples)
    for i in chosen:
        e = examples[i]
        corrupted[i] = dataclasses.replace(
            e, history=e.history[:-1], history_titles=e.history_titles[:-1]
        )
    return Corruption(QM_REMOVAL, tuple(examples), tuple(corrupted), chosen, ratio, seed)


def replace_last_history_item(
    examples: Sequence[NextItemExample],
    ratio: float,
    seed: int,
    item_titles: Mapping[int, str],
) -> Corruption:
    """QM "replacement": put a random item in place of the most recent history item.

    The noise item is drawn uniformly from ``item_titles`` among items that are not in the
    history, not a candidate (so the candidate list stays valid) and whose name differs from all
    of those. Every example is eligible. (The official code appends the noise item instead when
    the history has fewer than 10 items; here the history length never changes.)

    Args:
        examples: The clean training set.
        ratio: Share of the whole training set to corrupt.
        seed: Chooses the examples and the noise items.
        item_titles: ``{id: name}`` of the catalogue to draw noise items from.

    Returns:
        The :class:`Corruption`.
    """
    count = corruption_count(ratio, len(examples))
    chosen = _choose(range(len(examples)), count, seed, QM_REPLACEMENT)
    rng = np.random.default_rng([seed, _salt(QM_REPLACEMENT), 1])
    pool = np.array(sorted(item_titles), dtype=np.int64)
    corrupted = list(examples)
    for i in chosen:
        e = examples[i]
        taken = set(e.history) | set(e.candidates)
        names = {item_titles[j] for j in taken}
        noise = _draw_item(pool, rng, lambda j: j not in taken and item_titles[j] not in names)
        corrupted[i] = dataclasses.replace(
            e,
            history=e.history[:-1] + (noise,),
            history_titles=e.history_titles[:-1] + (item_titles[noise],),
        )
    return Corruption(QM_REPLACEMENT, tuple(examples), tuple(corrupted), chosen, ratio, seed)


def replace_targets(
    examples: Sequence[NextItemExample],
    ratio: float,
    seed: int,
) -> Corruption:
    """RC: replace the target of a share of the examples by a random wrong candidate.

    The wrong target is drawn uniformly from the example's other candidates, so the corrupted
    example is still a valid 20-way question (its "answer" is now a candidate that is wrong);
    history and candidates are unchanged.

    Args:
        examples: The clean training set.
        ratio: Share of the whole training set to corrupt.
        seed: Chooses the examples and the wrong targets.

    Returns:
        The :class:`Corruption`.
    """
    count = corruption_count(ratio, len(examples))
    chosen = _choose(range(len(examples)), count, seed, RC_TARGET)
    rng = np.random.default_rng([seed, _salt(RC_TARGET), 1])
    corrupted = list(examples)
    for i in chosen:
        e = examples[i]
        wrong = [k for k, item in enumerate(e.candidates) if item != e.target]
        k = wrong[int(rng.integers(len(wrong)))]
        corrupted[i] = dataclasses.replace(
            e, target=e.candidates[k], target_title=e.candidate_titles[k]
        )
    return Corruption(RC_TARGET, tuple(examples), tuple(corrupted), chosen, ratio, seed)


def remove_examples(
    examples: Sequence[Any],
    *,
    share: float | None = None,
    users: Iterable[int] | None = None,
    seed: int | None = None,
) -> Removal:
    """IR: choose the training examples to forget, by share or by user.

    Args:
        examples: The training set (any examples with a ``user`` attribute when ``users`` is used).
        share: Forget ``floor(share × n)`` examples chosen uniformly (needs ``seed``).
        users: Forget every example of these users.
        seed: Chooses the examples when ``share`` is given.

    Returns:
        The :class:`Removal`.

    Raises:
        ValueError: Neither or both of ``share`` and ``users``; or a user with no examples.
    """
    if (share is None) == (users is None):
        raise ValueError("give exactly one of share= or users=")
    if share is not None:
        if seed is None:
            raise ValueError("remove_examples(share=...) needs a seed")
        count = corruption_count(share, len(examples))
        chosen = _choose(range(len(examples)), count, seed, "ir")
        return Removal(tuple(examples), chosen, seed)
    users = set(users)
    chosen = tuple(i for i, e in enumerate(examples) if e.user in users)
    found = {examples[i].user for i in chosen}
    if found != users:
        raise ValueError(f"no training examples for user(s) {sorted(users - found)}")
    return Removal(tuple(examples), chosen, seed)


def _choose(eligible: Iterable[int], count: int, seed: int, kind: str) -> tuple[int, ...]:
    """``count`` positions drawn without replacement from ``eligible``, returned ascending."""
    eligible = np.fromiter(eligible, dtype=np.int64)
    if count > len(eligible):
        raise ValueError(
            f"{kind}: asked for {count} examples but only {len(eligible)} are eligible"
        )
    rng = np.random.default_rng([seed, _salt(kind), 0])
    return tuple(sorted(rng.choice(eligible, size=count, replace=False).tolist()))


def _draw_item(pool: np.ndarray, rng: np.random.Generator, accept) -> int:
    """One item drawn uniformly from ``pool`` among those ``accept`` allows (rejection sampling)."""
    for _ in range(10_000):
        item = int(pool[rng.integers(len(pool))])
        if accept(item):
            return item
    raise ValueError("no acceptable noise item in the catalogue")


def _salt(kind: str) -> int:
    """A stable integer per corruption kind, so two kinds with one seed draw differently."""
    return sum(ord(c) * 31**k for k, c in enumerate(kind)) % (2**32)
