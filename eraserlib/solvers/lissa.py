"""LiSSA (Agarwal et al. 2017): the truncated Neumann series on mini-batch curvature products."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eraserlib.errors import SolverDivergedError
from eraserlib.objective import TrainingObjective
from eraserlib.progress import progress_bar
from eraserlib.solvers.base import Callback, Solver, SolverOptions, SolverResult, Spectrum, option

#: Terms between two entries of the residual history (and two callbacks).
HISTORY_EVERY = 20


@dataclass(frozen=True)
class LiSSAOptions(SolverOptions):
    """Options of LiSSA."""

    depth: int = option(1000, "J, terms of the series (mini-batch products per repeat)")
    repeats: int = option(1, "independent runs averaged")
    scale: float | None = option(None, "s; None: 2·(λ_max + wd + λ), a margin for batch-to-batch variation")
    top_eigenvalue: float | None = option(None, "λ_max of the data Hessian if known (None: from the spectrum estimate)")


class LiSSA(Solver):
    """A⁻¹b ≈ (1/s) Σ_{j<J} (I − A_B/s)ʲ b, with a fresh batch per term.

    Written as the recursion h₀ = b, hⱼ = b + (I − A_Bⱼ / s) hⱼ₋₁, answer h_J / s; averaged over
    ``repeats`` independent runs. It converges only if s > λ_max(A_B) for every batch, and
    needs J ≈ κ log(1/ε) terms — the cumulative error the paper contrasts its solver with.
    It stops at ``depth``: there is no stopping rule to report honestly beyond the residual
    estimate (an exponential average of the batch residuals), which is recorded.
    """

    name = "lissa"
    Options = LiSSAOptions

    def needs_spectrum(self) -> bool:
        return self.options.scale is None and self.options.top_eigenvalue is None

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        o = self.options
        shift = objective.weight_decay + float(damping or 0.0)
        scale = o.scale
        if scale is None:
            top = o.top_eigenvalue
            if top is None:
                top = (spectrum or self.spectrum(objective, 20, None)).largest
            scale = 2.0 * (max(top, 0.0) + shift)
        b_norm = float(b.norm())
        runs = []
        history: list[tuple[int, float]] = []
        bar = progress_bar(total=o.depth * o.repeats, desc="lissa", progress=progress)
        for _ in range(o.repeats):
            h = b.clone()
            g_average, decay = None, 0.95
            for j in range(1, o.depth + 1):
                product = objective.data_product(objective.sample_batch(), h) + shift * h  # A_B h
                g = product / scale - b  # residual of the current estimate x = h/s on this batch
                g_average = g if g_average is None else decay * g_average + (1 - decay) * g
                h = b + h - product / scale
                if not torch.isfinite(h).all() or float(h.norm()) > 1e6 * scale * b_norm:
                    raise SolverDivergedError(
                        f"LiSSA diverged at term {j}: the scale s = {scale:.3g} is below λ_max of a batch Hessian, or "
                        "H + λI is not positive definite. Pass a larger `scale` or `damping`."
                    )
                if j % HISTORY_EVERY == 0:
                    history.append((objective.hvp_count, float(g_average.norm()) / b_norm))
                    if callback is not None and o.repeats == 1:
                        callback(h / scale, objective.hvp_count)
                bar.update()
            runs.append(h / scale)
        bar.close()
        return SolverResult(solution=torch.stack(runs).mean(0), stop_reason="depth",
                            residual_estimate=history[-1][1] if history else math.inf, residual_history=history,
                            steps=o.depth * o.repeats, converged=None,
                            details={"depth": o.depth, "repeats": o.repeats, "scale": scale})
