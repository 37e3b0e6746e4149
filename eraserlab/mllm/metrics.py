"""The benchmarks' own metrics: R-Bench's yes/no scoring and MM-SpuBench's per-type accuracy.

R-Bench's functions reproduce ``eval.py`` of github.com/mrwu-mac/R-Bench (itself POPE's), down to
its quirks: only the first sentence counts, an answer is "no" when one of its space-separated
words is exactly ``No``, ``not`` or ``no`` (so an empty answer is a yes), and precision, recall
and F1 carry its 1e-5 in the denominators.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Mapping, Sequence

import numpy as np

_EPS = 0.00001  # R-Bench's eval.py adds this to every denominator but accuracy's


def rbench_says_yes(answer: str) -> bool:
    """R-Bench's reading of a model's answer.

    Args:
        answer: the generated text.

    Returns:
        False if the first sentence, commas removed, has a word ``No``, ``not`` or ``no``;
        True otherwise (an empty answer included).
    """
    text = answer.split(".")[0] if "." in answer else answer
    words = text.replace(",", "").split(" ")
    return not ("No" in words or "not" in words or "no" in words)


def rbench_label_is_yes(label: str | None) -> bool:
    """R-Bench's reading of a label: "no" anywhere in it (any case) means no."""
    return not (label and "no" in label.lower())


def yes_no_scores(predicted_yes: Sequence[bool], label_yes: Sequence[bool]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio with "yes" as the positive class.

    Args:
        predicted_yes: the model says yes.
        label_yes: the right answer is yes.

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "yes_ratio"}`` as fractions.
    """
    pred = np.asarray(predicted_yes, dtype=bool)
    true = np.asarray(label_yes, dtype=bool)
    if pred.shape != true.shape or pred.size == 0:
        raise ValueError(f"need equal, non-empty predictions and labels, got {pred.shape} and {true.shape}")
    tp = float(np.sum(pred & true))
    fp = float(np.sum(pred & ~true))
    tn = float(np.sum(~pred & ~true))
    fn = float(np.sum(~pred & true))
    precision = tp / (tp + fp + _EPS)
    recall = tp / (tp + fn + _EPS)
    return {
        "accuracy": (tp + tn) / pred.size,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall + _EPS),
        "yes_ratio": float(pred.mean()),
    }


def rbench_scores(
    answers: Mapping[Hashable, str],
    labels: Mapping[Hashable, str],
    subsets: Sequence[Sequence[Hashable]] | None = None,
) -> dict[str, float]:
    """R-Bench's evaluation: scores per subset, averaged over the subsets.

    Args:
        answers: generated text by question id.
        labels: ``"Yes"`` / ``"No"`` by question id.
        subsets: question-id lists (R-Bench's five); ids without an answer are skipped, as in
            ``eval.py``. None scores all answered questions as one subset.

    Returns:
        The mean over subsets of :func:`yes_no_scores`.
    """
    if subsets is None:
        subsets = [list(answers)]
    per_subset = []
    for k, ids in enumerate(subsets):
        ids = [q for q in ids if q in answers]
        if not ids:
            raise ValueError(f"subset {k} has no question with an answer")
        per_subset.append(yes_no_scores([rbench_says_yes(answers[q]) for q in ids],
                                        [rbench_label_is_yes(labels[q]) for q in ids]))
    return {key: float(np.mean([s[key] for s in per_subset])) for key in per_subset[0]}


def accuracy_by_type(correct: Sequence[bool], types: Sequence[Sequence[str]]) -> dict[str, float]:
    """MM-SpuBench's breakdown: accuracy per spurious type, over all ("All"), and their mean.

    An item with several types counts in each of them.

    Args:
        correct: whether each answer is right.
        types: each item's spurious correlation types.

    Returns:
        ``{type: accuracy, ..., "All": overall accuracy, "Average": mean of the per-type ones}``,
        types in order of first appearance.
    """
    if len(correct) != len(types) or not correct:
        raise ValueError(f"need equal, non-empty lists, got {len(correct)} and {len(types)}")
    hits: dict[str, list[bool]] = defaultdict(list)
    for ok, item_types in zip(correct, types):
        for t in item_types:
            hits[t].append(bool(ok))
    result = {t: float(np.mean(v)) for t, v in hits.items()}
    per_type = list(result.values())
    result["All"] = float(np.mean(np.asarray(correct, dtype=float)))
    result["Average"] = float(np.mean(per_type))
    return result


def accuracy_by_group(correct: Sequence[bool], groups: Sequence[Hashable]) -> dict[Hashable, float]:
    """Accuracy of each group (e.g. ``"Background/conflicting"``), in order of first appearance."""
    if len(correct) != len(groups):
        raise ValueError(f"need equal lists, got {len(correct)} and {len(groups)}")
    hits: dict[Hashable, list[bool]] = defaultdict(list)
    for ok, g in zip(correct, groups):
        hits[g].append(bool(ok))
    return {g: float(np.mean(v)) for g, v in hits.items()}


def worst_group_accuracy(correct: Sequence[bool], groups: Sequence[Hashable]) -> tuple[float, Hashable]:
    """The lowest group accuracy and the group that has it."""
    by_group = accuracy_by_group(correct, groups)
    if not by_group:
        raise ValueError("no groups")
    group = min(by_group, key=by_group.get)
    return by_group[group], group
