"""The influence update: ``erase`` computes one influence-function step of the trainable parameters for a request.

    ΔΘ = (H + λI)⁻¹ b,        θ_new = θ̂ + ΔΘ,

H the Hessian of the training objective (1/n) Σ ℓ + (wd/2)‖θ‖² at the trained parameters θ̂,
b the request's right-hand side (:mod:`eraserlib.requests`), λ a damping. This is one Newton
step from θ̂ on the training objective *after* the request, i.e. the first-order estimate of
what retraining would do (the book's chapter 2 derives it).

**The defaults** — the Hessian (``curvature="hessian"``), one step (``steps=1``), the "auto"
damping of :mod:`eraserlib.damping` — were kept after measuring the alternatives against
retraining's noise (the normalised residual r of ``eraserlab.protocol``, 3 seeds, every setting
of the book; ``benchmarks/results/relinearised_erase-default-*.json`` and the chapters' tables):

* Gauss–Newton curvature, one step, at the Hessian's damping and solver budget is as close to
  retraining as the Hessian on every setting (the seeds' r overlap), so switching gains nothing
  there; with its own "auto" rule it goes further on a memorised record but raises the loss on
  the retained data while both retrains lower it (``benchmarks/results/recipe_stand_in-default.json``),
  and a default should not trade the data a user keeps for the data they remove.
* k re-linearised steps cost several one-step erases (more than half a retraining at these
  sizes); where the request's effect is above retraining's noise they came closer to retraining
  on response correction (the chapter's table) but not on the removal, where one distance moved
  closer and another further, so they are worth their cost only where the corrected objective is
  far from its minimum after one step.
* So Gauss–Newton, steps and the removal mode are options for the cases the default cannot
  serve, and the errors and rails name them there: an indefinite Hessian
  (:class:`~eraserlib.errors.NegativeCurvatureError`), a base sharded with FSDP (double backward
  fails there), a memorised record (``removal="match_heldout"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from eraserlib import safety as safety_rails
from eraserlib import validation
from eraserlib.curvature import check_curvature
from eraserlib.damping import automatic_damping, check_damping
from eraserlib.distributed import problem_fingerprint, resolve_group
from eraserlib.errors import EraserError, InvalidArgumentError, InvalidRequestError, PrecisionError
from eraserlib.matching import ExampleIndex, check_train_data, example_digest
from eraserlib.objective import LossFn, TrainingObjective, trainable_parameters, unflatten
from eraserlib.precision import MAX_ROUNDING_ERROR, describe_losses, rounding_loss, total_relative_error
from eraserlib.removal import check_removal, match_heldout
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.solvers import Solver, SolverOptions, get_solver
from eraserlib.steps import StepOptions, check_steps, make_step_options, relinearised_steps


@dataclass
class EraseResult:
    """What :func:`erase` returns.

    Attributes:
        delta: Parameter name → ΔΘ for that parameter (same shape; float32).
        diagnostics: Solver name, damping, product counts, wall time, residual history, ‖ΔΘ‖,
            stop reason, the request's positions in the data, the safety rails' report
            (``"safety"``, :mod:`eraserlib.safety`), and solver-specific entries (plain values, ready for JSON).
        parameters_before: θ̂, the trainable parameters erase saw (name → clone), so that
            :func:`eraserlib.adapters.save_erased_adapter` can check that the model it writes carries θ̂ + ΔΘ.
    """

    delta: dict[str, torch.Tensor]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    parameters_before: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def _check_request(request: Any) -> None:
    if not isinstance(request, (InstanceRemoval, QueryModification, ResponseCorrection)):
        raise InvalidRequestError(
            "request must be eraserlib.InstanceRemoval, QueryModification or ResponseCorrection, "
            f"got {type(request).__name__}."
        )


def _request_digests(request: Any, index: ExampleIndex, positions: list[int]) -> dict[str, list[str]]:
    """SHA-256 of each request example (:func:`eraserlib.matching.example_digest`), for the manifest."""
    digests = [index.digests[i] for i in positions]
    if request.kind == "instance_removal":
        return {"examples_sha256": digests}
    return {"old_sha256": digests, "new_sha256": [example_digest(e) for e in request.new]}


def erase(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Sequence[Any],
    request: InstanceRemoval | QueryModification | ResponseCorrection,
    *,
    solver: str | Solver = "llmeraser",
    options: SolverOptions | Mapping[str, Any] | None = None,
    damping: float | str = "auto",
    weight_decay: float = 0.0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    compute_dtype: torch.dtype | None = torch.float32,
    spectrum_iterations: int = 20,
    spectrum_sample_size: int | None = None,
    progress: bool | None = None,
    safety: bool | safety_rails.SafetyRails | Mapping[str, Any] = True,
    curvature: str = "hessian",
    steps: int = 1,
    step_options: StepOptions | Mapping[str, Any] | None = None,
    removal: str | None = None,
    heldout: Sequence[Any] | None = None,
    process_group: Any = None,
) -> EraseResult:
    """Estimate how the trainable parameters would change if the model were retrained after ``request``.

    ΔΘ = (H + λI)⁻¹ b with H = (1/n) Σ ∇²ℓ(zᵢ; θ̂) + wd·I, and b from the request:

    * :class:`InstanceRemoval`: b = (1/(n−k)) Σ_S ∇ℓ(z; θ̂) + (k/(n−k))·wd·θ̂;
    * :class:`QueryModification` / :class:`ResponseCorrection`: b = (1/n) Σ [∇ℓ(old) − ∇ℓ(new)].

    Add the result with :func:`apply_delta`. Nothing is modified here.

    Args:
        model: The trained model; only parameters with ``requires_grad=True`` change (the LoRA
            matrices of a ``PeftModel``). Its attention must be twice differentiable
            (``attn_implementation="eager"``; SDPA is routed to its math kernel automatically).
        loss_fn: ``loss_fn(model, batch) -> scalar``: the *mean per-example* loss over the batch,
            as in training. It moves the batch to the model's device if needed. Hugging Face's
            ``model(..., labels=...).loss`` is a mean over *tokens*, which weighs long examples
            more; :data:`eraserlib.causal_lm_loss` (with :class:`eraserlib.CausalLMCollator`) is
            the per-example mean (:mod:`eraserlib.losses` explains the difference).
        train_data: The n training examples as the model was trained on them (for QM/RC: with
            the *old* versions in place; for IR: including the examples to remove): a sequence
            or a Hugging Face ``datasets.Dataset`` (rows are dicts). Request examples are found
            in it by value (:mod:`eraserlib.matching`).
        request: :class:`InstanceRemoval`, :class:`QueryModification` or :class:`ResponseCorrection`.
        solver: A name of :data:`eraserlib.solvers.SOLVERS` — ``"llmeraser"`` (default; the
            stochastic quadratic program), ``"cg"``, ``"lissa"``, ``"exact"`` (dense, small models
            only), ``"datainf"`` — or a :class:`~eraserlib.solvers.Solver` instance.
        options: The solver's options: its options dataclass (e.g.
            :class:`~eraserlib.solvers.LLMEraserOptions`) or a dict of its fields, checked before
            any work (``Options.help()`` lists them).
        damping: λ ≥ 0, or ``"auto"``: :func:`eraserlib.damping.auto_damping` on the spectrum the
            solver sees (Lanczos on a sample; the dense spectrum for ``exact``; DataInf's own
            per-tensor rule for ``datainf``). Pass a number for comparisons across runs.
        weight_decay: wd of the training objective when it was an L2 term in the loss,
            (wd/2)‖θ‖². After AdamW (decoupled decay, the Hugging Face Trainer's default) pass
            0: AdamW's decay shrinks the weights outside the gradient, so the point it reached is
            not a minimum of loss + (wd/2)‖θ‖² for any wd; with 0, erase takes the data loss
            alone as the objective and the damping plays the part of the regulariser.
        collate_fn: Turns a list of examples into a batch (default ``default_collate``).
        batch_size: Examples per forward pass and per stochastic product.
        seed: Seeds every random choice (mini-batches, the Lanczos start).
        compute_dtype: Dtype of gradients and products; float32 by default even for bf16 models
            (a bf16 HVP was 5% off the float32 one on a 1B model). ``None`` keeps the model's
            dtype (saves memory).
        spectrum_iterations: Lanczos steps of the spectrum estimate ("auto" damping, the
            stochastic solvers' step size). It costs iterations × sample/batch_size mini-batch
            products — more than a small solve; give ``damping`` and the solver's
            ``top_eigenvalue`` to skip it.
        spectrum_sample_size: Examples in the Lanczos sample (default four mini-batches).
        progress: Show progress bars: None (default) only on a terminal, True always, False never.
        safety: The safety rails run after the solve (forward passes only, :mod:`eraserlib.safety`):
            True (default thresholds), a :class:`~eraserlib.safety.SafetyRails` or a dict of its
            fields, or False (off). A rail that fires gives a
            :class:`~eraserlib.errors.SafetyWarning`; the report is ``diagnostics["safety"]``.
        curvature: The curvature C of (C + λI)x = b: ``"hessian"`` (default) or ``"gauss_newton"``
            (G = Jᵀ H_out J, positive semi-definite; :mod:`eraserlib.curvature`). Gauss–Newton
            needs ``loss_fn`` split into ``outputs(model, batch)`` and ``loss_of_outputs(outputs,
            batch)`` (:class:`eraserlib.losses.OutputLoss`, e.g. :data:`eraserlib.causal_lm_loss`);
            its "auto" damping is :func:`eraserlib.damping.gauss_newton_damping`. Not for ``datainf``.
        steps: Re-linearised steps at most (:mod:`eraserlib.steps`): 1 (default) is the one-step
            estimate; k > 1 continues with damped Newton steps on the corrected objective R' (the
            training objective over the data after the request), each with a line search on R'
            and a Levenberg–Marquardt damping. With ``removal``: uphill directions at most.
        step_options: :class:`eraserlib.steps.StepOptions` or a dict of its fields (line search,
            trust region, R' evaluated on a subsample, the removal mode's tolerances).
        removal: ``None``, or ``"match_heldout"`` for an :class:`InstanceRemoval` of memorised
            examples (:mod:`eraserlib.removal`): constrained uphill steps until the removed
            examples' loss reaches that of ``heldout``.
        heldout: With ``removal="match_heldout"``: examples of the same kind the model never saw.
        process_group: Who shares the work (:mod:`eraserlib.distributed`): None (default) — every
            rank of the default process group when ``torch.distributed`` is initialised (call
            erase on every rank, with the same arguments: each sums over the examples at
            positions ≡ rank mod W and the sums are all-reduced), else this process alone; a
            ``ProcessGroup`` — its ranks; ``False`` — this process alone.

    Returns:
        :class:`EraseResult` with ``delta`` (name → tensor) and ``diagnostics``.

    Raises:
        InvalidRequestError, InvalidArgumentError, LossFunctionError, NoTrainableParametersError,
        NonFiniteError, SolverDivergedError, NegativeCurvatureError, DoubleBackwardUnsupportedError,
        ProblemTooLargeError, InvalidOptionsError, ValueError; on W ranks also
        :class:`~eraserlib.distributed.RankFailedError` (another rank failed) and
        :class:`~eraserlib.distributed.DistributedConfigurationError` (the ranks disagree).

    Warns:
        NotConvergedWarning, SolverRestartedWarning, IndefiniteSystemWarning, SafetyWarning (see
        :mod:`eraserlib.errors`).
    """
    group = resolve_group(process_group)
    with group.together():  # a bad argument on one rank stops every rank
        _check_request(request)
        if not isinstance(solver, (str, Solver)):
            raise InvalidArgumentError(f"solver must be a solver's name or a Solver, got {type(solver).__name__}.")
        solver = solver if isinstance(solver, Solver) else get_solver(solver, options)
        validation.check_option_values(solver.options, solver.name)
        check_damping(damping)
        check_curvature(curvature, solver, loss_fn)
        steps, step_options = check_steps(steps), make_step_options(step_options)
        check_removal(removal, heldout, request)
        validation.check_erase_arguments(
            model=model, loss_fn=loss_fn, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
            compute_dtype=compute_dtype, spectrum_iterations=spectrum_iterations,
            spectrum_sample_size=spectrum_sample_size, progress=progress, collate_fn=collate_fn)
        rails = safety_rails.rails_from(safety)
        check_train_data(train_data)
        index = ExampleIndex(train_data)  # one pass of hashing: the request's positions and the data's digest
        positions = request.locate(index)  # every request example must be a training example, by value
        validation.check_parameters_finite(model)
        start = time.perf_counter()
        objective = TrainingObjective(model, loss_fn, train_data, weight_decay=weight_decay, batch_size=batch_size,
                                      collate_fn=collate_fn, seed=seed, compute_dtype=compute_dtype,
                                      process_group=group, curvature=curvature)
    group.agree(problem_fingerprint(objective, positions, solver=solver.name, options=solver.options, damping=damping,
                                    curvature=curvature, steps=steps, step_options=step_options, removal=removal))
    if not group.is_writer:
        progress = False  # one set of bars, on rank 0
    diagnostics: dict[str, Any] = {
        "solver": solver.name,
        "curvature": curvature,
        "request": request.kind,
        "request_size": len(request),
        "request_indices": positions,
        "request_sha256": _request_digests(request, index, positions),
        "train_data_sha256": index.data_digest,
        "num_train": objective.n,
        "num_parameters": objective.num_parameters,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "seed": seed,
    }
    with objective.evaluation():
        validation.preflight(objective, request.examples if request.kind == "instance_removal" else request.old)
        before = safety_rails.measure_before(objective, request, positions, rails, seed) if rails else None
        b = request.right_hand_side(objective)
        diagnostics["rhs_norm"] = float(b.norm())
        if float(b.norm()) == 0.0:
            x = torch.zeros_like(b)
            diagnostics.update(damping=0.0 if damping == "auto" else float(damping), stop_reason="zero_rhs",
                               residual_history=[], residual_estimate=0.0)
        else:
            solver.prepare(objective, progress=progress)
            automatic = damping == "auto" and solver.follows_damping_rule
            spectrum = None
            if automatic or solver.needs_spectrum():
                spectrum = solver.spectrum(objective, spectrum_iterations, spectrum_sample_size)
            if damping != "auto":
                lam = float(damping)
            else:
                lam = automatic_damping(curvature, spectrum, objective.weight_decay) if automatic else None
            validation.check_curvature(spectrum, objective.weight_decay, lam, solver)
            diagnostics["damping"] = lam
            diagnostics["damping_rule"] = "auto" if damping == "auto" else "given"
            if spectrum is not None:
                diagnostics["spectrum"] = {"smallest": spectrum.smallest, "largest": spectrum.largest,
                                           "exact": spectrum.exact}
            extra = dict(steps=steps, options=step_options, spectrum=spectrum, progress=progress)
            if removal is not None:  # eraserlib.removal: its own solves, on the retained data
                x, more = match_heldout(objective, request, positions, solver, lam, heldout=heldout, **extra)
                diagnostics.update(more)
            else:
                result = solver.solve(objective, b, lam, progress=progress, spectrum=spectrum)
                x = result.solution
                diagnostics.update(result.diagnostics())
                validation.warn_on_solver_result(result, solver)
                if steps > 1:  # eraserlib.steps: re-linearised steps on the corrected objective
                    x, more = relinearised_steps(objective, request, positions, solver, lam, x, b, **extra)
                    diagnostics.update(more)
        if not torch.isfinite(x).all():
            raise EraserError(f"solver {solver.name!r} returned a non-finite update; raise the damping.")
        if rails:
            diagnostics["safety"] = safety_rails.check(objective, request, before, x, rails,
                                                       removal_mode=removal is not None)
    delta = {name: piece.detach().to(torch.float32).clone()
             for name, piece in zip(objective.names, unflatten(x.float(), objective.params))}
    parameters_before = {name: p.detach().clone() for name, p in zip(objective.names, objective.params)}
    counts = objective.counts()
    work = group.all_reduce(torch.tensor([counts["hvp_count"], counts["hvp_examples"], counts["gradient_count"],
                                          counts["gauss_newton_count"], counts["forward_count"]],
                                         dtype=torch.float64))  # summed over the ranks
    diagnostics.update(
        hvp_count=int(work[0]),
        hvp_examples=int(work[1]),
        gradient_count=int(work[2]),
        gauss_newton_count=int(work[3]),
        forward_count=int(work[4]),
        world_size=group.world_size,
        **objective.curvature_info(),
        delta_norm=float(x.norm()),
        wall_time_s=time.perf_counter() - start,
    )
    return EraseResult(delta=delta, diagnostics=diagnostics, parameters_before=parameters_before)


def apply_delta(model: nn.Module, delta: dict[str, torch.Tensor], scale: float = 1.0, *,
                upcast: bool = False) -> nn.Module:
    """Add ``scale · delta`` to the model's parameters in place.

    The addition happens in each parameter's dtype. In bfloat16 (8 significant bits) most
    entries of a small update round away; this refuses when the update actually added would
    differ from ``delta`` by more than :data:`eraserlib.precision.MAX_ROUNDING_ERROR` of its norm,
    and says how many entries each parameter would lose. ``upcast=True`` converts those
    parameters to float32 first (peft's LoRA layers accept a float32 adapter on a bf16 base,
    and ``peft.PeftModel.from_pretrained`` keeps adapters in float32 by default).

    Args:
        model: The model ``erase`` was computed for.
        delta: Parameter name → change (``EraseResult.delta``).
        scale: Multiplier (e.g. -1 to undo).
        upcast: Convert parameters whose dtype would round the update away to float32.

    Returns:
        The same model.

    Raises:
        KeyError: if a name in ``delta`` is not a parameter of the model.
        ValueError: if a shape differs or the delta is non-finite.
        PrecisionError: if the parameters' precision would round the update away (nothing is changed).
    """
    if isinstance(delta, EraseResult):
        raise InvalidArgumentError("apply_delta takes the result's delta: apply_delta(model, result.delta).")
    parameters = dict(model.named_parameters())
    for name, change in delta.items():
        if name not in parameters:
            raise KeyError(f"delta names parameter {name!r}, which the model does not have.")
        if parameters[name].shape != change.shape:
            raise ValueError(f"delta for {name!r} has shape {tuple(change.shape)}, the parameter "
                             f"{tuple(parameters[name].shape)}.")
        if not torch.isfinite(change).all():
            raise ValueError(f"delta for {name!r} contains NaN or Inf; refusing to apply it.")
    losses = [rounding_loss(name, parameters[name], scale * change) for name, change in delta.items()]
    lossy = [loss for loss in losses if loss.relative_error > MAX_ROUNDING_ERROR]
    if lossy and total_relative_error(losses) > MAX_ROUNDING_ERROR:
        if not upcast:
            share = sum(loss.rounded_away for loss in losses) / len(losses)
            raise PrecisionError(
                f"Adding the update in the parameters' own precision would lose {total_relative_error(losses):.0%} "
                f"of it (in norm; {share:.0%} of the entries on average are rounded away entirely): "
                f"{describe_losses(lossy[:3])}{' ...' if len(lossy) > 3 else ''}. Nothing was changed. Keep the "
                "adapter in float32 (peft does by default), or pass apply_delta(..., upcast=True) to convert these "
                "parameters to float32 first.")
        with torch.no_grad():
            for loss in lossy:
                parameters[loss.name].data = parameters[loss.name].data.to(torch.float32)
    with torch.no_grad():
        for name, change in delta.items():
            target = parameters[name]
            target.add_(change.to(device=target.device, dtype=target.dtype), alpha=scale)
    return model


__all__ = ["EraseResult", "erase", "apply_delta", "trainable_parameters"]
