"""The extreme eigenvalues of the data Hessian, by Lanczos on a fixed sample."""

from __future__ import annotations

import torch

from eraserlib.objective import TrainingObjective
from eraserlib.solvers.base import Spectrum

#: Examples in the Lanczos sample, in mini-batches: one batch over-estimated the most negative
#: eigenvalue threefold on a tiny LoRA model, four came close (``tests/test_solvers.py``).
SPECTRUM_SAMPLE_BATCHES = 4


def estimate_spectrum(objective: TrainingObjective, iterations: int = 20, sample_size: int | None = None) -> Spectrum:
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
        The :class:`Spectrum` of Ritz values (``exact=False``).
    """
    examples = objective.subsample(sample_size or SPECTRUM_SAMPLE_BATCHES * objective.batch_size)
    k = min(iterations, objective.num_parameters)
    q = torch.randn(objective.num_parameters, generator=objective.generator, dtype=objective.vector_dtype)
    q = (q / q.norm()).to(objective.device)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(k):
        w = objective.data_product(examples, basis[-1])
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
    return Spectrum(float(ritz[0]), float(ritz[-1]), exact=False)
