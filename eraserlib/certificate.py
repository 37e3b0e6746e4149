"""A certificate that needs no retraining: how much an update lowers the corrected objective's gradient.

    certificate = gradient_certificate(model, loss_fn, data_after_request, result.delta,
                                       weight_decay=wd, collate_fn=collate)
    certificate.ratio   # ‖∇R'(θ̂ + Δ)‖ / ‖∇R'(θ̂)‖

After a request the model should sit at a minimum of the *corrected* training objective

    R'(θ) = (1/n') Σ_{z ∈ D'} ℓ(z; θ) + (wd/2) ‖θ‖²,

D' the n' examples the request leaves (the retained examples of a removal; the training set
with the corrected versions in place for query modification and response correction). The
trained parameters θ̂ minimise the old objective, so ∇R'(θ̂) is the request's pull; a good
update Δ should bring ∇R'(θ̂ + Δ) close to zero. The ratio of the two norms is what a
practitioner can compute without retraining: two gradient passes over D', nothing else.

This is a separate public function, not an option of :func:`eraserlib.erase`: it costs two
full passes over the data (an erase touches only the request's examples and a few
mini-batches), it applies to any update (an erase, gradient ascent, a hand-made Δ), and
``erase`` should not pay for it unasked.

Why it is evidence and not proof. Guo et al. (2020, "Certified Data Removal from Machine
Learning Models") bound the gradient residual ‖∇R'(θ̂ + Δ)‖ of a Newton removal on an
L2-regularised *convex* loss; with R' λ-strongly convex, ‖θ̂ + Δ − θ*'‖ ≤ ‖∇R'(θ̂ + Δ)‖ / λ, so
a small gradient certifies closeness to the retrained optimum θ*'. A LoRA adapter's objective is
not convex and training does not reach its minimum: a small gradient can also mean a saddle,
another basin, or a flat direction, and retraining itself lands at different points for
different seeds. A ratio well below 1 says the update moved towards a stationary point of the
corrected objective; it does not say the model behaves like a retrained one (the experiments
measure that against retraining's own noise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from eraserlib.influence import apply_delta
from eraserlib.objective import LossFn, TrainingObjective


@dataclass(frozen=True)
class Certificate:
    """What :func:`gradient_certificate` returns.

    Attributes:
        gradient_norm: ‖∇R'(θ̂)‖, the corrected objective's gradient at the model as given.
        gradient_norm_after: ‖∇R'(θ̂ + Δ)‖, the same with the update applied.
        ratio: ``gradient_norm_after / gradient_norm`` (NaN when ``gradient_norm`` is 0):
            below 1, the update moved towards a stationary point of R'; exactly 1 for Δ = 0.
        num_examples: n', the examples of the corrected objective.
        weight_decay: wd of its L2 term.
    """

    gradient_norm: float
    gradient_norm_after: float
    ratio: float
    num_examples: int
    weight_decay: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gradient_certificate(
    model: nn.Module,
    loss_fn: LossFn,
    data_after_request: Sequence[Any],
    delta: Mapping[str, torch.Tensor] | Any,
    *,
    weight_decay: float = 0.0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    batch_size: int = 16,
    compute_dtype: torch.dtype | None = torch.float32,
    gradient_norm: float | None = None,
    process_group: Any = None,
) -> Certificate:
    """‖∇R'(θ̂)‖, ‖∇R'(θ̂ + Δ)‖ and their ratio, R' the corrected training objective (module docstring).

    One gradient pass over ``data_after_request`` at each point, through
    :class:`~eraserlib.objective.TrainingObjective` (eval mode, ``compute_dtype``,
    twice-differentiable SDPA: the same gradient ``erase`` uses). Δ is added for the second
    pass only; the parameters are then restored bit for bit, also when a pass raises.

    Args:
        model: The model the update is for (θ̂: its parameters with ``requires_grad=True``).
        loss_fn: ``loss_fn(model, batch) -> scalar``, the mean training loss over the batch.
        data_after_request: D', the n' examples the request leaves (retained examples for a
            removal; the training set with the corrected versions for QM/RC).
        delta: Parameter name → change (``EraseResult.delta``), or an ``EraseResult``.
        weight_decay: wd of the training objective's L2 term.
        collate_fn: List of examples → batch (default ``default_collate``).
        batch_size: Examples per forward pass.
        compute_dtype: Dtype of the passes (``None``: the model's own).
        gradient_norm: ‖∇R'(θ̂)‖ when it is already known, from an earlier certificate of the
            same model, data and weight decay (several updates of one model share it): the
            first pass is then skipped and this value used.
        process_group: Who shares the passes, as in :func:`eraserlib.erase`: None — every rank of
            the default process group when ``torch.distributed`` is initialised, else this process;
            ``False`` — this process alone.

    Returns:
        The :class:`Certificate`.

    Raises:
        ValueError: ``data_after_request`` is empty.
        KeyError, ValueError: ``delta`` names a parameter the model lacks, or a shape differs
            (as :func:`eraserlib.apply_delta`).
    """
    if len(data_after_request) == 0:
        raise ValueError("data_after_request is empty: the corrected objective needs the examples the request leaves.")
    delta = getattr(delta, "delta", delta)
    objective = TrainingObjective(model, loss_fn, data_after_request, weight_decay=weight_decay,
                                  batch_size=batch_size, collate_fn=collate_fn, compute_dtype=compute_dtype,
                                  process_group=process_group)
    before = _gradient_norm(objective) if gradient_norm is None else float(gradient_norm)
    parameters = dict(model.named_parameters())
    saved = {name: parameters[name].detach().clone() for name in delta if name in parameters}
    try:
        apply_delta(model, delta)
        after = _gradient_norm(objective)
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                parameters[name].copy_(value)
    ratio = after / before if before > 0 else float("nan")
    return Certificate(gradient_norm=before, gradient_norm_after=after, ratio=ratio,
                       num_examples=objective.n, weight_decay=float(weight_decay))


def _gradient_norm(objective: TrainingObjective) -> float:
    """‖(1/n') Σ ∇ℓ + wd·θ‖ at the model's current parameters."""
    with torch.enable_grad(), objective.evaluation():
        gradient = objective.loss_sum_gradient(objective.train_data) / objective.n
        if objective.weight_decay:
            gradient = gradient + objective.weight_decay * objective.parameters_vector()
    return float(gradient.norm())
