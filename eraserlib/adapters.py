"""Adapters on disk: load a peft adapter, erase, save the result to a *new* directory with a manifest.

The source adapter is never written to. The output directory is checked before the erase
(:mod:`eraserlib.outputs`); the erased adapter is written into a temporary sibling directory
and moved into place only once complete, so a failure leaves nothing half-written. Its
``eraser_manifest.json`` records what was done: the request (kind, size, the positions of its
examples in the training data and the SHA-256 of each, :func:`eraserlib.matching.example_digest`),
the solver and its diagnostics (the safety rails' report among them), SHA-256 of the source
adapter's files, of the output's weight files and of the training data, and the library version.

What the manifest proves, and what it does not: it ties an output adapter (its files' hashes) to
a source adapter, a training set and the examples the request named, and records how far the
solver got and what the rails measured. It does not prove that the erased model behaves as if
retrained without those examples: the update is a one-step estimate; the rails' losses are the
evidence of how far it moved them.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eraserlib.distributed import resolve_group
from eraserlib.errors import AdapterError
from eraserlib.influence import EraseResult, apply_delta, erase
from eraserlib.matching import ExampleIndex
from eraserlib.objective import trainable_parameters
from eraserlib.outputs import check_output_dir, expand, make_staging, publish
from eraserlib.storage import dumps

MANIFEST_NAME = "eraser_manifest.json"
#: The weight files peft writes (the first one found is loaded).
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
#: save_erased_adapter accepts the model when ‖θ − (θ̂ + Δ)‖ ≤ this share of ‖Δ‖ (what rounding to the
#: parameters' dtype may leave; eraserlib.precision refuses more than 1% at apply_delta).
APPLIED_TOLERANCE = 0.02


def check_adapter_dir(adapter_dir: str | os.PathLike) -> Path:
    """The adapter directory is readable by peft: a config that parses, a weight file that is complete.

    Raises:
        AdapterError: naming the missing or corrupt file.
    """
    directory = expand(adapter_dir)
    if not directory.is_dir():
        raise AdapterError(f"adapter directory {directory} does not exist (or is not a directory).")
    config = directory / "adapter_config.json"
    if not config.is_file():
        raise AdapterError(f"{directory} is not a peft adapter directory (no adapter_config.json in it).")
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as error:
        raise AdapterError(f"{config} is not valid JSON ({error}): the adapter's config is corrupt.") from None
    weights = [directory / name for name in WEIGHT_FILES if (directory / name).is_file()]
    if not weights:
        raise AdapterError(f"{directory} has no adapter weights: expected {WEIGHT_FILES[0]} (or {WEIGHT_FILES[1]}) "
                           "next to adapter_config.json. Was the adapter saved with save_pretrained?")
    if weights[0].suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights[0]), framework="pt") as handle:
                for key in handle.keys():  # reads every tensor: a truncated file fails here, by name
                    handle.get_tensor(key)
        except Exception as error:  # SafetensorError (not importable by name across versions), OSError
            raise AdapterError(f"{weights[0]} is not a valid safetensors file (truncated or corrupt: {error}). "
                               "Restore it from where the adapter was saved.") from None
    return directory


def load_adapter(base_model: nn.Module, adapter_dir: str | os.PathLike, *, trainable: bool = True) -> nn.Module:
    """Wrap ``base_model`` with the peft adapter saved in ``adapter_dir``.

    peft injects the adapter's layers into ``base_model`` itself (the returned model shares its
    modules); :func:`erase_adapter` undoes that when it is done.

    Args:
        base_model: The base model the adapter was trained on (e.g. ``AutoModelForCausalLM.from_pretrained(
            local_path, attn_implementation="eager")``).
        adapter_dir: A directory written by peft's ``save_pretrained`` (``~`` is expanded).
        trainable: Mark the adapter's parameters ``requires_grad=True`` (erase changes exactly those).

    Returns:
        The ``PeftModel``.

    Raises:
        AdapterError: a missing or corrupt adapter file, a base model that already carries an
            adapter, or an adapter that does not fit the base.
    """
    from peft import PeftModel

    directory = check_adapter_dir(adapter_dir)
    if not isinstance(base_model, nn.Module):
        raise AdapterError(f"base_model must be a torch module (the loaded base model), got {type(base_model).__name__}.")
    if isinstance(base_model, PeftModel) or hasattr(base_model, "peft_config"):
        raise AdapterError("base_model already carries a peft adapter: pass the plain base model (peft would "
                           "stack the adapter on it), e.g. peft_model.unload() or a fresh from_pretrained.")
    flags = {name: p.requires_grad for name, p in base_model.named_parameters()}
    try:
        return PeftModel.from_pretrained(base_model, str(directory), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as error:
        _remove_injected_layers(base_model, flags)  # peft injected the layers before the weights failed to load
        raise AdapterError(f"the adapter in {directory} does not fit this base model ({type(error).__name__}: "
                           f"{str(error)[:400]}). Pass the base model it was trained on.") from None


def _remove_injected_layers(model: nn.Module, flags: dict[str, bool]) -> None:
    """Put back the base layers peft wrapped, and the parameters' ``requires_grad`` flags."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent_name, _, child = name.rpartition(".")
            try:
                parent = model.get_submodule(parent_name) if parent_name else model
            except AttributeError:  # inside a layer already put back
                continue
            if getattr(parent, child, None) is module:
                setattr(parent, child, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
    for name, p in model.named_parameters():
        p.requires_grad_(flags.get(name, p.requires_grad))


def clone_adapter_model(model: nn.Module) -> nn.Module:
    """A deep copy of a LoRA model whose frozen weights are *shared* with the original.

    The frozen parameters are put in ``deepcopy``'s memo, so the copy refers to the same tensors:
    k copies cost one base plus k adapters (what keeps SISA affordable at 7B). The base must
    stay frozen (no method here trains it).
    """
    memo = {id(p): p for p in model.parameters() if not p.requires_grad}
    return copy.deepcopy(model, memo)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's values: ``{name: detached clone}`` of every trainable parameter."""
    names, params = trainable_parameters(model)
    return {name: p.detach().clone() for name, p in zip(names, params)}


def adapter_change(after: nn.Module, before: nn.Module) -> dict[str, torch.Tensor]:
    """``after − before`` for every trainable parameter (float32, on the CPU)."""
    first, second = adapter_state(after), adapter_state(before)
    return {name: (first[name] - second[name]).float().cpu() for name in first}


def directory_digest(directory: str | os.PathLike, exclude: Sequence[str] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` (relative path → hex digest), except the names in ``exclude``."""
    directory = Path(directory)
    digests = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = str(path.relative_to(directory))
        if name not in exclude:
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def data_digest(examples: Sequence[Any]) -> str:
    """A SHA-256 of the training data that changes if any example changes (order included).

    The same digest :func:`eraserlib.erase` records as ``diagnostics["train_data_sha256"]``.
    """
    return ExampleIndex(examples).data_digest


def check_delta_applied(model: nn.Module, result: EraseResult) -> None:
    """The model's trainable parameters are θ̂ + Δ of ``result`` (up to rounding to their dtype).

    Raises:
        AdapterError: the weights are still θ̂ (``apply_delta`` was not called), or are neither θ̂ nor θ̂ + Δ.
    """
    if not result.parameters_before:
        raise AdapterError("the EraseResult does not record the parameters it was computed at "
                           "(parameters_before): save the result of eraserlib.erase.")
    parameters = dict(model.named_parameters())
    missing = sorted(set(result.delta) - set(parameters))
    if missing:
        raise AdapterError(f"the result is for another model: it changes {missing[0]!r}, which this model lacks.")
    error = moved = size = 0.0
    for name, change in result.delta.items():
        value = parameters[name].detach().double().cpu()
        start = result.parameters_before[name].double().cpu()
        error += float((value - start - change.double()).norm()) ** 2
        moved += float((value - start).norm()) ** 2
        size += float(change.double().norm()) ** 2
    error, moved, size = error ** 0.5, moved ** 0.5, size ** 0.5
    if error <= APPLIED_TOLERANCE * size:
        return
    if moved <= APPLIED_TOLERANCE * size:
        raise AdapterError(
            "Refusing to save: the model's weights do not carry the update (they are the weights erase started "
            "from), so the saved adapter would be the unchanged one under a manifest of an erase. Call "
            "eraserlib.apply_delta(model, result.delta) first, or use erase_adapter, which does both.")
    raise AdapterError(
        f"Refusing to save: the model's weights are neither the ones erase started from nor those plus the update "
        f"(‖θ − (θ̂ + Δ)‖ = {error:.3g}, ‖Δ‖ = {size:.3g}): the update was applied twice, scaled, or to another model.")


def _request_record(result: EraseResult) -> dict[str, Any]:
    record = {"kind": result.diagnostics.get("request"), "size": result.diagnostics.get("request_size"),
              "indices": result.diagnostics.get("request_indices")}
    record.update(result.diagnostics.get("request_sha256", {}))
    return record


def save_erased_adapter(
    model: nn.Module,
    output_dir: str | os.PathLike,
    result: EraseResult,
    *,
    source_dir: str | os.PathLike | None = None,
    train_data: Sequence[Any] | None = None,
    process_group: Any = None,
) -> Path:
    """Save the (already erased) peft model's adapter to a new directory, with a manifest.

    Args:
        model: The ``PeftModel`` after :func:`eraserlib.apply_delta` (checked: the weights must be θ̂ + Δ).
        output_dir: A directory that does not exist yet, or an empty one (written into, not
            replaced); ``~`` is expanded.
        result: The :class:`EraseResult` that was applied.
        source_dir: The adapter it came from (hashed into the manifest; never written to).
        train_data: The training data, hashed into the manifest when the result does not
            already carry its digest (results of :func:`eraserlib.erase` do).
        process_group: As in :func:`eraserlib.erase`: on W ranks rank 0 writes, and every rank
            returns once the adapter is in place (or raises if the write failed).

    Returns:
        The output directory.

    Raises:
        AdapterError: the output is the source (or inside it), not empty, or not writable; the
            model does not carry the update.
    """
    from eraserlib import __version__

    group = resolve_group(process_group)
    if group.is_distributed:  # one writer; the others wait for it (and fail with it)
        group.once(lambda: save_erased_adapter(model, output_dir, result, source_dir=source_dir,
                                               train_data=train_data, process_group=False))
        return expand(output_dir)

    source = expand(source_dir) if source_dir is not None else None
    target = check_output_dir(output_dir, source)
    check_delta_applied(model, result)
    data_sha = result.diagnostics.get("train_data_sha256")
    if data_sha is None and train_data is not None:
        data_sha = data_digest(train_data)
    staging = make_staging(target)
    try:
        model.save_pretrained(str(staging))
        manifest = {
            "eraserlib_version": __version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "request": _request_record(result),
            "solver": result.diagnostics.get("solver"),
            "safety": result.diagnostics.get("safety"),
            "diagnostics": result.diagnostics,
            "source_adapter": None if source is None else {"path": str(source.resolve()),
                                                           "sha256": directory_digest(source)},
            "output_sha256": directory_digest(staging),
            "train_data_sha256": data_sha,
            "num_train": result.diagnostics.get("num_train", None if train_data is None else len(train_data)),
        }
        (staging / MANIFEST_NAME).write_text(dumps(manifest, indent=2) + "\n")
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def erase_adapter(
    base_model: nn.Module,
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    loss_fn,
    train_data: Sequence[Any],
    request,
    **erase_options: Any,
) -> EraseResult:
    """Load an adapter, erase ``request`` from it, and save the result to ``output_dir``.

    The practitioner's one call: ``adapter_dir`` is only read; ``output_dir`` must be new (or an
    empty directory). Everything that can be checked is checked *before* the (possibly long)
    erase: the output path (creatable, writable, not the source), the adapter's files, the
    request's examples against ``train_data``. ``base_model`` is left as it was given: peft
    injects the adapter's layers into it, and they are removed again (peft's ``unload()``) when
    the adapter is saved or an error stops the erase.

    Args:
        base_model: The base model the adapter was trained on (twice-differentiable attention).
        adapter_dir: The source peft adapter.
        output_dir: Where the erased adapter goes (must not exist, or be empty).
        loss_fn: ``loss_fn(model, batch) -> scalar`` as in training.
        train_data: The adapter's training data (a sequence, or a ``datasets.Dataset``).
        request: An :class:`~eraserlib.InstanceRemoval`, :class:`~eraserlib.QueryModification` or
            :class:`~eraserlib.ResponseCorrection`.
        **erase_options: Passed to :func:`eraserlib.erase` (solver, damping, weight_decay, ...).

    Returns:
        The :class:`EraseResult` (also recorded in the manifest).
    """
    group = resolve_group(erase_options.get("process_group"))
    group.once(lambda: check_output_dir(output_dir, adapter_dir))  # rank 0 writes, so rank 0 checks
    with group.together():
        check_adapter_dir(adapter_dir)
        flags = {name: p.requires_grad for name, p in base_model.named_parameters()} \
            if isinstance(base_model, nn.Module) else {}
        model = load_adapter(base_model, adapter_dir, trainable=True)
    try:
        result = erase(model, loss_fn, train_data, request, **erase_options)
        apply_delta(model, result.delta)
        save_erased_adapter(model, output_dir, result, source_dir=adapter_dir, train_data=train_data,
                            process_group=group)
    finally:
        model.unload()  # the caller's base model without the adapter's layers, as it was given
        for name, p in base_model.named_parameters():
            p.requires_grad_(flags.get(name, p.requires_grad))
    return result


__all__ = ["MANIFEST_NAME", "adapter_change", "adapter_state", "check_adapter_dir", "clone_adapter_model",
           "data_digest", "directory_digest", "erase_adapter", "load_adapter", "save_erased_adapter"]
