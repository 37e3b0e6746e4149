"""One unlearning scenario: the data an adapter is trained on, the request, and what Retrain sees.

A scenario fixes, for one dataset, task, ratio and seed:

* ``train``: what the adapter is trained on (the corrupted training set for QM/RC, the full one
  for IR); ``erase`` gets exactly this list;
* ``retrain_data``: what Retrain trains on (the clean set, or the retained examples);
* ``request``: the exact :mod:`eraserlib` request that turns one into the other;
* ``forget``: the examples as they were trained on and should be forgotten (the corrupted
  versions, or the removed examples); ``corrected``: their corrected versions (QM/RC), or the
  removed examples again (IR, where nothing replaces them);
* ``test``: the evaluation examples (task users' last targets; with ``eval_split="val"`` their
  validation targets, the one before the last, to choose settings without the test split).

Only *task users* take part: the base model's held-out users (:mod:`~eraserlab.rec.pretrain`)
are dropped first, so no request ever touches data the base was trained on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from eraserlab.rec import corruption
from eraserlab.rec.random_draws import random_draws
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection

#: task name → (dataset family, what the request is)
TASKS = {
    "ir": ("preference", "instance removal: forget a share of the training examples"),
    "qm_removal": ("next_item", "query modification: the last history item was removed from a share of histories"),
    "qm_replacement": ("next_item", "query modification: the last history item was replaced by a random item"),
    "rc": ("next_item", "response correction: a share of targets were replaced by a wrong candidate"),
}

#: ``eval_split`` → the data layer's split evaluated as the scenario's ``test``.
EVAL_SPLITS = {"test": "test", "val": "validation"}


@dataclass(frozen=True)
class Scenario:
    """The data and the request of one experiment (see the module docstring).

    Attributes:
        task: A key of :data:`TASKS`.
        ratio: The share of the training set the request touches.
        seed: The seed of the corruption / removal.
        train: What the adapter is trained on.
        retrain_data: What Retrain is trained on.
        request: The eraserlib request.
        forget: The examples as trained on, which should lose their effect.
        corrected: Their corrected versions (IR: the removed examples).
        test: Evaluation examples.
        notes: Sentences describing the data for a reader.
    """

    task: str
    ratio: float
    seed: int
    train: tuple
    retrain_data: tuple
    request: InstanceRemoval | QueryModification | ResponseCorrection
    forget: tuple
    corrected: tuple
    test: tuple
    notes: tuple[str, ...] = ()


def task_family(task: str) -> str:
    """``"preference"`` for IR, ``"next_item"`` for QM and RC."""
    try:
        return TASKS[task][0]
    except KeyError:
        raise ValueError(f"Unknown task {task!r}; one of {sorted(TASKS)}.") from None


def select_test(examples: Sequence, max_examples: int | None, seed: int) -> tuple:
    """At most ``max_examples`` examples (one per user), chosen by a hash of (seed, user): the same whatever the run seed."""
    examples = tuple(examples)
    if max_examples is None or len(examples) <= max_examples:
        return examples
    keys = np.array([[e.user] for e in examples], dtype=np.int64)
    order = np.argsort(random_draws(seed, keys, 0, 1)[:, 0], kind="stable")[:max_examples]
    return tuple(examples[i] for i in sorted(order.tolist()))


def build_scenario(
    task: str,
    data,
    ratio: float,
    seed: int,
    *,
    excluded_users: Collection[int] = (),
    max_test: int | None = None,
    test_seed: int = 0,
    max_train_users: int | None = None,
    eval_split: str = "test",
) -> Scenario:
    """Build the scenario of one experiment from a dataset of the data layer.

    Args:
        task: ``"ir"``, ``"qm_removal"``, ``"qm_replacement"`` or ``"rc"``.
        data: A :class:`~eraserlab.rec.next_item.NextItemDataset` (QM/RC) or
            :class:`~eraserlab.rec.preference.PreferenceDataset` (IR).
        ratio: Share of the (task users') training examples the request touches.
        seed: Chooses the corrupted / removed examples (and replacement items).
        excluded_users: Users to leave out (the base's held-out users).
        max_test: Cap on test examples (a fixed, seed-independent subset).
        test_seed: Seeds that subset (and the subset of training users).
        max_train_users: Keep the training examples of this many task users only (a fixed,
            seed-independent subset; for smoke tests).
        eval_split: ``"test"`` or ``"val"``: which split ``test`` holds (the same users either way).

    Returns:
        The :class:`Scenario`.
    """
    task_family(task)
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"Unknown eval_split {eval_split!r}; one of {tuple(EVAL_SPLITS)}.")
    excluded = set(excluded_users)
    train = tuple(e for e in data.train if e.user not in excluded)
    if max_train_users is not None:
        kept = {e.user for e in select_test(sorted({e.user: e for e in train}.values(), key=lambda e: e.user),
                                            max_train_users, test_seed)}
        train = tuple(e for e in train if e.user in kept)
    test = select_test([e for e in data.split(EVAL_SPLITS[eval_split]) if e.user not in excluded], max_test,
                       test_seed)
    if not train or not test:
        raise ValueError("No training or test examples left after removing the held-out users.")
    evaluated = "test" if eval_split == "test" else "validation"
    notes = [(f"{TASKS[task][1]} (ratio {ratio:g}, seed {seed}); {len(train):,} training and {len(test):,} "
              f"{evaluated} examples of {len({e.user for e in train}):,} task users.")]
    if task == "ir":
        removal = corruption.remove_examples(train, share=ratio, seed=seed)
        removed = removal.removed
        if not removed:
            raise ValueError(f"ratio {ratio} of {len(train)} examples selects none: raise the ratio.")
        return Scenario(task, ratio, seed, train=removal.train, retrain_data=removal.retained,
                        request=InstanceRemoval(removed), forget=removed, corrected=removed, test=test,
                        notes=tuple(notes))
    if task == "qm_removal":
        change = corruption.remove_last_history_item(train, ratio, seed)
    elif task == "qm_replacement":
        change = corruption.replace_last_history_item(train, ratio, seed, data.item_titles)
    else:
        change = corruption.replace_targets(train, ratio, seed)
    if not change.indices:
        raise ValueError(f"ratio {ratio} of {len(train)} examples selects none: raise the ratio.")
    request_type = ResponseCorrection if task == "rc" else QueryModification
    return Scenario(task, ratio, seed, train=change.corrupted, retrain_data=change.clean,
                    request=request_type(change.old, change.new), forget=change.old, corrected=change.new,
                    test=test, notes=tuple(notes))
