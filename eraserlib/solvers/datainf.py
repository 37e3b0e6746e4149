"""DataInf's closed form (Kwon et al., ICLR 2024): a per-tensor empirical-Fisher inverse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eraserlib.errors import SolverDivergedError
from eraserlib.objective import TrainingObjective, unflatten
from eraserlib.solvers.base import Callback, Solver, SolverOptions, SolverResult, Spectrum, option

#: DataInf's own damping, λ_l = wd + DATAINF_DAMPING_SHARE · mean ‖gᵢₗ‖² per tensor l.
DATAINF_DAMPING_SHARE = 0.1


@dataclass(frozen=True)
class DataInfOptions(SolverOptions):
    """Options of DataInf."""

    examples: int | None = option(None, "use a fixed random subset of this many training examples (None: all n)")


class DataInf(Solver):
    """For each parameter tensor l separately:

        (G_l + λ_l I)⁻¹ v ≈ (1/n) Σᵢ (1/λ_l) [v − (gᵢₗᵀv) / (λ_l + ‖gᵢₗ‖²) · gᵢₗ],

    where G_l = (1/n) Σ gᵢₗ gᵢₗᵀ is the empirical Fisher block of tensor l, gᵢₗ the per-example
    gradient, and λ_l = wd + λ; with "auto" damping DataInf's own rule λ_l = wd + 0.1 · mean ‖gᵢₗ‖².
    It swaps the order of inversion and averaging, which is exact only for λ → ∞ (or rank-one
    G), and ignores the cross-tensor blocks and the non-Fisher part of H — so its answer differs
    from (H + λI)⁻¹b by a bias no iteration count removes.
    """

    name = "datainf"
    Options = DataInfOptions
    follows_damping_rule = False

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool = False, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        sample = objective.subsample(self.options.examples)
        gradients = objective.per_example_gradients(sample)  # (m, p)
        pieces, lambdas, offset = [], [], 0
        for v in unflatten(b, objective.params):
            size = v.numel()
            g = gradients[:, offset:offset + size]  # (m, size)
            offset += size
            squared = (g * g).sum(1)  # (m,)
            own = DATAINF_DAMPING_SHARE * float(squared.mean())
            lam = objective.weight_decay + (own if damping is None else damping)
            if lam <= 0:
                raise SolverDivergedError("DataInf needs wd + λ > 0; pass damping > 0 or damping='auto'.")
            lambdas.append(lam)
            v = v.reshape(-1)
            coefficients = (g @ v) / (lam + squared)  # (m,)
            pieces.append((v - (coefficients[:, None] * g).mean(0)) / lam)
        return SolverResult(solution=torch.cat(pieces), stop_reason="closed_form", residual_estimate=math.nan,
                            steps=1, details={"examples": len(sample), "per_tensor_damping": lambdas})
