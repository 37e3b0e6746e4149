"""Shared metrics against hand-computed values and brute-force definitions."""

import itertools
import math

import numpy as np
import pytest
import torch

from eraserlib.metrics import (
    auc,
    bernoulli_distributions,
    delta_cosine,
    delta_norm_ratio,
    delta_relative_error,
    jensen_shannon_divergence,
)


def brute_force_auc(labels, scores):
    """P(positive scored above negative) over all pairs, ties ½: the definition itself."""
    positives = [s for s, y in zip(scores, labels) if y == 1]
    negatives = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_auc_hand_computed_without_ties():
    # 3 of the 4 (positive, negative) pairs are ordered correctly: (0.35 < 0.4) is the miss
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_hand_computed_with_ties():
    # pairs: (0.2,0.5)=1, (0.2,0.9)=1, (0.5,0.5)=½, (0.5,0.9)=1  → 3.5 / 4
    assert auc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)  # constant score
    assert auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert auc([0, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.0)


def test_auc_matches_the_pairwise_definition_on_heavily_tied_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 5, 200).astype(float)  # 5 distinct values: ties everywhere
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_auc_rejects_a_single_class_and_bad_input():
    with pytest.raises(ValueError, match="positive and one negative"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2], [0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        auc([0, 1], [0.2, float("nan")])


def test_jsd_hand_computed():
    assert jensen_shannon_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: 1 bit
    assert jensen_shannon_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0, abs=1e-15)
    # p = (½, ½), q = (1, 0): m = (¾, ¼)
    expected = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    assert jensen_shannon_divergence([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)


def test_jsd_is_symmetric_rowwise_and_normalises():
    rng = np.random.default_rng(1)
    p, q = rng.random((4, 20)), rng.random((4, 20))
    forward, backward = jensen_shannon_divergence(p, q), jensen_shannon_divergence(q, p)
    assert forward.shape == (4,)
    np.testing.assert_allclose(forward, backward)
    np.testing.assert_allclose(forward, jensen_shannon_divergence(3 * p, q))  # scale-free
    assert np.all((forward > 0) & (forward < 1))


def test_jsd_rejects_invalid_distributions():
    with pytest.raises(ValueError, match="same shape"):
        jensen_shannon_divergence([0.5, 0.5], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="non-negative"):
        jensen_shannon_divergence([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="sums to 0"):
        jensen_shannon_divergence([0.0, 0.0], [0.5, 0.5])


def test_bernoulli_distributions():
    np.testing.assert_allclose(bernoulli_distributions([0.25, 1.0]), [[0.25, 0.75], [1.0, 0.0]])


def test_delta_comparisons_hand_computed():
    reference = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([[0.0]])}
    same = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([[0.0]])}
    orthogonal = {"a": torch.tensor([0.0, 3.0]), "b": torch.tensor([[4.0]])}
    assert delta_cosine(same, reference) == pytest.approx(1.0)
    assert delta_norm_ratio(same, reference) == pytest.approx(2.0)
    assert delta_relative_error(same, reference) == pytest.approx(1.0)  # overshoots by ‖Δ_ref‖
    assert delta_cosine(orthogonal, reference) == pytest.approx(0.0)
    assert delta_norm_ratio(orthogonal, reference) == pytest.approx(5.0)
    assert delta_relative_error(orthogonal, reference) == pytest.approx(math.sqrt(1 + 9 + 16))
    zero = {"a": torch.zeros(2), "b": torch.zeros(1, 1)}
    assert math.isnan(delta_cosine(zero, reference))
    assert delta_relative_error(zero, reference) == pytest.approx(1.0)


def test_delta_comparisons_reject_mismatched_parameters():
    with pytest.raises(ValueError, match="different parameters"):
        delta_cosine({"a": torch.ones(2)}, {"b": torch.ones(2)})
    with pytest.raises(ValueError, match="shapes"):
        delta_cosine({"a": torch.ones(2)}, {"a": torch.ones(3)})
