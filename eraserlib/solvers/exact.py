"""The dense solve: form the p×p curvature matrix and solve in float64 (small p only). The reference.

The matrix is the objective's curvature: the Hessian (:func:`dense_hessian`) or, for
``curvature="gauss_newton"``, the Gauss–Newton matrix G = (1/n) Σ Jᵢᵀ H_out Jᵢ + wd·I
(:func:`dense_gauss_newton`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eraserlib.errors import NegativeCurvatureError, ProblemTooLargeError
from eraserlib.hessian import double_backward_error, once_differentiable_in_graph
from eraserlib.objective import TrainingObjective
from eraserlib.progress import progress_bar
from eraserlib.solvers.base import Callback, Solver, SolverOptions, SolverResult, Spectrum, option

#: Columns of the dense matrix computed per batched backward pass.
COLUMN_BLOCK = 256
#: A smallest eigenvalue of H + λI at or below this share of the largest is zero in float64 (the
#: eigenvalues' rounding error is about p·ε·λ_max ≤ 10⁻¹²·λ_max for p ≤ 5000): the system is singular.
SINGULAR_SHARE = 1e-10


@dataclass(frozen=True)
class ExactOptions(SolverOptions):
    """Options of the dense solve."""

    max_parameters: int = option(5000, "refuse above this p (the matrix has p² entries and costs ~p products per "
                                       "data chunk)")
    hessian: torch.Tensor | None = option(None, "a precomputed dense curvature matrix to reuse (float64, p×p, weight "
                                                "decay included): dense_hessian(objective), or dense_gauss_newton("
                                                "objective) with curvature='gauss_newton'")
    allow_indefinite: bool = option(False, "solve H + λI even when it is not positive definite (a saddle point of "
                                           "the quadratic, not an update; for studying one)")


def dense_hessian(objective: TrainingObjective, progress: bool | None = None) -> torch.Tensor:
    """The p×p Hessian of the training objective (weight decay included), float64, symmetrised.

    Built column block by column block with batched double backward over all n examples;
    cost ≈ p HVPs per data chunk, so only for small p. On W ranks each sums its share of the
    data and the p×p partial sums are all-reduced in float64 (:meth:`TrainingObjective.reduce`).
    """
    p = objective.num_parameters
    hessian = objective.reduce(lambda: _partial_dense_hessian(objective, progress)) / objective.n
    hessian = 0.5 * (hessian + hessian.T)
    hessian += objective.weight_decay * torch.eye(p, dtype=torch.float64)
    return hessian


def _partial_dense_hessian(objective: TrainingObjective, progress: bool) -> torch.Tensor:
    """Σ over this rank's chunks of count · ∇²ℓ(batch), float64 on the CPU (p×p)."""
    p = objective.num_parameters
    hessian = torch.zeros(p, p, dtype=torch.float64)
    bar = progress_bar(total=math.ceil(objective.n / objective.batch_size), desc="dense Hessian", progress=progress)
    first = True
    for count, batch in objective.chunks(objective.train_data):
        grads = torch.autograd.grad(objective.loss(batch), objective.params, create_graph=True, allow_unused=True)
        if first and once_differentiable_in_graph(grads):
            raise double_backward_error("the model has a once-differentiable op (@once_differentiable backward)")
        first = False
        flat = torch.cat([(torch.zeros_like(q) if g is None else g).reshape(-1) for g, q in zip(grads, objective.params)])
        if not flat.requires_grad:
            raise double_backward_error("the gradient has no autograd graph (is the loss linear in the parameters?)")
        for start in range(0, p, COLUMN_BLOCK):
            stop = min(start + COLUMN_BLOCK, p)
            basis = torch.zeros(stop - start, p, dtype=flat.dtype, device=flat.device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            rows = torch.autograd.grad(flat, objective.params, grad_outputs=basis, retain_graph=True,
                                       is_grads_batched=True, allow_unused=True)
            rows = torch.cat([torch.zeros(stop - start, q.numel(), dtype=flat.dtype, device=flat.device) if r is None
                              else r.reshape(stop - start, -1) for r, q in zip(rows, objective.params)], dim=1)
            hessian[start:stop] += count * rows.double().cpu()
        objective.hvp_count += p
        objective.hvp_examples += p * count
        bar.update()
    bar.close()
    return hessian


def dense_gauss_newton(objective: TrainingObjective, progress: bool = False) -> torch.Tensor:
    """The p×p Gauss–Newton matrix of the training objective (weight decay included), float64, symmetrised.

    G = (1/n) Σ_chunks |chunk| · J_chunkᵀ H_out J_chunk + wd·I, built :data:`COLUMN_BLOCK` columns at a time
    (:meth:`eraserlib.curvature.GaussNewtonProduct.columns`); cost ≈ p Gauss–Newton products per data chunk.
    """
    from eraserlib.curvature import GaussNewtonProduct

    product = objective.gauss_newton or GaussNewtonProduct(objective.model, objective.loss_fn, objective.names,
                                                           objective.params)
    p = objective.num_parameters

    def partial() -> torch.Tensor:  # Σ over this rank's chunks; the ranks' sums are all-reduced
        matrix = torch.zeros(p, p, dtype=torch.float64)
        bar = progress_bar(total=math.ceil(objective.n / objective.batch_size), desc="dense Gauss-Newton",
                           progress=progress)
        for count, batch in objective.chunks(objective.train_data):
            for start in range(0, p, COLUMN_BLOCK):
                stop = min(start + COLUMN_BLOCK, p)
                basis = torch.zeros(stop - start, p, dtype=objective.dtype, device=objective.device)
                basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
                matrix[start:stop] += count * product.columns(batch, basis).double().cpu()
            objective.hvp_count += p
            objective.gauss_newton_count += p
            objective.hvp_examples += p * count
            bar.update()
        bar.close()
        return matrix

    matrix = objective.reduce(partial)
    matrix /= objective.n
    matrix = 0.5 * (matrix + matrix.T)
    matrix += objective.weight_decay * torch.eye(p, dtype=torch.float64)
    return matrix


def dense_curvature(objective: TrainingObjective, progress: bool = False) -> torch.Tensor:
    """The dense matrix of the objective's curvature: :func:`dense_hessian` or :func:`dense_gauss_newton`."""
    if objective.curvature == "gauss_newton":
        return dense_gauss_newton(objective, progress=progress)
    return dense_hessian(objective, progress=progress)


class Exact(Solver):
    """Solve (C + λI)x = b with the dense curvature matrix C (Hessian or Gauss–Newton), in float64.

    Raises :class:`~eraserlib.ProblemTooLargeError` above ``max_parameters``.
    """

    name = "exact"
    Options = ExactOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.matrix: torch.Tensor | None = self.options.hessian

    def _check_size(self, objective: TrainingObjective) -> None:
        p = objective.num_parameters
        if p > self.options.max_parameters:
            raise ProblemTooLargeError(
                f"solver='exact' would form a {p}×{p} curvature matrix ({p * p * 8 / 2**30:.1f} GiB in float64, ~{p} HVPs per "
                f"data chunk), above max_parameters={self.options.max_parameters}. Use solver='cg' or 'llmeraser', or "
                "raise max_parameters if you really mean it."
            )

    def prepare(self, objective: TrainingObjective, *, progress: bool | None = None) -> None:
        """Form the dense matrix once (reused by :meth:`spectrum` and :meth:`solve`)."""
        if self.matrix is None:
            self._check_size(objective)
            self.matrix = dense_curvature(objective, progress=progress)

    def spectrum(self, objective: TrainingObjective, iterations: int, sample_size: int | None) -> Spectrum:
        """The exact extreme eigenvalues of the data part (weight decay removed)."""
        self.prepare(objective)
        eigenvalues = torch.linalg.eigvalsh(self.matrix) - objective.weight_decay
        return Spectrum(float(eigenvalues[0]), float(eigenvalues[-1]), exact=True)

    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        self._check_size(objective)
        self.prepare(objective, progress=progress)
        p = objective.num_parameters
        system = self.matrix + float(damping or 0.0) * torch.eye(p, dtype=torch.float64)
        eigenvalues = torch.linalg.eigvalsh(system)
        if not self.options.allow_indefinite:
            require_positive_definite(float(eigenvalues[0]), float(eigenvalues[-1]), float(damping or 0.0))
        rhs = b.double().cpu()
        x = torch.linalg.solve(system, rhs)
        residual = float((system @ x - rhs).norm() / rhs.norm())
        return SolverResult(solution=x.to(b.device), stop_reason="direct_solve", residual_estimate=residual,
                            residual_history=[(objective.hvp_count, residual)], steps=1,
                            details={"smallest_eigenvalue": float(eigenvalues[0]),
                                     "largest_eigenvalue": float(eigenvalues[-1]),
                                     "positive_definite": bool(eigenvalues[0] > 0)})


def require_positive_definite(smallest: float, largest: float, damping: float) -> None:
    """Refuse H + λI whose smallest eigenvalue is ≤ 0 (or numerically zero): its "solution" is no update.

    The quadratic ½ xᵀ(H + λI)x − bᵀx has no minimum then; a direct solve still returns
    a vector — the saddle point — dominated by the directions of near-zero curvature (at
    damping 0 on a tiny LoRA model its norm was hundreds of times the damped answer's,
    ``tests/test_bad_inputs.py``). CG raises the same error when it meets such a direction.

    Raises:
        NegativeCurvatureError: naming the smallest eigenvalue and a damping that would suffice.
    """
    if smallest > SINGULAR_SHARE * max(largest, 0.0):
        return
    needed = max(0.0, damping - smallest)  # the damping at which the smallest eigenvalue reaches 0
    kind = "singular" if abs(smallest) <= SINGULAR_SHARE * max(abs(largest), 1e-30) else "not positive definite"
    raise NegativeCurvatureError(
        f"solver='exact': H + λI is {kind} (smallest eigenvalue {smallest:.3g}, largest {largest:.3g}, at damping "
        f"λ = {damping:.3g}), so the quadratic has no minimum and its solve is a saddle point, not an update. Raise "
        f"`damping` above {needed:.3g} (damping='auto' does), use curvature='gauss_newton', or pass "
        "options={'allow_indefinite': True} to solve it anyway.")
