"""Metrics shared by both experimental arms: distances to Retrain and ranking quality.

* :func:`jensen_shannon_divergence`: how far two models' predicted distributions are apart
  (e.g. an unlearnt model's candidate distribution and Retrain's), in bits, in [0, 1].
* :func:`delta_cosine`, :func:`delta_norm_ratio`, :func:`delta_relative_error`: how an update
  ΔΘ (a ``{name: tensor}`` dict such as ``EraseResult.delta``) compares with the change
  Retrain made to the same parameters.
* :func:`auc`: the area under the ROC curve, ties counted one half (Mann–Whitney U).

Arms add their own task metrics in their own package (``eraserlab.rec.metrics``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

Delta = Mapping[str, torch.Tensor]


def jensen_shannon_divergence(p, q, axis: int = -1) -> np.ndarray:
    """JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), in bits (base-2 logarithm).

    Symmetric, finite even where one distribution has zeros, 0 for equal distributions and at
    most 1 bit (disjoint supports). Each slice along ``axis`` is normalised to sum to 1 first.

    Args:
        p: Probabilities (array-like, non-negative), e.g. ``(E, C)`` candidate distributions.
        q: Same shape as ``p``.
        axis: The axis the distributions lie along.

    Returns:
        The divergence of each distribution pair: ``p``'s shape without ``axis``.

    Raises:
        ValueError: Shapes differ, a value is negative or non-finite, or a slice sums to 0.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}.")
    for name, x in (("p", p), ("q", q)):
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError(f"{name} must hold finite non-negative probabilities.")
        if np.any(x.sum(axis=axis) <= 0):
            raise ValueError(f"{name} has a distribution that sums to 0.")
    p = p / p.sum(axis=axis, keepdims=True)
    q = q / q.sum(axis=axis, keepdims=True)
    m = 0.5 * (p + q)

    def kl(a, b):  # Σ a log2(a/b) with 0·log 0 = 0; b > 0 wherever a > 0 since b = m
        ratio = np.where(a > 0, a / np.where(b > 0, b, 1.0), 1.0)
        return np.sum(a * np.log2(ratio), axis=axis)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def bernoulli_distributions(probabilities) -> np.ndarray:
    """``(E,)`` probabilities of "yes" → ``(E, 2)`` distributions (P(yes), P(no)) for JSD."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.stack([p, 1.0 - p], axis=-1)


def _flat(delta: Delta, names) -> torch.Tensor:
    return torch.cat([delta[name].detach().reshape(-1).double().cpu() for name in names])


def _aligned(delta: Delta, reference: Delta) -> tuple[torch.Tensor, torch.Tensor]:
    if set(delta) != set(reference):
        missing, extra = sorted(set(reference) - set(delta)), sorted(set(delta) - set(reference))
        raise ValueError(f"The two updates name different parameters (missing {missing[:3]}, extra {extra[:3]}).")
    names = sorted(reference)
    for name in names:
        if delta[name].shape != reference[name].shape:
            raise ValueError(f"{name}: shapes {tuple(delta[name].shape)} and {tuple(reference[name].shape)} differ.")
    return _flat(delta, names), _flat(reference, names)


def delta_cosine(delta: Delta, reference: Delta) -> float:
    """cos(ΔΘ, ΔΘ_ref) over all parameters together; NaN if either update is zero.

    Args:
        delta: ``{name: tensor}`` update of a method (e.g. ``EraseResult.delta``).
        reference: Retrain's change of the same parameters (θ_retrain − θ_before).

    Returns:
        The cosine in [-1, 1], or NaN when a norm is zero (the direction is undefined).
    """
    x, y = _aligned(delta, reference)
    norms = float(x.norm()) * float(y.norm())
    return float(x @ y) / norms if norms > 0 else math.nan


def delta_norm_ratio(delta: Delta, reference: Delta) -> float:
    """‖ΔΘ‖ / ‖ΔΘ_ref‖: how large the update is relative to Retrain's change (NaN if the latter is 0)."""
    x, y = _aligned(delta, reference)
    return float(x.norm()) / float(y.norm()) if float(y.norm()) > 0 else math.nan


def delta_relative_error(delta: Delta, reference: Delta) -> float:
    """‖ΔΘ − ΔΘ_ref‖ / ‖ΔΘ_ref‖: 0 is Retrain's change exactly, 1 is no better than no update."""
    x, y = _aligned(delta, reference)
    return float((x - y).norm()) / float(y.norm()) if float(y.norm()) > 0 else math.nan


def auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting ½.

    Computed from average ranks (the Mann–Whitney U statistic), so tied scores get the same
    rank and a constant score gives exactly 0.5.

    Args:
        labels: 0/1 (or boolean) labels, shape (E,).
        scores: Real scores, higher meaning "positive", shape (E,).

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: Shapes differ, labels are not binary, scores are not finite, or one class
            is absent (the AUC is undefined).
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of the same length, got {labels.shape} and {scores.shape}.")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite.")
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one positive and one negative label.")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # average rank (1-based) of each block of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + 1 + end)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))
