"""Conjugate gradient on full-data (or fixed-subsample) curvature products."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eraserlib.errors import NegativeCurvatureError, SolverDivergedError
from eraserlib.objective import TrainingObjective
from eraserlib.progress import progress_bar
from eraserlib.solvers.base import Callback, Solver, SolverOptions, SolverResult, Spectrum, option
from eraserlib.solvers.spectrum import estimate_spectrum


@dataclass(frozen=True)
class CGOptions(SolverOptions):
    """Options of conjugate gradient."""

    max_iterations: int = option(200, "iterations at most (one full-data product each)")
    tolerance: float = option(1e-5, "stop when ‖Ax − b‖/‖b‖ (the recurrence residual) falls below this")
    hessian_examples: int | None = option(None, "use a fixed random subset of this many training examples for the "
                                                "curvature (a 'large-batch' Hessian); None: all n")


class CG(Solver):
    """Conjugate gradient on A = H + λI; each product is an epoch over the data (or the subsample).

    Raises :class:`~eraserlib.NegativeCurvatureError` if pᵀAp ≤ 0 for a search direction p.
    """

    name = "cg"
    Options = CGOptions

    def spectrum(self, objective: TrainingObjective, iterations: int, sample_size: int | None) -> Spectrum:
        """Lanczos on the same subsample CG uses, when one is set (the damping then fits the operator)."""
        return estimate_spectrum(objective, iterations=iterations,
                                 sample_size=self.options.hessian_examples or sample_size)

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        o = self.options
        lam = float(damping or 0.0)
        examples = objective.subsample(o.hessian_examples)
        b_norm = float(b.norm())
        x = torch.zeros_like(b)
        residual = b.clone()
        direction = residual.clone()
        rr = float(residual @ residual)
        history: list[tuple[int, float]] = [(objective.hvp_count, 1.0)]
        stop = "max_iterations"
        bar = progress_bar(range(o.max_iterations), desc="cg", progress=progress)
        for iteration in bar:
            product = objective.product(direction, examples) + lam * direction
            curvature = float(direction @ product)
            if curvature <= 0:
                raise NegativeCurvatureError(
                    f"CG met a direction with pᵀ(H + λI)p = {curvature:.3g} ≤ 0 at iteration {iteration}: the Hessian "
                    "has negative curvature larger than the damping (common at a non-converged adapter). Raise "
                    "`damping` above the most negative eigenvalue, or use curvature='gauss_newton'."
                )
            alpha = rr / curvature
            x.add_(direction, alpha=alpha)
            residual.sub_(product, alpha=alpha)
            rr_next = float(residual @ residual)
            relative = math.sqrt(rr_next) / b_norm
            history.append((objective.hvp_count, relative))
            bar.set_postfix(residual=f"{relative:.3g}")
            if callback is not None:
                callback(x, objective.hvp_count)
            if not math.isfinite(relative):
                raise SolverDivergedError("CG produced a non-finite residual; check the loss and the damping.")
            if relative < o.tolerance:
                stop = "tolerance"
                break
            direction.mul_(rr_next / rr).add_(residual)
            rr = rr_next
        bar.close()
        return SolverResult(solution=x, stop_reason=stop, residual_estimate=history[-1][1], residual_history=history,
                            steps=len(history) - 1, converged=stop == "tolerance",
                            details={"iterations": len(history) - 1, "hessian_examples": len(examples)})
