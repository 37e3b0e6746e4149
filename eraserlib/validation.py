"""Checks that make :func:`eraserlib.erase` refuse bad input before any work, and say when a solve went wrong.

Every check raises an :class:`~eraserlib.EraserError` subclass whose message names the
argument, the value, and the fix — a wrong argument must never end in a silent wrong answer:

* :func:`check_erase_arguments`: types and ranges of erase's arguments (``batch_size=2.5`` is an
  error, not 2);
* :func:`check_option_values`: a solver option of the wrong type (``max_steps=2.5``);
* :func:`check_parameters_finite`: a NaN or Inf in a trainable parameter, by name;
* :func:`preflight`: one forward and backward pass of ``loss_fn`` on a few examples — a scalar,
  finite, attached to the autograd graph, depending on the trainable parameters;
* :func:`probe_double_backward`: one Hessian-vector product on one example (the dry run's check
  that the model is twice differentiable);
* :func:`check_curvature`: a spectrum estimate that proves H + λI indefinite (an error, or a
  warning for the stochastic solvers);
* :func:`warn_on_solver_result`: a :class:`~eraserlib.errors.NotConvergedWarning` when an
  iterative solver stopped above its tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.errors import (
    IndefiniteSystemWarning,
    InvalidArgumentError,
    LossFunctionError,
    NegativeCurvatureError,
    NonFiniteError,
    NotConvergedWarning,
)
from eraserlib.hessian import hessian_vector_product
from eraserlib.objective import TrainingObjective
from eraserlib.solvers.base import InvalidOptionsError, SolverOptions, SolverResult, Spectrum


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(condition: bool, message: str, value: Any) -> None:
    """Raise :class:`~eraserlib.solvers.InvalidOptionsError` ``"{message}, got {value!r}."`` unless ``condition``."""
    if not condition:
        raise InvalidOptionsError(f"{message}, got {value!r}.")


#: Annotation names :func:`check_option_values` checks, and what each accepts.
_OPTION_TYPES = {"int": _is_integer, "float": lambda v: _is_real(v) and math.isfinite(v),
                 "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str), "None": lambda v: v is None}


def check_option_values(options: SolverOptions, solver: str) -> None:
    """Each field of a solver's options has the type its annotation names (``int``, ``float | None``, ...).

    Fields annotated with other types (a tensor) are not checked here.

    Raises:
        InvalidOptionsError: naming the field, its value and the type it needs.
    """
    for f in dataclasses.fields(options):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not all(k in _OPTION_TYPES for k in kinds):
            continue
        value = getattr(options, f.name)
        if not any(_OPTION_TYPES[k](value) for k in kinds):
            raise InvalidOptionsError(
                f"solver {solver!r}: option {f.name} must be {' or '.join(kinds)} (a finite number where float), "
                f"got {value!r} ({type(value).__name__}). {f.name}: {f.metadata.get('help', '')}.")


def _argument(name: str, value: Any, wanted: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__}).")


def check_erase_arguments(*, model: Any, loss_fn: Any, weight_decay: Any, batch_size: Any, seed: Any,
                          compute_dtype: Any, spectrum_iterations: Any, spectrum_sample_size: Any, progress: Any,
                          collate_fn: Any) -> None:
    """Types and ranges of :func:`eraserlib.erase`'s arguments, before any work.

    Raises:
        InvalidArgumentError: the first argument that is wrong, with what it must be.
    """
    if not isinstance(model, nn.Module):
        raise _argument("model", model, "a torch.nn.Module (e.g. the PeftModel of your adapter)")
    if not callable(loss_fn):
        raise _argument("loss_fn", loss_fn, "a function loss_fn(model, batch) -> scalar tensor")
    if collate_fn is not None and not callable(collate_fn):
        raise _argument("collate_fn", collate_fn, "None or a function of a list of examples")
    if not (_is_real(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise _argument("weight_decay", weight_decay,
                        "a finite number ≥ 0 (the L2 coefficient of the training loss; 0 after AdamW)")
    if not (_is_integer(batch_size) and batch_size >= 1):
        raise _argument("batch_size", batch_size, "a positive integer (examples per forward pass)")
    if not (_is_integer(seed) and 0 <= seed < 2**63):
        raise _argument("seed", seed, "an integer in [0, 2⁶³)")
    if compute_dtype is not None and not (isinstance(compute_dtype, torch.dtype) and compute_dtype.is_floating_point):
        raise _argument("compute_dtype", compute_dtype, "None or a floating torch.dtype (e.g. torch.float32)")
    if not (_is_integer(spectrum_iterations) and spectrum_iterations >= 1):
        raise _argument("spectrum_iterations", spectrum_iterations, "a positive integer")
    if spectrum_sample_size is not None and not (_is_integer(spectrum_sample_size) and spectrum_sample_size >= 1):
        raise _argument("spectrum_sample_size", spectrum_sample_size, "None or a positive integer")
    if progress is not None and not isinstance(progress, bool):
        raise _argument("progress", progress, "None (bars on a terminal only), True or False")


def _non_finite(model: nn.Module, trainable: bool) -> list[tuple[str, int, int]]:
    """(name, non-finite entries, entries) of each floating parameter (trainable or frozen ones) with NaN/Inf."""
    found = []
    for name, p in model.named_parameters():
        if p.requires_grad == trainable and p.is_floating_point():
            bad = int((~torch.isfinite(p.detach())).sum())
            if bad:
                found.append((name, bad, p.numel()))
    return found


def check_parameters_finite(model: nn.Module) -> None:
    """Every trainable parameter is finite.

    Raises:
        NonFiniteError: naming the first parameters with NaN or Inf entries, and how many.
    """
    found = _non_finite(model, trainable=True)
    if found:
        listed = "; ".join(f"{name}: {bad} of {size} entries" for name, bad, size in found[:3])
        raise NonFiniteError(
            f"{len(found)} trainable parameter(s) contain NaN or Inf ({listed}): the adapter is corrupt or its "
            "training diverged. Erase needs the adapter as trained; reload it or retrain it.")


def preflight(objective: TrainingObjective, examples: Sequence[Any]) -> float:
    """One forward and backward pass of ``loss_fn`` on the first ``batch_size`` of ``examples``.

    Call inside ``objective.evaluation()``. Catches, with a message naming the cause, what would
    otherwise surface as a raw autograd error deep inside a solver.

    Returns:
        The loss value.

    Raises:
        LossFunctionError: not a scalar tensor; no autograd graph (``torch.no_grad()``,
            ``.detach()``, ``.item()``); independent of every trainable parameter.
        NonFiniteError: the loss is NaN or Inf (naming the frozen parameters that are not finite, if any).
    """
    batch = objective.collate_fn([examples[i] for i in range(min(len(examples), objective.batch_size))])
    loss = objective.loss_fn(objective.model, batch)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise LossFunctionError(
            "loss_fn(model, batch) must return a scalar tensor: the mean per-example loss of the batch (see "
            f"eraserlib.losses), got {type(loss).__name__} with shape {tuple(getattr(loss, 'shape', ()))}. For "
            "per-example losses, return their .mean().")
    if not loss.requires_grad:
        raise LossFunctionError(
            "loss_fn returned a loss without an autograd graph (requires_grad=False): it was computed under "
            "torch.no_grad() or torch.inference_mode(), detached (.detach(), .item(), .numpy()), or does not use "
            "the model. erase differentiates it twice; return the loss as training does.")
    if not torch.isfinite(loss):
        bad = _non_finite(objective.model, trainable=False)
        where = (f" The model's frozen parameters contain NaN/Inf: {', '.join(name for name, _, _ in bad[:3])}."
                 if bad else " The parameters are finite: check the examples (e.g. an example with no predicted token).")
        raise NonFiniteError(f"loss_fn returned {float(loss.detach())} on the request's first examples.{where}")
    grads = torch.autograd.grad(loss, objective.params, allow_unused=True)
    if all(g is None for g in grads):
        raise LossFunctionError(
            "loss_fn's value does not depend on any trainable parameter (requires_grad=True), so there is nothing "
            "erase can change: does loss_fn call the model it is given (the PeftModel, not the base model)?")
    return float(loss.detach())


def probe_double_backward(objective: TrainingObjective, example: Any) -> None:
    """One Hessian-vector product on one example: the model is twice differentiable (call inside ``evaluation()``).

    Raises:
        DoubleBackwardUnsupportedError: naming the fix (eager attention).
    """
    vector = torch.ones(objective.num_parameters, dtype=objective.dtype, device=objective.device)
    hessian_vector_product(objective.loss(objective.collate_fn([example])), objective.params, vector)


#: Solvers that run on an indefinite system without noticing (they get a warning; the others an error).
STOCHASTIC_SOLVERS = ("llmeraser", "lissa")


def check_curvature(spectrum: Spectrum | None, weight_decay: float, damping: float | None, solver: Any) -> None:
    """Refuse (or, for a stochastic solver, warn about) a solve whose spectrum estimate proves H + λI indefinite.

    Ritz values lie inside the spectrum, so λ_min(Ritz) + wd + λ < 0 is proof, not a guess: the
    quadratic has no minimum, and a stochastic solver returns after ``max_steps`` with an answer
    that means nothing (at damping 0 it did, without a word). CG and the dense solve raise;
    llmeraser and LiSSA give an :class:`~eraserlib.errors.IndefiniteSystemWarning` and run (an
    experiment may study exactly that regime).

    Raises:
        NegativeCurvatureError: naming the estimate and the damping that would lift it.
    """
    if spectrum is None or damping is None or getattr(solver.options, "allow_indefinite", False):
        return
    lowest = spectrum.smallest + weight_decay + damping
    if lowest >= 0:
        return
    message = (f"H + λI has negative curvature: the data Hessian's smallest eigenvalue is at most "
               f"{spectrum.smallest:.3g} (a Ritz value), below −(wd + λ) = {-(weight_decay + damping):.3g}, so the "
               f"quadratic has no minimum and {solver.name!r} cannot find one. Raise `damping` above "
               f"{-(spectrum.smallest + weight_decay):.3g} (damping='auto' does), or use curvature='gauss_newton'.")
    if solver.name in STOCHASTIC_SOLVERS:
        warnings.warn(IndefiniteSystemWarning(message + " Its answer is not an update."), stacklevel=3)
        return
    raise NegativeCurvatureError(message)


def warn_on_solver_result(result: SolverResult, solver: Any) -> None:
    """:class:`NotConvergedWarning` when an iterative solver stopped with its estimate above its tolerance.

    A solver asked for a fixed budget (``tolerance=0``) and one with no stopping rule
    (``converged is None``: LiSSA, DataInf) give none.
    """
    tolerance = getattr(solver.options, "tolerance", None)
    if result.converged is not False or not tolerance:
        return
    warnings.warn(NotConvergedWarning(
        f"{solver.name} stopped at {result.stop_reason} after {result.steps} steps with its estimated relative "
        f"error {result.residual_estimate:.3g} above its tolerance {tolerance:g}: the update is not the solution "
        "it was asked for. Raise the step budget (options max_steps / max_iterations), raise `damping`, or check "
        "that H + λI is positive definite; diagnostics['residual_history'] shows the way it went."), stacklevel=3)
