"""The influence update: ``erase`` computes one influence-function step of the trainable parameters for a request.

    ΔΘ = (H + λI)⁻¹ b,        θ_new = θ̂ + ΔΘ,

H the Hessian of the training objective (1/n) Σ ℓ + (wd/2)‖θ‖² at the trained parameters θ̂,
b the request's right-hand side (:mod:`eraserlib.requests`), λ a damping. This is one Newton
step from θ̂ on the training objective *after* the request, i.e. the first-order estimate of
what retraining would do (the book's chapter 2 derives it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from eraserlib.errors import EraserError, InvalidRequestError
from eraserlib.objective import LossFn, TrainingObjective, trainable_parameters, unflatten
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.solvers import SOLVERS, dense_hessian, estimate_spectrum

#: "auto" damping makes every eigenvalue of H + λI at least λ_max / AUTO_CONDITION_NUMBER
#: (see :func:`erase` for why 10²).
AUTO_CONDITION_NUMBER = 1e2
#: Safety factor on an *estimated* most negative eigenvalue (Ritz values under-estimate it).
AUTO_NEGATIVE_CURVATURE_MARGIN = 1.5


@dataclass
class EraseResult:
    """What :func:`erase` returns.

    Attributes:
        delta: Parameter name → ΔΘ for that parameter (same shape; float32).
        diagnostics: Solver name, damping, HVP count, wall time, residual history, ‖ΔΘ‖,
            stop reason, and solver-specific entries.
    """

    delta: dict[str, torch.Tensor]
    diagnostics: dict[str, Any] = field(default_factory=dict)


def _check_request(request: Any) -> None:
    if not isinstance(request, (InstanceRemoval, QueryModification, ResponseCorrection)):
        raise InvalidRequestError(
            "request must be eraserlib.InstanceRemoval, QueryModification or ResponseCorrection, "
            f"got {type(request).__name__}."
        )


def _check_damping(damping: float | str) -> None:
    if damping == "auto":
        return
    if isinstance(damping, str) or not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number ≥ 0 or 'auto', got {damping!r}.")


def erase(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Sequence[Any],
    request: InstanceRemoval | QueryModification | ResponseCorrection,
    solver: str = "llmeraser",
    weight_decay: float = 0.0,
    damping: float | str = "auto",
    collate_fn: Callable[[list[Any]], Any] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    hvp_dtype: torch.dtype | None = torch.float32,
    progress: bool = True,
    **solver_options: Any,
) -> EraseResult:
    """Estimate how the trainable parameters would change if the model were retrained after ``request``.

    ΔΘ = (H + λI)⁻¹ b with H = (1/n) Σ ∇²ℓ(zᵢ; θ̂) + wd·I, and b from the request:
    (1/n) Σ [∇ℓ(old) − ∇ℓ(new)] for query modification and response correction,
    (1/(n−k)) Σ_S ∇ℓ(z) + (k/(n−k))·wd·θ̂ for the removal of k examples S.
    The model is not modified; call :func:`apply_delta` to apply the result.

    Args:
        model: Any ``nn.Module``; only parameters with ``requires_grad=True`` change (the LoRA
            matrices of a ``PeftModel``). Its attention must be twice differentiable
            (``attn_implementation="eager"``; SDPA is routed to its math kernel automatically).
        loss_fn: ``loss_fn(model, batch) -> scalar``: the *mean* per-example loss over the batch,
            as in training. It moves the batch to the model's device if needed.
        train_data: The n training examples as the model was trained on them (for QM/RC: with
            the *old* versions in place; for IR: including the examples to remove).
        request: :class:`InstanceRemoval`, :class:`QueryModification` or :class:`ResponseCorrection`.
        solver: ``"llmeraser"`` (default; stochastic quadratic program), ``"cg"``, ``"lissa"``,
            ``"exact"`` (dense Hessian, small models only) or ``"datainf"``.
        weight_decay: wd of the training objective (L2 in the loss, not decoupled AdamW).
        damping: λ ≥ 0, or ``"auto"``: the smallest λ that lifts every eigenvalue of H + λI to at
            least λ_max/10², i.e. λ = max(0, λ_max/10² − wd − 1.5·min(λ_min, 0)) with λ_min, λ_max
            the extreme eigenvalues of the data Hessian (Lanczos on a sample of four mini-batches,
            or on the Hessian subsample of ``cg`` when ``hessian_examples`` is given; the dense
            spectrum, without the 1.5 margin, for ``exact``; DataInf's own per-tensor rule for
            ``datainf``). Why: with weight decay a convex loss needs no
            damping, and any λ biases the answer (tests/test_convex.py). An adapter trained
            with wd = 0 has a Hessian that is singular in most directions and, away from an
            exact minimum, slightly indefinite: (H + λI)⁻¹b then does not exist or is dominated
            by directions the data barely constrains. Lifting the spectrum to λ_max/10² makes
            the quadratic convex with condition number ≲ 10², where the quadratic model of a
            non-convex loss is most trustworthy and the stochastic solver converges within a
            few hundred steps (its averaging must span ~κ steps), while directions with
            curvature above λ_max/10 keep ≥ 90% of their update. Less damping moves the update
            further (the book's chapters measure it) at a higher cost. Pass a number for
            comparisons across runs.
        collate_fn: Turns a list of examples into a batch (default ``default_collate``).
        batch_size: Examples per forward pass and per stochastic HVP.
        seed: Seeds every random choice (mini-batches, power-iteration start).
        hvp_dtype: Dtype of gradients and HVPs; float32 by default even for bf16 models (a bf16
            HVP was 5% off on a 1B model). ``None`` keeps the model's dtype (saves memory).
        progress: Show progress bars.
        **solver_options: Passed to the solver (e.g. ``max_steps``, ``tolerance``; see
            :mod:`eraserlib.solvers`), except ``spectrum_iterations`` (default 20) and
            ``spectrum_sample_size`` (default four mini-batches): the size of the Lanczos run that
            estimates the spectrum for the "auto" damping and llmeraser's step size. Its cost is
            iterations × sample/batch_size mini-batch HVPs — more than a small solve; pass
            ``top_eigenvalue`` (and a numeric damping) to skip it.

    Returns:
        :class:`EraseResult` with ``delta`` (name → tensor) and ``diagnostics``.

    Raises:
        InvalidRequestError, NoTrainableParametersError, NonFiniteError, SolverDivergedError,
        NegativeCurvatureError, DoubleBackwardUnsupportedError, ProblemTooLargeError, ValueError.
    """
    _check_request(request)
    if solver not in SOLVERS:
        raise ValueError(f"Unknown solver {solver!r}; choose one of {sorted(SOLVERS)}.")
    _check_damping(damping)
    if len(train_data) == 0:
        raise InvalidRequestError("train_data is empty: erase needs the data the model was trained on.")

    start = time.perf_counter()
    objective = TrainingObjective(model, loss_fn, train_data, weight_decay=weight_decay, batch_size=batch_size,
                                  collate_fn=collate_fn, seed=seed, hvp_dtype=hvp_dtype)
    diagnostics: dict[str, Any] = {
        "solver": solver,
        "request": request.kind,
        "request_size": len(request),
        "num_train": objective.n,
        "num_parameters": objective.num_parameters,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "seed": seed,
    }
    with objective.evaluation():
        b = request.right_hand_side(objective)
        diagnostics["rhs_norm"] = float(b.norm())
        if float(b.norm()) == 0.0:
            x = torch.zeros_like(b)
            diagnostics.update(damping=0.0 if damping == "auto" else float(damping), stop_reason="zero_rhs",
                               residual_history=[], residual_estimate=0.0)
        else:
            options = dict(solver_options)
            if solver == "exact":
                options.setdefault("hessian", None)
                if options["hessian"] is None and objective.num_parameters <= options.get("max_parameters", 5000):
                    options["hessian"] = dense_hessian(objective, progress=progress)
            spectrum = {"iterations": options.pop("spectrum_iterations", 20),
                        "sample_size": options.pop("spectrum_sample_size", None)}
            lam = _resolve_damping(damping, solver, objective, options, spectrum)
            if solver in ("llmeraser", "lissa") and "top_eigenvalue" not in options and "scale" not in options:
                options["top_eigenvalue"] = estimate_spectrum(objective, **spectrum)[1]
            diagnostics["damping"] = lam
            diagnostics["damping_rule"] = "auto" if damping == "auto" else "given"
            x, details = SOLVERS[solver](objective, b, lam, progress=progress, **options)
            diagnostics.update(details)
    if not torch.isfinite(x).all():
        raise EraserError(f"solver {solver!r} returned a non-finite update; raise the damping.")
    delta = {name: piece.detach().to(torch.float32).clone()
             for name, piece in zip(objective.names, unflatten(x.float(), objective.params))}
    diagnostics.update(
        hvp_count=objective.hvp_count,
        hvp_examples=objective.hvp_examples,
        gradient_count=objective.gradient_count,
        delta_norm=float(x.norm()),
        wall_time_s=time.perf_counter() - start,
    )
    return EraseResult(delta=delta, diagnostics=diagnostics)


def _resolve_damping(damping: float | str, solver: str, objective: TrainingObjective, options: dict,
                     spectrum: dict) -> float | None:
    """Turn ``damping`` into λ (see :func:`erase` for the "auto" rule); records λ_max for reuse."""
    if damping != "auto":
        return float(damping)
    if solver == "datainf":
        return None  # DataInf's own per-tensor rule
    if solver == "exact" and options.get("hessian") is not None:
        eigenvalues = torch.linalg.eigvalsh(options["hessian"]) - objective.weight_decay
        smallest, largest, margin = float(eigenvalues[0]), float(eigenvalues[-1]), 1.0
    else:
        sample = options.get("hessian_examples") if solver == "cg" else None
        smallest, largest = estimate_spectrum(objective, iterations=spectrum["iterations"],
                                              sample_size=sample or spectrum["sample_size"])
        margin = AUTO_NEGATIVE_CURVATURE_MARGIN
        if solver in ("llmeraser", "lissa"):
            options.setdefault("top_eigenvalue", largest)
    floor = max(largest, 0.0) / AUTO_CONDITION_NUMBER
    return max(0.0, floor - objective.weight_decay - margin * min(smallest, 0.0))


def apply_delta(model: nn.Module, delta: dict[str, torch.Tensor], scale: float = 1.0) -> nn.Module:
    """Add ``scale · delta`` to the model's parameters in place.

    Args:
        model: The model ``erase`` was computed for.
        delta: Parameter name → change (``EraseResult.delta``).
        scale: Multiplier (e.g. -1 to undo).

    Returns:
        The same model.

    Raises:
        KeyError: if a name in ``delta`` is not a parameter of the model.
        ValueError: if a shape differs or the delta is non-finite.
    """
    parameters = dict(model.named_parameters())
    for name, change in delta.items():
        if name not in parameters:
            raise KeyError(f"delta names parameter {name!r}, which the model does not have.")
        if parameters[name].shape != change.shape:
            raise ValueError(f"delta for {name!r} has shape {tuple(change.shape)}, the parameter "
                             f"{tuple(parameters[name].shape)}.")
        if not torch.isfinite(change).all():
            raise ValueError(f"delta for {name!r} contains NaN or Inf; refusing to apply it.")
    with torch.no_grad():
        for name, change in delta.items():
            target = parameters[name]
            target.add_(change.to(device=target.device, dtype=target.dtype), alpha=scale)
    return model


__all__ = ["EraseResult", "erase", "apply_delta", "trainable_parameters"]
