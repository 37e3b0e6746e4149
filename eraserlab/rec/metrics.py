"""LLaRA's two metrics for generated recommendations: ValidRatio and HitRatio@1.

Exactly as LLaRA computes them (``calculate_hr1`` in its ``model/model_interface.py``): the
output, the true name and the candidate names are stripped and lower-cased; a candidate is
*named* by an output when its name is a substring of the output; an output is **valid** when it
names exactly one candidate; and

* ValidRatio = valid outputs / all outputs,
* HitRatio@1 = valid outputs whose one named candidate is the true item / valid outputs
  (0 when no output is valid).

So an output naming no candidate ("I don't know") or two ("Heat or Casino") counts against
ValidRatio and is left out of HitRatio@1. Substring matching means that an output naming a
longer title that contains a shorter candidate's name names both, as in LLaRA.
"""

from __future__ import annotations

from collections.abc import Sequence


def named_candidates(output: str, candidates: Sequence[str]) -> list[str]:
    """The candidates whose (stripped, lower-cased) name occurs in the (stripped, lower-cased) output."""
    text = output.strip().lower()
    return [c.strip().lower() for c in candidates if c.strip().lower() in text]


def _check(outputs: Sequence[str], candidates: Sequence[Sequence[str]], targets: Sequence[str] | None = None):
    if len(outputs) != len(candidates) or (targets is not None and len(targets) != len(outputs)):
        raise ValueError("outputs, candidates (and targets) must have one entry per example.")
    if len(outputs) == 0:
        raise ValueError("No outputs to score.")


def valid_ratio(outputs: Sequence[str], candidates: Sequence[Sequence[str]]) -> float:
    """Share of outputs that name exactly one of their candidates.

    Args:
        outputs: Generated text, one per example.
        candidates: Each example's candidate names.

    Returns:
        ValidRatio in [0, 1].
    """
    _check(outputs, candidates)
    return sum(len(named_candidates(o, c)) == 1 for o, c in zip(outputs, candidates)) / len(outputs)


def hit_ratio_at_1(outputs: Sequence[str], candidates: Sequence[Sequence[str]], targets: Sequence[str]) -> float:
    """Share of *valid* outputs whose one named candidate is the true item (0 if none is valid).

    Args:
        outputs: Generated text, one per example.
        candidates: Each example's candidate names.
        targets: Each example's true item name.

    Returns:
        HitRatio@1 in [0, 1].
    """
    _check(outputs, candidates, targets)
    valid = hits = 0
    for output, names, target in zip(outputs, candidates, targets):
        named = named_candidates(output, names)
        if len(named) == 1:
            valid += 1
            hits += named[0] == target.strip().lower()
    return hits / valid if valid else 0.0
