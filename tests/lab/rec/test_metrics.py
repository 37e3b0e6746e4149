"""LLaRA's ValidRatio and HitRatio@1 against hand-computed cases."""

import pytest

from eraserlab.rec.metrics import hit_ratio_at_1, named_candidates, valid_ratio

CANDIDATES = ["Heat", "Casino", "Fargo"]


def test_hand_computed_valid_ratio_and_hit_ratio():
    outputs = [
        "Heat",            # names Heat only: valid, the target: a hit
        "Heat or Casino",  # names two candidates: invalid
        "I don't know",    # names none: invalid
        "  FARGO ",        # case and spaces ignored: valid, not the target
    ]
    candidates = [CANDIDATES] * 4
    targets = ["Heat", "Heat", "Casino", "Heat"]
    assert valid_ratio(outputs, candidates) == pytest.approx(2 / 4)
    assert hit_ratio_at_1(outputs, candidates, targets) == pytest.approx(1 / 2)  # hits / *valid* outputs


def test_hit_ratio_is_zero_when_nothing_is_valid():
    outputs = ["", "Heat Casino"]
    assert valid_ratio(outputs, [CANDIDATES] * 2) == 0.0
    assert hit_ratio_at_1(outputs, [CANDIDATES] * 2, ["Heat", "Heat"]) == 0.0


def test_naming_is_substring_matching_as_in_llara():
    # "Heathers" contains "heat": LLaRA counts it as naming Heat
    assert named_candidates("Heathers", CANDIDATES) == ["heat"]
    assert hit_ratio_at_1(["Heathers"], [CANDIDATES], ["Heat"]) == 1.0


def test_metrics_reject_misaligned_inputs():
    with pytest.raises(ValueError, match="one entry per example"):
        valid_ratio(["Heat"], [CANDIDATES, CANDIDATES])
    with pytest.raises(ValueError, match="No outputs"):
        hit_ratio_at_1([], [], [])
