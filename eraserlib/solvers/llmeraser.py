"""LLMEraser: the paper's stochastic quadratic program, done right.

Minimise F(x) = ½ xᵀ(H + λI)x − bᵀx with one mini-batch curvature product per step (the
paper's Algorithm 1), with the exact stochastic gradient, heavy-ball momentum, iterate
averaging over doubling windows and a stopping rule. See :meth:`LLMEraser.solve`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from eraserlib.errors import SolverDivergedError, SolverRestartedWarning
from eraserlib.objective import TrainingObjective
from eraserlib.progress import progress_bar
from eraserlib.solvers.base import Callback, Solver, SolverOptions, SolverResult, Spectrum, option

#: Restart with half the step when the stochastic gradient grows beyond this multiple of ‖b‖: a
#: stiff mini-batch can blow the iterate up long before it is non-finite
#: (``tests/test_solvers.py::test_llmeraser_restarts_when_a_stiff_batch_blows_the_iterate_up``).
DIVERGENCE_RATIO = 100.0


@dataclass(frozen=True)
class LLMEraserOptions(SolverOptions):
    """Options of the stochastic solver."""

    top_eigenvalue: float | None = option(None, "λ_max of the data Hessian if known; sets the step 1/(λ_max + wd + λ) "
                                                "(None: from the spectrum estimate)")
    max_steps: int = option(2048, "hard cap on steps (one mini-batch product each)")
    tolerance: float = option(0.1, "stop when the estimated relative error falls below this (0: run all max_steps, "
                                   "a fixed budget; erase then gives no NotConvergedWarning)")
    learning_rate: float | None = option(None, "step size η (None: 1/(λ_max + wd + λ))")
    momentum: float = option(0.5, "heavy-ball momentum β")
    first_window: int = option(16, "length of the first averaging window; windows double after it")
    max_restarts: int = option(4, "restarts with a halved step after a divergence before giving up")

    def __post_init__(self):
        from eraserlib.validation import check_option_values, require

        check_option_values(self, "llmeraser")
        require(self.max_steps >= 1, "llmeraser option max_steps must be ≥ 1", self.max_steps)
        require(self.tolerance >= 0, "llmeraser option tolerance must be ≥ 0", self.tolerance)
        require(self.learning_rate is None or self.learning_rate > 0, "llmeraser option learning_rate must be > 0",
                self.learning_rate)
        require(0 <= self.momentum < 1, "llmeraser option momentum must be in [0, 1)", self.momentum)
        require(self.first_window >= 1, "llmeraser option first_window must be ≥ 1", self.first_window)
        require(self.max_restarts >= 0, "llmeraser option max_restarts must be ≥ 0", self.max_restarts)
        require(self.top_eigenvalue is None or self.top_eigenvalue > 0, "llmeraser option top_eigenvalue must be > 0",
                self.top_eigenvalue)


class _Diverged(Exception):
    def __init__(self, step: int, ratio: float):
        super().__init__(step, ratio)
        self.step, self.ratio = step, ratio


class LLMEraser(Solver):
    """Stochastic minimisation of F(x) = ½ xᵀ(H + λI)x − bᵀx, one mini-batch product per step.

    Each step draws a mini-batch B and moves along the *exact* stochastic gradient

        g_t = H_B x_t + (wd + λ) x_t − b,      (H_B: curvature of the batch)

    with heavy-ball momentum: v ← β v + g_t, x ← x − η v. The official code instead
    backpropagates through ½ xᵀ(H x).detach(), whose gradient is ½Hx: its fixed point is
    2(H + 2λI)⁻¹ b, twice the influence estimate.

    * Step size: η = 1/L with L = λ_max + wd + λ: the effective step η/(1 − β) = 2/L is at the
      edge of stability for the stiffest direction.
    * Noise: with a constant step the iterate keeps fluctuating around the solution (each
      batch's curvature differs from H). The answer is the *average* of the iterates over a
      window (Polyak–Ruppert averaging: for quadratics, constant-step averaged SGD converges
      at rate O(1/T) whatever the conditioning, Bach & Moulines 2013). Windows are
      consecutive and double in length (16, 32, 64, … steps), so the latest one covers the
      last half of the run and forgets the transient.
    * Convergence estimate: the relative change ‖x̄_k − x̄_{k−1}‖/‖x̄_k‖ between the averages
      of two successive windows. When the windows' noise dominates it is about √3 times the
      error of x̄_k; while slow directions still converge it is larger still — a conservative
      estimate of the relative error (measured in ``tests/test_solvers.py``). The mean
      stochastic gradient is *not* used: it measures how far the iterate drifted during the
      window, not the residual of the average.
    * Stop: the estimate falls below ``tolerance`` at the end of a window, or ``max_steps``
      (the partial last window is averaged with the previous one).
    * Divergence (non-finite iterate, or ‖g‖ above :data:`DIVERGENCE_RATIO` × ‖b‖): restart
      from zero with half the step, at most ``max_restarts`` times; then raise.
    """

    name = "llmeraser"
    Options = LLMEraserOptions

    def needs_spectrum(self) -> bool:
        return self.options.top_eigenvalue is None

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        o = self.options
        top = o.top_eigenvalue
        if top is None:
            top = (spectrum or self.spectrum(objective, 20, None)).largest
        shift = objective.weight_decay + float(damping or 0.0)
        lipschitz = max(top, 0.0) + shift
        if lipschitz <= 0:
            raise SolverDivergedError("The curvature estimate is zero and there is no damping: the system is singular.")
        lr = o.learning_rate if o.learning_rate is not None else 1.0 / lipschitz
        for restart in range(o.max_restarts + 1):
            try:
                result = self._run(objective, b, shift, lr, progress, callback)
            except _Diverged as diverged:
                if restart == o.max_restarts:
                    raise SolverDivergedError(
                        f"llmeraser diverged after {diverged.step} steps (‖g‖/‖b‖ = {diverged.ratio:.3g}) even with "
                        f"the step halved {o.max_restarts} times. H + λI is probably not positive definite (negative "
                        "curvature at a non-converged adapter): raise `damping`, use curvature='gauss_newton', or pass "
                        f"a smaller `learning_rate` than {lr:.3g}."
                    ) from None
                lr /= 2  # the spectrum estimate missed the stiffest batch: retry more gently
                continue
            result.details.update(learning_rate=lr, momentum=o.momentum, top_eigenvalue=top, restarts=restart)
            if restart:
                warnings.warn(SolverRestartedWarning(
                    f"llmeraser diverged and restarted {restart} time(s), halving its step each time (now η = {lr:.3g}); "
                    "the answer is the last run's. The step 1/λ_max was too large for some mini-batch: the spectrum "
                    "estimate missed its curvature, or H + λI is not positive definite. Check "
                    "diagnostics['stop_reason'] and consider a larger `damping` or an explicit `top_eigenvalue`."),
                    stacklevel=2)
            return result
        raise AssertionError("unreachable")

    def _run(self, objective: TrainingObjective, b: torch.Tensor, shift: float, lr: float, progress: bool | None,
             callback: Callback | None) -> SolverResult:
        """One run at a fixed step η = ``lr``; raises ``_Diverged``."""
        o = self.options
        b_norm = float(b.norm())
        x, velocity = torch.zeros_like(b), torch.zeros_like(b)  # (p,)
        window_sum = torch.zeros_like(b)
        window_start, window_end = o.first_window, 2 * o.first_window  # steps (window_start, window_end]
        previous = None  # average of the last completed window
        history: list[tuple[int, float]] = []
        estimate, stop, step = math.inf, "max_steps", 0
        bar = progress_bar(range(1, o.max_steps + 1), desc="llmeraser", progress=progress)
        for step in bar:
            g = objective.data_product(objective.sample_batch(), x) + shift * x - b  # ∇F on the batch, (p,)
            velocity.mul_(o.momentum).add_(g)
            x.add_(velocity, alpha=-lr)
            if not torch.isfinite(x).all() or float(g.norm()) > DIVERGENCE_RATIO * b_norm:
                bar.close()
                raise _Diverged(step, float(g.norm()) / b_norm)
            if step > window_start:
                window_sum += x
            if step == window_end:
                average = window_sum / (window_end - window_start)
                if previous is not None:
                    estimate = float((average - previous).norm() / average.norm().clamp_min(1e-30))
                    history.append((objective.hvp_count, estimate))
                    bar.set_postfix(change=f"{estimate:.3g}")
                previous, window_sum = average, torch.zeros_like(b)
                if callback is not None:
                    callback(previous, objective.hvp_count)
                window_start, window_end = window_end, 2 * window_end
                if estimate < o.tolerance:
                    stop = "tolerance"
                    break
        bar.close()
        if stop == "max_steps":
            previous = _fold_partial_window(previous, window_sum, window_start, step, x)
        return SolverResult(solution=previous, stop_reason=stop, residual_estimate=estimate,
                            residual_history=history, steps=step, converged=estimate < o.tolerance,
                            details={"convergence_estimate":
                                     "relative change of the averaged iterate between successive windows"})


def _fold_partial_window(previous: torch.Tensor | None, window_sum: torch.Tensor, window_start: int, step: int,
                         x: torch.Tensor) -> torch.Tensor:
    """The answer when ``max_steps`` cut a window short: the unfinished window folded into the last complete one.

    The last complete window spans window_start/2 steps; the partial one ``step − window_start``.
    """
    partial = step - window_start
    if previous is None:
        return x.clone() if partial <= 0 else window_sum / partial
    if partial <= 0:
        return previous
    complete = window_start - window_start // 2
    return (previous * complete + window_sum) / (complete + partial)
