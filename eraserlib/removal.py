"""Removal of memorised examples: make them look like data the model never saw.

An influence update moves θ by (C + λI)⁻¹ b with b ∝ Σ_S ∇ℓ(z; θ̂). A memorised example has
loss ≈ 0 and gradient ≈ 0, so b ≈ 0: the update is ≈ 0, and the corrected objective R' (the loss
on the data the request leaves) is already at its minimum — re-linearised steps on R'
(:mod:`eraserlib.steps`) move them only as far as the nearest minimum of R' happens to. Retraining from scratch does something else: the removed
examples end up with the loss of examples the model never saw. ``erase(..., removal="match_heldout",
heldout=examples)`` aims at that directly (the idea of K-FADE's constrained uphill Gauss–Newton
steps): with a user-supplied *held-out* set of examples of the same kind that were never trained
on (a non-member reference),

1. direction: d = (C_R + λI)⁻¹ Σ_S ∇ℓ(z; θ), C_R the curvature of the *retained* data (the data
   after the request), Gauss–Newton recommended. Among the steps that raise the removed loss
   by a given first-order amount, d changes the retained data's outputs least in the metric
   ½ dᵀ G_R d (the second-order change of the retained loss, the KL divergence of their
   predictive distributions): uphill on the removed examples, constrained on the retained ones.
2. length: the α at which the removed examples' mean loss L_S(θ + αd) reaches the held-out
   examples' mean loss L_H(θ + αd) (both re-evaluated at every trial, by forward passes), found
   by doubling from the length the quadratic model allows (½α² dᵀC_R d = the retained budget
   left) and then bisection — unless the retained data's mean loss (plus wd/2‖θ‖², on all of
   them or on ``evaluation_examples``) would exceed its value at θ̂ by more than
   ``retained_increase`` nats first: then the step stops at the budget. The budget is absolute:
   a memorised retained set has a loss near 0, where any relative budget is no budget at all.
3. repair: after a step that stopped at the budget, one re-linearised descent step on R' (as
   ``erase(..., steps=k)`` takes, :mod:`eraserlib.steps`) gives retained loss back; R' does not
   contain the removed examples, so descending on it need not re-learn them (the path in the
   diagnostics shows whether it did).
4. re-linearise (new gradient, new solve at the new θ) while the target is not reached, up to
   ``steps`` uphill directions; stop at the target (within ``target_tolerance``), at the
   budget after the last direction (or a repair that finds no descent), or at ``steps``.

Aiming at L_H rather than "as high as possible" matters: a removed example with a far *higher*
loss than non-members is as recognisable to a membership-inference attack as one with a far
lower loss. Score it with the share of the way to a cold retrain of the removed examples' loss
and the AUC between removed and held-out losses (0.5 = indistinguishable;
``benchmarks/memorised_removal.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from eraserlib.errors import InvalidRequestError
from eraserlib.objective import TrainingObjective
from eraserlib.requests import InstanceRemoval
from eraserlib.solvers.base import Solver, Spectrum
from eraserlib.steps import CorrectedObjective, StepOptions, backtrack, solve_step

#: The removal modes ``erase(..., removal=...)`` knows.
REMOVAL_MODES = ("match_heldout",)
#: Doublings of the step length at most while the target is not reached and the budget holds.
MAX_EXPANSIONS = 16
#: Bisections of the step length at most.
MAX_BISECTIONS = 12


def check_removal(removal: Any, heldout: Any, request: Any) -> None:
    """Raise a clear error unless (``removal``, ``heldout``, ``request``) make sense together."""
    if removal is None:
        if heldout is not None:
            raise ValueError("heldout= is used by removal='match_heldout' only; pass removal='match_heldout' too.")
        return
    if removal not in REMOVAL_MODES:
        raise ValueError(f"removal must be None or one of {REMOVAL_MODES}, got {removal!r}.")
    if not isinstance(request, InstanceRemoval):
        raise InvalidRequestError(f"removal={removal!r} is for InstanceRemoval requests, got {type(request).__name__}.")
    if heldout is None or isinstance(heldout, (str, bytes)) or not isinstance(heldout, Sequence) or len(heldout) == 0:
        raise ValueError(f"removal={removal!r} needs heldout=[examples of the same kind that the model was never "
                         "trained on] (a non-member reference whose loss the removed examples should reach).")


def match_heldout(objective: TrainingObjective, request: InstanceRemoval, positions: Sequence[int], solver: Solver,
                  damping: float | None, *, heldout: Sequence[Any], steps: int, options: StepOptions,
                  spectrum: Spectrum | None = None, progress: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Constrained uphill steps until the removed examples' loss matches the held-out examples' (module docstring).

    Args:
        objective: The training objective (inside its ``evaluation()`` context).
        request: The instance removal.
        positions: Where its examples are in the training data.
        solver: Solves (C_R + λI)d = Σ_S ∇ℓ (a fresh copy per direction).
        damping: λ (None: the solver's own rule).
        heldout: Non-member examples of the same kind (same collate function).
        steps: Directions at most.
        options: :class:`~eraserlib.steps.StepOptions` (``retained_increase``, ``target_tolerance``,
            ``evaluation_examples``).
        spectrum: Reused by every solve.
        progress: Progress bars of the solves.

    Returns:
        (θ − θ̂ flat (p,), diagnostics). The model's parameters are restored to θ̂.
    """
    retained = CorrectedObjective(objective, request.apply_to(objective.train_data, positions),
                                  options.evaluation_examples)
    removed, reference = objective.on(list(request.examples)), objective.on(list(heldout))
    theta0 = objective.parameters_vector()
    theta = theta0.clone()

    def state(point: torch.Tensor) -> dict[str, float]:
        value = retained.value(point)  # writes θ into the model
        return {"removed": removed.loss_sum(removed.train_data) / removed.n,
                "heldout": reference.loss_sum(reference.train_data) / reference.n, "retained": value}

    record: dict[str, Any] = {"removal": "match_heldout", "heldout_examples": reference.n,
                              "evaluation_examples": len(retained.evaluation), "step_lengths": [],
                              "repair_lengths": [], "path": []}
    stop = "steps"
    try:
        current = state(theta)
        record["path"].append({"kind": "start", **current})
        budget = current["retained"] + options.retained_increase
        for direction_index in range(steps):
            if _reached(current, options):
                stop = "target"
                break
            retained.objective.set_parameters(theta)  # the trials of the last search left another θ there
            _, total = removed.loss_sum_and_gradient(removed.train_data)
            if float(total.norm()) == 0.0:
                stop = "zero_gradient"
                break
            rhs = total / retained.objective.n
            direction, damping, _ = solve_step(retained.objective, solver, rhs, damping, spectrum=spectrum,
                                               progress=progress, descent_for=-rhs)
            direction = direction.to(theta.dtype)
            curvature = max(float(rhs @ direction) - (damping or 0.0) * float(direction @ direction), 1e-30)
            start = math.sqrt(2 * max(budget - current["retained"], 1e-12) / curvature)  # ½α²dᵀCd = budget left
            alpha, current, hit = _length(state, theta, direction, current, budget, start, options)
            record["step_lengths"].append(alpha)
            record["path"].append({"kind": "uphill", **current})
            theta = theta + alpha * direction
            if hit == "target":
                stop = "target"
                break
            if hit == "budget":
                stop = "retained_budget"
                if direction_index == steps - 1:
                    break
                theta, current, repaired = _repair(retained, solver, theta, current, damping, state, options,
                                                   spectrum=spectrum, progress=progress)
                record["repair_lengths"].append(repaired)
                record["path"].append({"kind": "repair", **current})
                if repaired == 0.0:
                    break
    finally:
        retained.objective.set_parameters(theta0)
    for other in (retained.objective, removed, reference):
        objective.add_counts(other)
    record.update(removal_stop_reason=stop, steps_taken=len(record["step_lengths"]), damping_final=damping,
                  removed_loss=current["removed"], heldout_loss=current["heldout"],
                  retained_objective=current["retained"], retained_budget=budget)
    return theta - theta0, record


def _repair(retained: CorrectedObjective, solver: Solver, theta: torch.Tensor, current: dict[str, float],
            damping: float | None, state, options: StepOptions, *, spectrum: Spectrum | None,
            progress: bool) -> tuple[torch.Tensor, dict[str, float], float]:
    """One re-linearised descent step on R' (as in :mod:`eraserlib.steps`) that gives the retained loss back.

    Returns (θ, its state, the step length; 0 when no length decreased R').
    """
    gradient = retained.gradient(theta)
    direction, _, _ = solve_step(retained.objective, solver, -gradient, damping, spectrum=spectrum,
                                 progress=progress, descent_for=gradient)
    direction = direction.to(theta.dtype)
    correction = retained.correction(theta, gradient)
    shift = 0.0 if correction is None else float(correction @ direction)
    alpha, _ = backtrack(retained, theta, direction, current["retained"], float(gradient @ direction), shift, options)
    if alpha == 0.0:
        return theta, current, 0.0
    theta = theta + alpha * direction
    return theta, state(theta), alpha


def _reached(point: dict[str, float], options: StepOptions) -> bool:
    return point["removed"] >= (1 - options.target_tolerance) * point["heldout"]


def _length(state, theta: torch.Tensor, direction: torch.Tensor, current: dict[str, float], budget: float,
            start: float, options: StepOptions) -> tuple[float, dict[str, float], str | None]:
    """(α, state at θ + αd, "target" | "budget" | None) — see step 2 of the module docstring."""

    def beyond(point: dict[str, float]) -> bool:  # past the target or over the budget
        return _reached(point, options) or not point["retained"] <= budget

    lo, lo_state, hi, hi_state = 0.0, current, None, None
    alpha = start
    for _ in range(MAX_EXPANSIONS):
        point = state(theta + alpha * direction)
        if beyond(point):
            hi, hi_state = alpha, point
            break
        lo, lo_state = alpha, point
        alpha *= 2
    if hi is None:  # neither the target nor the budget within 2^MAX_EXPANSIONS × the start: re-linearise
        return lo, lo_state, None
    for _ in range(MAX_BISECTIONS):
        if hi_state["retained"] <= budget and _close(hi_state, options):
            break
        middle = 0.5 * (lo + hi)
        point = state(theta + middle * direction)
        if beyond(point):
            hi, hi_state = middle, point
        else:
            lo, lo_state = middle, point
    if hi_state["retained"] <= budget and _reached(hi_state, options):
        return hi, hi_state, "target"
    return lo, lo_state, "budget"


def _close(point: dict[str, float], options: StepOptions) -> bool:
    """At the target: the removed loss within ``target_tolerance`` of the held-out loss, on either side."""
    return abs(point["removed"] - point["heldout"]) <= options.target_tolerance * abs(point["heldout"])


__all__ = ["REMOVAL_MODES", "check_removal", "match_heldout"]
