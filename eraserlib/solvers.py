"""Solvers for (H + λI) x = b over the trainable parameters.

Every solver receives a :class:`~eraserlib.objective.TrainingObjective` (which gives H v, the
Hessian of the training objective times a vector, weight decay included), the right-hand
side b and the damping λ, and returns x and a diagnostics dict. Write A = H + λI.

* ``llmeraser`` — the paper's method done right: stochastic minimisation of the quadratic
  F(x) = ½ xᵀ A x − bᵀ x with one mini-batch HVP per step (Algorithm 1 of the paper, with the
  exact gradient ∇F = A_B x − b, momentum tuned from the spectrum, iterate averaging and a
  stopping rule).
* ``cg`` — conjugate gradient on full-data (or fixed-subsample) HVPs.
* ``lissa`` — the LiSSA recursion (Agarwal et al. 2017) on mini-batch HVPs.
* ``exact`` — forms the dense p×p Hessian and solves in float64 (small p only).
* ``datainf`` — DataInf's closed form (Kwon et al. 2024): a per-tensor Gauss–Newton
  approximation whose inverse is a sum of rank-one corrections.

All work on flat float32 vectors of length p (float64 for ``exact``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from eraserlib.errors import (
    DoubleBackwardUnsupportedError,
    NegativeCurvatureError,
    ProblemTooLargeError,
    SolverDivergedError,
)
from eraserlib.objective import _DOUBLE_BACKWARD_HINT, TrainingObjective, unflatten

Solution = tuple[torch.Tensor, dict]


def _relative(vector: torch.Tensor, reference_norm: float) -> float:
    return float(vector.norm()) / reference_norm


# --------------------------------------------------------------------------------------------
# Spectrum
# --------------------------------------------------------------------------------------------
#: Examples in the Lanczos sample, in mini-batches: one batch over-estimated the most negative
#: eigenvalue threefold on a tiny LoRA model (−0.149 vs −0.048), four came within 6%.
SPECTRUM_SAMPLE_BATCHES = 4


def estimate_spectrum(objective: TrainingObjective, iterations: int = 20, sample_size: int | None = None) -> tuple[float, float]:
    """Extreme eigenvalues (λ_min, λ_max) of the data Hessian (weight decay excluded), by Lanczos.

    Lanczos with full re-orthogonalisation on the Hessian of a fixed random sample (drawn
    once, seeded), so the operator is deterministic; k iterations cost k HVPs over the
    sample and give Ritz values that approach both ends of the spectrum. A sample's Hessian
    has a wider spectrum than the full one (λ_max is convex, λ_min concave in H), which errs on
    the safe side for step sizes and damping; the Ritz values err the other way (they lie
    inside the spectrum), so callers keep a margin.

    Args:
        objective: The training objective.
        iterations: Lanczos steps k (≤ p).
        sample_size: Examples in the sample; default ``SPECTRUM_SAMPLE_BATCHES`` mini-batches.

    Returns:
        (smallest, largest) Ritz value.
    """
    examples = objective.subsample(sample_size or SPECTRUM_SAMPLE_BATCHES * objective.batch_size)
    k = min(iterations, objective.num_parameters)
    q = torch.randn(objective.num_parameters, generator=objective.generator, dtype=objective.vector_dtype)
    q = (q / q.norm()).to(objective.device)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(k):
        w = objective.data_hvp(examples, basis[-1])
        alphas.append(float(basis[-1] @ w))
        for v in basis:  # full re-orthogonalisation: k is small, stability matters more
            w = w - (v @ w) * v
        beta = float(w.norm())
        if j == k - 1 or beta < 1e-10 * max(1.0, abs(alphas[-1])):
            break
        betas.append(beta)
        basis.append(w / beta)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(tridiagonal)
    return float(ritz[0]), float(ritz[-1])


# --------------------------------------------------------------------------------------------
# LLMEraser: the stochastic quadratic program
# --------------------------------------------------------------------------------------------
#: llmeraser restarts with half the step when the stochastic gradient grows beyond this multiple
#: of ‖b‖ (see :func:`solve_llmeraser`). Measured (the recommendation experiment, 24 steps at
#: λ = 0.2 with λ_max given as 4): on Last.fm, after a mini-batch with a Rayleigh quotient of
#: 9.9 along the iterate, ‖x‖ jumped from 0.19 to 8.7 in four steps without ‖g‖ reaching 10³‖b‖,
#: so the former threshold let the blown-up answer through (JSD to Retrain 50× Corrupted's); at
#: 100 the run restarted once with half the step and ended closer to Retrain than Corrupted.
#: On MovieLens the same settings never came near 100 (the answers are unchanged). On a least-
#: squares problem with a few stiff examples (``tests/test_solvers.py``) 100 with up to four
#: restarts was as accurate as 10³ or better (cosine to the exact solve 0.97–1.00 against
#: 0.86–1.00); with two restarts, 100 gave up where 10³ still converged.
DIVERGENCE_RATIO = 100.0


def solve_llmeraser(
    objective: TrainingObjective,
    b: torch.Tensor,
    damping: float,
    *,
    top_eigenvalue: float | None = None,
    max_steps: int = 2048,
    tolerance: float = 0.1,
    learning_rate: float | None = None,
    momentum: float = 0.5,
    first_window: int = 16,
    max_restarts: int = 4,
    callback: Callable[[torch.Tensor, int], None] | None = None,
    progress: bool = True,
) -> Solution:
    """Minimise F(x) = ½ xᵀ(H + λI)x − bᵀx with one mini-batch HVP per step.

    Each step draws a mini-batch B and moves along the *exact* stochastic gradient

        g_t = H_B x_t + (wd + λ) x_t − b,      (H_B: data Hessian of the batch, by double backward)

    with heavy-ball momentum: v ← β v + g_t, x ← x − η v. The official code instead
    backpropagates through ½ xᵀ(H x).detach(), whose gradient is ½Hx: its fixed point is
    2(H + 2λI)⁻¹ b, twice the influence estimate (PAPER.md, defect 1).

    * Step size: η = 1/L with L = λ_max(H_data) + wd + λ (Lanczos on a sample): the effective
      step η/(1 − β) = 2/L is at the edge of stability for the stiffest direction.
    * Noise: with a constant step the iterate keeps fluctuating around the solution (each
      batch Hessian differs from H). The answer is the *average* of the iterates over a
      window (Polyak–Ruppert averaging: for quadratics, constant-step averaged SGD converges
      at rate O(1/T) whatever the conditioning, Bach & Moulines 2013). Windows are
      consecutive and double in length (16, 32, 64, … steps), so the latest one covers the
      last half of the run and forgets the transient.
    * Convergence estimate: the relative change ‖x̄_k − x̄_{k−1}‖/‖x̄_k‖ between the averages
      of two successive windows. When the windows' noise dominates, it is about √3 times
      the error of x̄_k; while slow directions still converge it is larger still — a
      conservative estimate of the relative error ‖x̄_k − x*‖/‖x*‖ (measured in
      ``tests/test_solvers.py``). The mean stochastic gradient is *not* used: it measures
      how far the iterate drifted during the window (Σ g_t ∝ x_start − x_end), not the
      residual of the average, and under-estimated it tenfold in our measurements.
    * Stopping rule: the estimate falls below ``tolerance`` at the end of a window, or
      ``max_steps`` (the partial last window is averaged with the previous one).
    * Divergence (non-finite iterate, or ‖g‖ above :data:`DIVERGENCE_RATIO` × ‖b‖): restart
      from zero with half the step (a given or sampled λ_max can miss the stiffest batch), at
      most ``max_restarts`` times; then raise. ``diagnostics["restarts"]`` says how many.

    Args:
        objective: The training objective (supplies mini-batches and HVPs).
        b: Right-hand side, flat (p,).
        damping: λ ≥ 0.
        top_eigenvalue: λ_max of the data Hessian if already known (else estimated here).
        max_steps: Hard cap on steps (= mini-batch HVPs).
        tolerance: Target for the estimated relative error (see above).
        learning_rate: η; default 1/L (above).
        momentum: β.
        first_window: Length of the first averaging window (the transient before it is discarded).
        max_restarts: Restarts with a halved step after a divergence before giving up.
        callback: Called as ``callback(answer_so_far, hvp_count)`` whenever a window closes
            (for studies of accuracy against work; it must not modify the tensor).
        progress: Show a tqdm bar.

    Returns:
        The averaged iterate x̄ (p,) and diagnostics.

    Raises:
        SolverDivergedError: if the iteration still diverges after the restarts (usually: H + λI
            is not positive definite).
    """
    if top_eigenvalue is None:
        top_eigenvalue = estimate_spectrum(objective)[1]
    shift = objective.weight_decay + damping
    L = max(top_eigenvalue, 0.0) + shift
    if L <= 0:
        raise SolverDivergedError("The Hessian estimate is zero and there is no damping: the system is singular.")
    lr = learning_rate if learning_rate is not None else 1.0 / L
    for restart in range(max_restarts + 1):
        try:
            solution, details = _averaged_heavy_ball(objective, b, shift, lr, momentum, max_steps, tolerance,
                                                     first_window, callback, progress)
        except _Diverged as diverged:
            if restart == max_restarts:
                raise SolverDivergedError(
                    f"llmeraser diverged after {diverged.step} steps (‖g‖/‖b‖ = {diverged.ratio:.3g}) even with the "
                    f"step halved {max_restarts} times. H + λI is probably not positive definite (negative "
                    "curvature at a non-converged adapter): raise `damping`, or pass a smaller "
                    f"`learning_rate` than {lr:.3g}."
                ) from None
            lr /= 2  # the Lanczos sample under-estimated the stiffest batch: retry more gently
            continue
        details.update(learning_rate=lr, momentum=momentum, top_eigenvalue=top_eigenvalue, restarts=restart)
        return solution, details
    raise AssertionError("unreachable")


class _Diverged(Exception):
    def __init__(self, step: int, ratio: float):
        super().__init__(step, ratio)
        self.step, self.ratio = step, ratio


def _averaged_heavy_ball(objective, b, shift, lr, momentum, max_steps, tolerance, first_window, callback, progress):
    """One run of :func:`solve_llmeraser`'s iteration at a fixed step; raises ``_Diverged``."""
    b_norm = float(b.norm())
    x, velocity = torch.zeros_like(b), torch.zeros_like(b)
    window_sum, window_start, window_end = torch.zeros_like(b), first_window, 2 * first_window
    previous = None  # average of the last completed window
    history: list[tuple[int, float]] = []
    estimate, stop = math.inf, "max_steps"
    bar = tqdm(range(1, max_steps + 1), desc="llmeraser", disable=not progress, leave=False)
    for step in bar:
        g = objective.data_hvp(objective.sample_batch(), x) + shift * x - b  # ∇F on the batch, (p,)
        velocity.mul_(momentum).add_(g)
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
            if estimate < tolerance:
                stop = "tolerance"
                break
    bar.close()
    if stop == "max_steps":  # fold the unfinished window into the last complete one
        partial = step - window_start
        if previous is None:
            previous = x.clone() if partial <= 0 else window_sum / partial
        elif partial > 0:
            previous = (previous * (window_start - window_start // 2) + window_sum) / (window_start - window_start // 2 + partial)
    return previous, {
        "steps": step,
        "residual_history": history,
        "residual_estimate": estimate,
        "convergence_estimate": "relative change of the averaged iterate between successive windows",
        "stop_reason": stop,
    }


# --------------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------------
def solve_cg(
    objective: TrainingObjective,
    b: torch.Tensor,
    damping: float,
    *,
    max_iterations: int = 200,
    tolerance: float = 1e-5,
    hessian_examples: int | None = None,
    callback: Callable[[torch.Tensor, int], None] | None = None,
    progress: bool = True,
) -> Solution:
    """Conjugate gradient on A = H + λI with full-data HVPs (each one costs an epoch).

    Args:
        objective: The training objective.
        b: Right-hand side (p,).
        damping: λ ≥ 0.
        max_iterations: CG iterations at most (each one full HVP).
        tolerance: Stop when ‖Ax − b‖/‖b‖ falls below this (the recurrence residual).
        hessian_examples: Use a fixed random subset of this many training examples for H
            (a "large-batch" Hessian); default all n.
        callback: Called as ``callback(x, hvp_count)`` after every iteration.
        progress: Show a tqdm bar.

    Raises:
        NegativeCurvatureError: if pᵀAp ≤ 0 for a search direction p.
    """
    examples = objective.subsample(hessian_examples)

    def apply(v: torch.Tensor) -> torch.Tensor:
        return objective.hvp(v, examples) + damping * v

    b_norm = float(b.norm())
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = residual.clone()
    rr = float(residual @ residual)
    history: list[tuple[int, float]] = [(objective.hvp_count, 1.0)]
    stop = "max_iterations"
    bar = tqdm(range(max_iterations), desc="cg", disable=not progress, leave=False)
    for iteration in bar:
        product = apply(direction)
        curvature = float(direction @ product)
        if curvature <= 0:
            raise NegativeCurvatureError(
                f"CG met a direction with pᵀ(H + λI)p = {curvature:.3g} ≤ 0 at iteration {iteration}: "
                "the Hessian has negative curvature larger than the damping (common at a non-converged "
                "adapter). Raise `damping` above the most negative eigenvalue."
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
        if relative < tolerance:
            stop = "tolerance"
            break
        direction.mul_(rr_next / rr).add_(residual)
        rr = rr_next
    bar.close()
    return x, {
        "iterations": len(history) - 1,
        "hessian_examples": len(examples),
        "residual_history": history,
        "residual_estimate": history[-1][1],
        "stop_reason": stop,
    }


# --------------------------------------------------------------------------------------------
# LiSSA
# --------------------------------------------------------------------------------------------
def solve_lissa(
    objective: TrainingObjective,
    b: torch.Tensor,
    damping: float,
    *,
    depth: int = 1000,
    repeats: int = 1,
    scale: float | None = None,
    top_eigenvalue: float | None = None,
    callback: Callable[[torch.Tensor, int], None] | None = None,
    progress: bool = True,
) -> Solution:
    """LiSSA: the truncated Neumann series A⁻¹b ≈ (1/s) Σ_{j<J} (I − A_B/s)ʲ b, with a fresh batch per term.

    Written as the recursion h₀ = b, hⱼ = b + (I − A_Bⱼ / s) hⱼ₋₁, answer h_J / s; averaged over
    ``repeats`` independent runs. It converges only if s > λ_max(A_B) for every batch, and
    needs J ≈ κ log(1/ε) terms — the cumulative error the paper contrasts its solver with.
    It stops at ``depth``: there is no stopping rule to report honestly beyond the residual
    estimate, which is recorded.

    Args:
        objective: The training objective.
        b: Right-hand side (p,).
        damping: λ ≥ 0.
        depth: J, terms of the series (mini-batch HVPs per repeat).
        repeats: Independent runs averaged.
        scale: s; default 2·(λ_max(H_data) + wd + λ) (a margin for batch-to-batch variation).
        top_eigenvalue: λ_max of the data Hessian if known.
        callback: Called as ``callback(current answer, hvp_count)`` every 20 terms (single repeat).
        progress: Show a tqdm bar.
    """
    shift = objective.weight_decay + damping
    if scale is None:
        if top_eigenvalue is None:
            top_eigenvalue = estimate_spectrum(objective)[1]
        scale = 2.0 * (max(top_eigenvalue, 0.0) + shift)
    b_norm = float(b.norm())
    runs = []
    history: list[tuple[int, float]] = []
    bar = tqdm(total=depth * repeats, desc="lissa", disable=not progress, leave=False)
    for _ in range(repeats):
        h = b.clone()
        g_average, decay = None, 0.95
        for j in range(1, depth + 1):
            batch = objective.sample_batch()
            product = objective.data_hvp(batch, h) + shift * h  # A_B h
            # residual of the current estimate x = h/s on this batch: A_B x − b
            g = product / scale - b
            g_average = g if g_average is None else decay * g_average + (1 - decay) * g
            h = b + h - product / scale
            if not torch.isfinite(h).all() or float(h.norm()) > 1e6 * scale * b_norm:
                raise SolverDivergedError(
                    f"LiSSA diverged at term {j}: the scale s = {scale:.3g} is below λ_max of a batch "
                    "Hessian, or H + λI is not positive definite. Pass a larger `scale` or `damping`."
                )
            if j % 20 == 0:
                history.append((objective.hvp_count, _relative(g_average, b_norm)))
                if callback is not None and repeats == 1:
                    callback(h / scale, objective.hvp_count)
            bar.update()
        runs.append(h / scale)
    bar.close()
    return torch.stack(runs).mean(0), {
        "depth": depth,
        "repeats": repeats,
        "scale": scale,
        "residual_history": history,
        "residual_estimate": history[-1][1] if history else math.inf,
        "stop_reason": "depth",
    }


# --------------------------------------------------------------------------------------------
# Exact dense solve
# --------------------------------------------------------------------------------------------
def dense_hessian(objective: TrainingObjective, progress: bool = True) -> torch.Tensor:
    """The p×p Hessian of the training objective (weight decay included), float64, symmetrised.

    Built column block by column block with batched double backward over all n examples;
    cost ≈ p HVPs per data chunk, so only for small p.
    """
    p = objective.num_parameters
    hessian = torch.zeros(p, p, dtype=torch.float64)
    block = 256
    bar = tqdm(total=math.ceil(objective.n / objective.batch_size), desc="dense Hessian", disable=not progress, leave=False)
    for count, batch in objective.chunks(objective.train_data):
        loss = objective._loss(batch)
        grads = torch.autograd.grad(loss, objective.params, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(q) if g is None else g for g, q in zip(grads, objective.params)]
        flat = torch.cat([g.reshape(-1) for g in grads])
        if not flat.requires_grad:
            raise DoubleBackwardUnsupportedError(_DOUBLE_BACKWARD_HINT.format(
                error="the gradient has no autograd graph (is the loss linear in the parameters?)"))
        for start in range(0, p, block):
            stop = min(start + block, p)
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
    hessian /= objective.n
    hessian = 0.5 * (hessian + hessian.T)
    hessian += objective.weight_decay * torch.eye(p, dtype=torch.float64)
    return hessian


def solve_exact(
    objective: TrainingObjective,
    b: torch.Tensor,
    damping: float,
    *,
    max_parameters: int = 5000,
    hessian: torch.Tensor | None = None,
    progress: bool = True,
) -> Solution:
    """Form H densely and solve (H + λI)x = b in float64. The reference for every other solver.

    Args:
        objective: The training objective.
        b: Right-hand side (p,).
        damping: λ ≥ 0.
        max_parameters: Refuse above this p (the matrix has p² entries and costs ~p HVPs per chunk).
        hessian: A precomputed :func:`dense_hessian` to reuse.
        progress: Show a tqdm bar.

    Raises:
        ProblemTooLargeError: if p > max_parameters.
    """
    p = objective.num_parameters
    if p > max_parameters:
        raise ProblemTooLargeError(
            f"solver='exact' would form a {p}×{p} Hessian ({p * p * 8 / 2**30:.1f} GiB in float64, ~{p} HVPs "
            f"per data chunk), above max_parameters={max_parameters}. Use solver='cg' or 'llmeraser', or "
            "raise max_parameters if you really mean it."
        )
    if hessian is None:
        hessian = dense_hessian(objective, progress=progress)
    system = hessian + damping * torch.eye(p, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvalsh(system)
    x = torch.linalg.solve(system, b.double().cpu())
    residual = float((system @ x - b.double().cpu()).norm() / b.double().norm())
    return x.to(b.device), {
        "smallest_eigenvalue": float(eigenvalues[0]),
        "largest_eigenvalue": float(eigenvalues[-1]),
        "positive_definite": bool(eigenvalues[0] > 0),
        "residual_history": [(objective.hvp_count, residual)],
        "residual_estimate": residual,
        "stop_reason": "direct_solve",
    }


# --------------------------------------------------------------------------------------------
# DataInf
# --------------------------------------------------------------------------------------------
def solve_datainf(
    objective: TrainingObjective,
    b: torch.Tensor,
    damping: float | None,
    *,
    examples: int | None = None,
    progress: bool = True,
) -> Solution:
    """DataInf's closed form (Kwon et al., ICLR 2024) for each parameter tensor l separately:

        (G_l + λ_l I)⁻¹ v ≈ (1/n) Σᵢ (1/λ_l) [v − (gᵢₗᵀv) / (λ_l + ‖gᵢₗ‖²) · gᵢₗ],

    where G_l = (1/n) Σ gᵢₗ gᵢₗᵀ is the empirical Fisher (Gauss–Newton) block of tensor l,
    gᵢₗ the per-example gradient, and λ_l = wd + λ; with ``damping=None`` ("auto"), DataInf's
    own rule λ_l = wd + 0.1 · mean ‖gᵢₗ‖². It swaps the order of inversion and averaging, which is exact only
    for λ → ∞ (or rank-one G), and ignores the cross-tensor blocks and the non-Gauss–Newton
    part of H — so its answer differs from (H + λI)⁻¹b by a bias no iteration count removes.

    Args:
        objective: The training objective.
        b: Right-hand side (p,).
        damping: λ ≥ 0, or None for DataInf's per-tensor rule.
        examples: Use a fixed random subset of this many training examples (default all n).
        progress: Unused (one pass of per-example gradients).
    """
    sample = objective.subsample(examples)
    gradients = objective.per_example_gradients(sample)  # (m, p)
    pieces = []
    lambdas = []
    offset = 0
    for v in unflatten(b, objective.params):
        size = v.numel()
        g = gradients[:, offset:offset + size]  # (m, size)
        offset += size
        squared = (g * g).sum(1)  # (m,)
        lam = objective.weight_decay + (0.1 * float(squared.mean()) if damping is None else damping)
        if lam <= 0:
            raise SolverDivergedError("DataInf needs wd + λ > 0; pass damping > 0 or damping='auto'.")
        lambdas.append(lam)
        v = v.reshape(-1)
        coefficients = (g @ v) / (lam + squared)  # (m,)
        pieces.append((v - (coefficients[:, None] * g).mean(0)) / lam)
    return torch.cat(pieces), {
        "examples": len(sample),
        "per_tensor_damping": lambdas,
        "residual_history": [],
        "residual_estimate": math.nan,
        "stop_reason": "closed_form",
    }


SOLVERS: dict[str, Callable[..., Solution]] = {
    "llmeraser": solve_llmeraser,
    "cg": solve_cg,
    "lissa": solve_lissa,
    "exact": solve_exact,
    "datainf": solve_datainf,
}
