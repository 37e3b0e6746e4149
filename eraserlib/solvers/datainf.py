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
    own_damping: bool = option(False, "with damping='auto', use DataInf's own per-tensor rule λ_l = wd + 0.1·mean "
                                      "‖gᵢₗ‖² instead of the library's rule (its updates were ~10³× the exact "
                                      "one on a tiny LoRA model: tests/test_solvers.py)")

    def __post_init__(self):
        from eraserlib.validation import check_option_values, require

        check_option_values(self, "datainf")
        require(self.examples is None or self.examples >= 1, "datainf option examples must be ≥ 1", self.examples)


class DataInf(Solver):
    """For each parameter tensor l separately:

        (G_l + λ_l I)⁻¹ v ≈ (1/n) Σᵢ (1/λ_l) [v − (gᵢₗᵀv) / (λ_l + ‖gᵢₗ‖²) · gᵢₗ],

    where G_l = (1/n) Σ gᵢₗ gᵢₗᵀ is the empirical Fisher block of tensor l, gᵢₗ the per-example
    gradient, and λ_l = wd + λ. It swaps the order of inversion and averaging, which is exact
    only for λ → ∞ (or rank-one G), and ignores the cross-tensor blocks and the non-Fisher part
    of H — so its answer differs from (H + λI)⁻¹b by a bias no iteration count removes.

    Damping: under ``erase(..., damping="auto")`` λ is the library's rule
    (:func:`eraserlib.damping.auto_damping`, as for every other solver). DataInf's own rule,
    λ_l = wd + 0.1 · mean ‖gᵢₗ‖² per tensor (``own_damping=True``, or ``solve(..., damping=None)``),
    scales with the squared gradients, which nearly vanish at a trained adapter: on a tiny LoRA
    Llama it gave λ_l ~10⁻⁵ against the rule's ~10⁻², and an update hundreds to thousands of
    times the exact one (``tests/test_solvers.py::test_datainf_default_is_near_the_exact_solve``
    measures both); applied, such an update wrecks the model.
    """

    name = "datainf"
    Options = DataInfOptions

    @property
    def follows_damping_rule(self) -> bool:  # type: ignore[override]
        """False only with ``own_damping=True``: "auto" then means DataInf's per-tensor rule."""
        return not self.options.own_damping

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
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
