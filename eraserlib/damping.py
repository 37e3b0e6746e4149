"""The damping rule: which λ makes (H + λI)x = b a question worth answering.

"auto" damping is the smallest λ that lifts every eigenvalue of H + λI to at least
λ_max / :data:`AUTO_CONDITION_NUMBER`:

    λ = max(0, λ_max/10² − wd − margin·min(λ_min, 0)),

λ_min, λ_max the extreme eigenvalues of the *data* curvature (weight decay excluded), margin
1 for an exact spectrum and :data:`AUTO_NEGATIVE_CURVATURE_MARGIN` for Ritz values (which
under-estimate the most negative eigenvalue). Why: with weight decay a convex loss needs no
damping, and any λ biases the answer (``tests/test_convex.py``). An adapter trained with
wd = 0 has a Hessian that is singular in most directions and, away from an exact minimum,
slightly indefinite: (H + λI)⁻¹b then does not exist or is dominated by directions the data
barely constrains. Lifting the spectrum to λ_max/10² makes the quadratic convex with condition
number ≲ 10², where the quadratic model of a non-convex loss is most trustworthy and the
stochastic solver converges within a few hundred steps (its averaging must span ~κ steps),
while directions with curvature above λ_max/10 keep ≥ 90% of their update. Less damping moves
the update further (the book's chapters measure it) at a higher cost.
"""

from __future__ import annotations

import math

from eraserlib.solvers.base import Spectrum

#: "auto" damping makes every eigenvalue of H + λI at least λ_max / AUTO_CONDITION_NUMBER.
AUTO_CONDITION_NUMBER = 1e2
#: Safety factor on an *estimated* most negative eigenvalue (Ritz values under-estimate it).
AUTO_NEGATIVE_CURVATURE_MARGIN = 1.5


def auto_damping(spectrum: Spectrum, weight_decay: float = 0.0,
                 condition_number: float = AUTO_CONDITION_NUMBER) -> float:
    """The "auto" λ for a spectrum of the data curvature (see the module docstring).

    Args:
        spectrum: Extreme eigenvalues of the data curvature (weight decay excluded).
        weight_decay: wd, which already lifts every eigenvalue by wd.
        condition_number: Target ratio λ_max / (smallest eigenvalue of H + λI).

    Returns:
        λ ≥ 0.
    """
    margin = 1.0 if spectrum.exact else AUTO_NEGATIVE_CURVATURE_MARGIN
    floor = max(spectrum.largest, 0.0) / condition_number
    return max(0.0, floor - weight_decay - margin * min(spectrum.smallest, 0.0))


#: "auto" damping for Gauss–Newton curvature: λ = λ_max(G) / GAUSS_NEWTON_CONDITION_NUMBER (see gauss_newton_damping).
GAUSS_NEWTON_CONDITION_NUMBER = 1e2


def gauss_newton_damping(spectrum: Spectrum, weight_decay: float = 0.0,
                         condition_number: float = GAUSS_NEWTON_CONDITION_NUMBER) -> float:
    """The "auto" λ for a spectrum of the data Gauss–Newton matrix G (weight decay excluded).

    G is positive semi-definite, so there is no negative curvature to lift; the rule bounds the
    condition number of G + (wd + λ)I by ``condition_number``: λ = max(0, λ_max/κ − wd).

    Why this and not less: λ sets how far the one-step update goes along the directions G barely
    constrains. On the recipe chapter's stand-in (``benchmarks/results/recipe_stand_in-default.json``,
    a damping sweep) the secret's loss moves monotonically further as λ falls, and the retained
    loss — the corrected objective R' itself — rises with it: at λ_max/10² the one-step update
    already takes the secret about as far as a cold retrain and past a warm one, at a visible
    cost in R'; kronfluence's default, 0.1 × the mean eigenvalue (an order of magnitude smaller
    there, since most eigenvalues of a LoRA Gauss–Newton matrix are near 0), overshoots both
    retrains and raises R' several times more. The one-step Gauss–Newton model under-estimates
    R''s curvature at an adapter that is not at a minimum (it drops the residual term, which
    is where the Hessian's largest eigenvalues are there), so the update is too long by R''s own
    measure. With ``steps`` > 1 (:mod:`eraserlib.steps`) the line search and the
    Levenberg–Marquardt adaptation of λ manage that trade-off on R' itself, starting from this λ.

    Args:
        spectrum: Extreme eigenvalues of the data Gauss–Newton matrix.
        weight_decay: wd, which already lifts every eigenvalue by wd.
        condition_number: κ.

    Returns:
        λ ≥ 0.
    """
    return max(0.0, max(spectrum.largest, 0.0) / condition_number - weight_decay)


def automatic_damping(curvature: str, spectrum: Spectrum, weight_decay: float = 0.0) -> float:
    """The "auto" λ of ``erase``: :func:`auto_damping` for the Hessian, :func:`gauss_newton_damping` for Gauss–Newton."""
    if curvature == "gauss_newton":
        return gauss_newton_damping(spectrum, weight_decay)
    return auto_damping(spectrum, weight_decay)


def check_damping(damping: float | str) -> None:
    """Raise ``ValueError`` unless ``damping`` is "auto" or a finite number ≥ 0."""
    if damping == "auto":
        return
    if (isinstance(damping, (str, bool)) or not isinstance(damping, (int, float)) or not math.isfinite(damping)
            or damping < 0):
        raise ValueError(f"damping must be a finite number ≥ 0 or 'auto', got {damping!r}.")
