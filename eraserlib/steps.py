"""Re-linearised steps: an erase that goes the whole way to the corrected objective's minimum.

One influence update is one Newton step on the *corrected* objective

    R'(θ) = (1/n') Σ_{z in the data after the request} ℓ(z; θ) + (wd/2)‖θ‖²,

linearised at the trained θ̂ and assuming ∇R(θ̂) = 0. Retraining minimises R' itself. When the
loss is far from quadratic over the update's length, or θ̂ is not an exact minimum, one step
stops short or overshoots. ``erase(..., steps=k)`` takes up to k steps (damped Newton with a
line search and a Levenberg–Marquardt damping):

1. Step 1's direction is the one-step estimate d₁ = (C + λI)⁻¹ b (``steps=1`` returns it as it
   is, bit-identical to the plain erase); its model gradient is −b.
2. Step j ≥ 2 recomputes the gradient gⱼ = ∇R'(θⱼ) over *all* the data the request leaves
   (``request.apply_to``; one gradient pass over the n' examples) and solves
   (Cⱼ + λⱼI) dⱼ = −gⱼ with the same solver, Cⱼ the curvature (Hessian or Gauss–Newton) of
   R' at θⱼ — re-linearised there.
3. Its length α ∈ {1, β, β², …} (backtracking, β = ``backtrack_factor``) is the first that
   decreases R' sufficiently: R'(θ + αd) ≤ R'(θ) + c·α·gᵀd (Armijo, c = ``sufficient_decrease``).
   R' is evaluated by forward passes only, on the data after the request or on a fixed seeded
   subsample of m of them (``evaluation_examples``; the same subsample at every step). A
   subsample's change of R' is corrected to first order by α (g − ∇R'_sub)ᵀd (one gradient pass
   over the m examples per step): otherwise its noise hides the small decreases near the optimum;
   the reported R' is then the estimate, anchored at R'_sub(θ̂). A rejected first step (R' rises along d₁ at every α: θ̂ is not stationary, so −b is
   not R''s gradient) moves nothing and the steps go on; a rejected later step stops.
4. Damping as a trust region (Levenberg–Marquardt): ρ = actual / predicted decrease of R', the
   prediction from the quadratic model, −α gᵀd − ½α² dᵀCd with dᵀCd = −gᵀd − λ‖d‖² (exact
   when the solve is). ρ > 3/4 at a full step: λ ← λ/2 (not below ``min_damping_share`` × the
   first λ); ρ < 1/4 or a shortened step: λ ← 2λ. A solver that meets negative curvature
   (Hessian) or diverges, or a direction that does not descend, is retried with 4λ.
5. Stop after k steps, when a step decreases R' by less than ``tolerance`` (relative), or when
   no step length decreases R'.

The model is left as it was; the result is θ_k − θ̂. Cost per step j ≥ 2: one gradient pass
over n' examples, one solve, and 1 + (backtracks) forward evaluations of R'.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eraserlib.errors import NegativeCurvatureError, NotConvergedWarning, SolverDivergedError
from eraserlib.objective import TrainingObjective
from eraserlib.solvers.base import InvalidOptionsError, Solver, SolverOptions, Spectrum, option
from eraserlib.solvers.exact import Exact

#: Retries of a step's solve with 4× the damping (negative curvature, divergence, no descent).
MAX_DAMPING_RETRIES = 4


@dataclass(frozen=True)
class StepOptions(SolverOptions):
    """How ``erase(..., steps=k)`` and the removal mode take their steps (``StepOptions.help()`` lists them)."""

    evaluation_examples: int | None = option(None, "evaluate the corrected objective (forward passes) on a fixed "
                                                   "seeded subsample of this many examples of the data after the "
                                                   "request; None: all of them")
    backtrack_factor: float = option(0.5, "β: step lengths tried are 1, β, β², …")
    max_backtracks: int = option(8, "shortenings of a step at most before it is rejected")
    sufficient_decrease: float = option(1e-4, "c of the Armijo condition R'(θ + αd) ≤ R'(θ) + c·α·gᵀd")
    adapt_damping: bool = option(True, "adapt λ between steps as a Levenberg–Marquardt trust region")
    min_damping_share: float = option(0.1, "λ never falls below this share of the first step's λ")
    tolerance: float = option(1e-6, "stop when a step decreases R' by less than this relative amount")
    retained_increase: float = option(0.01, "removal mode: the retained data's mean loss (nats; plus (wd/2)‖θ‖²) "
                                            "may rise by at most this much over θ̂ (0.01: their geometric-mean "
                                            "likelihood falls by at most 1%)")
    target_tolerance: float = option(0.02, "removal mode: stop when the removed examples' mean loss is within this "
                                           "relative distance of the held-out examples'")

    def __post_init__(self):
        if not 0 < self.backtrack_factor < 1:
            raise InvalidOptionsError(f"backtrack_factor must be in (0, 1), got {self.backtrack_factor}.")
        if self.evaluation_examples is not None and self.evaluation_examples < 1:
            raise InvalidOptionsError(f"evaluation_examples must be ≥ 1 or None, got {self.evaluation_examples}.")
        for name in ("max_backtracks",):
            if getattr(self, name) < 0:
                raise InvalidOptionsError(f"{name} must be ≥ 0.")
        for name in ("sufficient_decrease", "min_damping_share", "tolerance", "retained_increase",
                     "target_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InvalidOptionsError(f"{name} must be a finite number ≥ 0, got {value!r}.")


def make_step_options(given: StepOptions | Mapping[str, Any] | None) -> StepOptions:
    """``given`` as :class:`StepOptions` (None → defaults; a dict → its fields, unknown ones named)."""
    if given is None:
        return StepOptions()
    if isinstance(given, StepOptions):
        return given
    if not isinstance(given, Mapping):
        raise InvalidOptionsError(f"step_options must be a StepOptions or a dict, got {type(given).__name__}.")
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(StepOptions)})
    if unknown:
        raise InvalidOptionsError(f"step_options has no field {', '.join(map(repr, unknown))}. Its fields:\n"
                                  f"{StepOptions.help()}")
    return StepOptions(**given)


def check_steps(steps: Any) -> int:
    """``steps`` as a positive int, or ``ValueError``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer (1: the one-step estimate), got {steps!r}.")
    return steps


def fresh_solver(solver: Solver) -> Solver:
    """A new instance of ``solver`` with its options, without cached state (a dense matrix of another θ)."""
    options = solver.options
    if isinstance(solver, Exact):
        options = dataclasses.replace(options, hessian=None)
    return type(solver)(options)


class CorrectedObjective:
    """R'(θ) over the data a request leaves: values by forward passes, gradients, and θ written into the model.

    Args:
        objective: The training objective (its settings are reused).
        after: The data after the request.
        evaluation_examples: Size of the fixed subsample R' is evaluated on (None: all of ``after``).
    """

    def __init__(self, objective: TrainingObjective, after: Sequence[Any], evaluation_examples: int | None):
        self.objective = objective.on(after)
        self.after = after
        self.evaluation = self.objective.subsample(evaluation_examples)
        self.weight_decay = objective.weight_decay
        self.subsampled = len(self.evaluation) < len(after)

    def regulariser(self, theta: torch.Tensor) -> float:
        return 0.5 * self.weight_decay * float(theta @ theta) if self.weight_decay else 0.0

    def value(self, theta: torch.Tensor) -> float:
        """R'(θ) on the evaluation examples (forward passes); writes θ into the model."""
        self.objective.set_parameters(theta)
        return self.objective.loss_sum(self.evaluation) / len(self.evaluation) + self.regulariser(theta)

    def correction(self, theta: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor | None:
        """g − ∇R'_sub(θ): what makes the subsample's change of R' exact to first order (None without a subsample).

        A step's change of R' measured on m examples has noise ≈ α (∇R'_sub − ∇R')ᵀd, far above the
        decrease near the optimum. With it added back, the estimated change is
        R'_sub(θ + αd) − R'_sub(θ) + α (g − ∇R'_sub)ᵀd = α gᵀd + ½α² dᵀ C_sub d + …: exact first-order
        term, subsampled curvature. Costs one gradient pass over the m examples.
        """
        if not self.subsampled:
            return None
        self.objective.set_parameters(theta)
        _, total = self.objective.loss_sum_and_gradient(self.evaluation)
        sub = total / len(self.evaluation)
        return gradient - (sub + self.weight_decay * theta if self.weight_decay else sub)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """∇R'(θ) over all of the data after the request (one gradient pass); writes θ into the model."""
        self.objective.set_parameters(theta)
        _, total = self.objective.loss_sum_and_gradient(self.after)
        gradient = total / len(self.after)
        return gradient + self.weight_decay * theta if self.weight_decay else gradient


def solve_step(objective: TrainingObjective, solver: Solver, rhs: torch.Tensor, damping: float | None, *,
               spectrum: Spectrum | None, progress: bool, descent_for: torch.Tensor | None = None):
    """x ≈ (C + λI)⁻¹ rhs at the current θ, retrying with 4λ on negative curvature, divergence or no descent.

    Args:
        descent_for: A gradient g; the answer must satisfy gᵀx < 0 (None: no such check).

    Returns:
        (x, λ used, the solver's result).
    """
    step_solver = fresh_solver(solver)
    lam = damping
    for attempt in range(MAX_DAMPING_RETRIES + 1):
        try:
            result = step_solver.solve(objective, rhs, lam, progress=progress, spectrum=spectrum)
            x = result.solution
            if torch.isfinite(x).all() and (descent_for is None or float(descent_for @ x) < 0):
                return x, lam, result
        except (NegativeCurvatureError, SolverDivergedError):
            if lam is None or attempt == MAX_DAMPING_RETRIES:
                raise
        if lam is None or attempt == MAX_DAMPING_RETRIES:
            raise SolverDivergedError("A re-linearised step found no descent direction even with the damping raised "
                                      f"{MAX_DAMPING_RETRIES} times; raise `damping` or use fewer steps.")
        lam = 4.0 * max(lam, 1e-8)
    raise AssertionError("unreachable")


def relinearised_steps(objective: TrainingObjective, request: Any, positions: Sequence[int], solver: Solver,
                       damping: float | None, first_step: torch.Tensor, b: torch.Tensor, *, steps: int,
                       options: StepOptions, spectrum: Spectrum | None = None,
                       progress: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Up to ``steps`` damped Newton steps on R' (see the module docstring), the first along ``first_step``.

    Args:
        objective: The training objective (inside its ``evaluation()`` context).
        request: The request (its ``apply_to`` gives the data after it).
        positions: Where the request's examples are in the training data (``request.locate``).
        solver: The solver of the first step (a fresh copy solves each later step).
        damping: The first step's λ (None for a solver with its own rule: then it is not adapted).
        first_step: d₁ = (C + λI)⁻¹ b, flat (p,).
        b: The request's right-hand side (−b is the first step's model gradient).
        steps: k ≥ 1.
        options: :class:`StepOptions`.
        spectrum: The spectrum estimate, reused by every solve (e.g. llmeraser's step size).
        progress: Progress bars of the solves.

    Returns:
        (θ_k − θ̂ flat (p,), diagnostics). The model's parameters are restored to θ̂.
    """
    corrected = CorrectedObjective(objective, request.apply_to(objective.train_data, positions),
                                   options.evaluation_examples)
    theta0 = objective.parameters_vector()
    theta = theta0.clone()
    lam, floor = damping, (damping or 0.0) * options.min_damping_share
    record: dict[str, Any] = {"steps_requested": steps, "evaluation_examples": len(corrected.evaluation),
                              "corrected_examples": len(corrected.after), "step_lengths": [], "step_damping": [],
                              "step_ratio": [], "step_solver_stop": []}
    stop = "steps"
    try:
        phi = measured = corrected.value(theta)  # with a subsample, phi continues as the corrected estimate
        history = [phi]
        for k in range(1, steps + 1):
            if k == 1:
                direction, gradient = first_step.to(theta.dtype), -b.to(theta.dtype)
                record["step_solver_stop"].append("first step")
            else:
                gradient = corrected.gradient(theta)
                try:
                    direction, lam, result = solve_step(corrected.objective, solver, -gradient, lam,
                                                        spectrum=spectrum, progress=progress, descent_for=gradient)
                except (NegativeCurvatureError, SolverDivergedError) as error:
                    # the steps taken so far stand (each one lowered R'); this one has no solve to stand behind
                    record["step_solver_stop"].append(f"failed: {type(error).__name__}")
                    stop = "solve_failed"
                    warnings.warn(NotConvergedWarning(
                        f"Re-linearised step {k} of {steps} could not be solved ({error}); the erase keeps the "
                        f"{k - 1} step(s) before it. Raise `damping` or use fewer steps."), stacklevel=3)
                    break
                direction = direction.to(theta.dtype)
                record["step_solver_stop"].append(result.stop_reason)
            slope = float(gradient @ direction)
            correction = corrected.correction(theta, gradient)
            shift = 0.0 if correction is None else float(correction @ direction)
            alpha, change = backtrack(corrected, theta, direction, measured, slope, shift, options)
            trial = phi + change
            record["step_damping"].append(lam)
            if alpha == 0.0:
                record["step_lengths"].append(0.0)
                record["step_ratio"].append(None)
                if k == 1:
                    continue  # θ̂ is not stationary: −b is not ∇R'(θ̂); the next step uses the true gradient
                stop = "no_decrease"
                break
            curvature = -slope - (lam or 0.0) * float(direction @ direction)  # dᵀCd from (C + λI)d = −g
            predicted = -alpha * slope - 0.5 * alpha ** 2 * curvature
            ratio = (phi - trial) / predicted if predicted > 0 else math.nan
            record["step_lengths"].append(alpha)
            record["step_ratio"].append(ratio)
            theta = theta + alpha * direction
            decrease, phi = phi - trial, trial
            measured = corrected.value(theta) if corrected.subsampled else trial  # R'_sub at the new θ
            history.append(phi)
            if options.adapt_damping and lam is not None:
                if alpha == 1.0 and ratio > 0.75:
                    lam = max(lam / 2, floor)
                elif alpha < 1.0 or not ratio > 0.25:
                    lam = _raise(lam)
            if decrease <= options.tolerance * max(abs(phi), 1e-12):
                stop = "converged"
                break
    finally:
        corrected.objective.set_parameters(theta0)  # the model is left as it was
    objective.add_counts(corrected.objective)
    record.update(steps_taken=sum(1 for a in record["step_lengths"] if a > 0), corrected_objective=history,
                  step_stop_reason=stop, step_counts=corrected.objective.counts())
    return theta - theta0, record


def _raise(lam: float | None) -> float | None:
    return None if lam is None else 2.0 * max(lam, 1e-8)


def backtrack(corrected: CorrectedObjective, theta: torch.Tensor, direction: torch.Tensor, measured: float,
               slope: float, shift: float, options: StepOptions) -> tuple[float, float]:
    """(α, change of R') for the first α ∈ {1, β, β², …} with sufficient decrease; (0, 0) if none.

    The change is R'_eval(θ + αd) − ``measured`` (+ α·``shift``, the subsample's first-order correction).
    """
    alpha = 1.0
    for _ in range(options.max_backtracks + 1):
        try:
            change = corrected.value(theta + alpha * direction) - measured + alpha * shift
        except (FloatingPointError, ArithmeticError):  # a non-finite loss: far too long a step
            change = math.inf
        if change <= options.sufficient_decrease * alpha * min(slope, 0.0) and change < 0:
            return alpha, change
        alpha *= options.backtrack_factor
    return 0.0, 0.0


__all__ = ["CorrectedObjective", "StepOptions", "backtrack", "check_steps", "fresh_solver", "make_step_options",
           "relinearised_steps", "solve_step"]
