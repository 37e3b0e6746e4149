"""Adapters on disk: load a peft adapter, erase, save the result to a *new* directory with a manifest.

The source adapter is never written to. The erased adapter is written into a temporary
sibling directory and renamed into place only once complete, so a failure leaves nothing
half-written. Its ``eraser_manifest.json`` records what was done: request kind and size,
solver and diagnostics, SHA-256 of the source adapter's files and of the training data,
and the library version.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eraserlib.distributed import resolve_group
from eraserlib.influence import EraseResult, apply_delta, erase
from eraserlib.errors import AdapterError
from eraserlib.matching import feed
from eraserlib.objective import trainable_parameters
from eraserlib.storage import dumps

MANIFEST_NAME = "eraser_manifest.json"


def load_adapter(base_model: nn.Module, adapter_dir: str | os.PathLike, *, trainable: bool = True) -> nn.Module:
    """Wrap ``base_model`` with the peft adapter saved in ``adapter_dir``.

    Args:
        base_model: The base model the adapter was trained on (e.g. ``AutoModelForCausalLM.from_pretrained(
            local_path, attn_implementation="eager")``).
        adapter_dir: A directory written by peft's ``save_pretrained``.
        trainable: Mark the adapter's parameters ``requires_grad=True`` (erase changes exactly those).

    Returns:
        The ``PeftModel``.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AdapterError(f"{adapter_dir} is not a peft adapter directory (no adapter_config.json in it).")
    return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=trainable)


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


def directory_digest(directory: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` (relative path → hex digest)."""
    directory = Path(directory)
    digests = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digests[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def data_digest(examples: Sequence[Any]) -> str:
    """A SHA-256 of the training data that changes if any example changes (order included)."""
    digest = hashlib.sha256()
    feed(digest, list(examples))
    return digest.hexdigest()


def _check_target(target: Path, source: Path | None) -> None:
    if source is not None:
        source = source.resolve()
        resolved = target.resolve()
        if resolved == source or source in resolved.parents:
            raise AdapterError(
                f"Refusing to write the erased adapter into the source adapter's directory ({source}): "
                "choose a new output directory; the source stays as it is."
            )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AdapterError(f"Refusing to overwrite {target}: it exists and is not an empty directory.")


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
        model: The ``PeftModel`` after :func:`eraserlib.apply_delta`.
        output_dir: A directory that does not exist yet, or an empty one.
        result: The :class:`EraseResult` that was applied.
        source_dir: The adapter it came from (hashed into the manifest; never written to).
        train_data: The training data (hashed into the manifest).
        process_group: As in :func:`eraserlib.erase`: on W ranks rank 0 writes, and every rank
            returns once the adapter is in place (or raises if the write failed).

    Returns:
        The output directory.

    Raises:
        AdapterError: if ``output_dir`` is the source (or inside it) or a non-empty directory.
    """
    from eraserlib import __version__

    group = resolve_group(process_group)
    if group.is_distributed:  # one writer; the others wait for it (and fail with it)
        group.once(lambda: save_erased_adapter(model, output_dir, result, source_dir=source_dir,
                                               train_data=train_data, process_group=False))
        return Path(output_dir)

    target = Path(output_dir)
    source = Path(source_dir) if source_dir is not None else None
    _check_target(target, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(str(staging))
        manifest = {
            "eraserlib_version": __version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "request": {"kind": result.diagnostics.get("request"), "size": result.diagnostics.get("request_size")},
            "solver": result.diagnostics.get("solver"),
            "diagnostics": result.diagnostics,
            "source_adapter": None if source is None else {"path": str(source.resolve()), "sha256": directory_digest(source)},
            "train_data_sha256": None if train_data is None else data_digest(train_data),
            "num_train": None if train_data is None else len(train_data),
        }
        (staging / MANIFEST_NAME).write_text(dumps(manifest, indent=2) + "\n")
        if target.exists():  # an empty directory: replace it
            target.rmdir()
        os.replace(staging, target)
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

    The practitioner's one call: ``adapter_dir`` is only read; ``output_dir`` must be new.
    The target is checked *before* the (possibly long) erase, so a bad path fails at once.
    Under ``torchrun`` every rank makes the same call: they share the erase, rank 0 checks the
    target and writes, and every rank returns once the adapter is written.

    Args:
        base_model: The base model the adapter was trained on (twice-differentiable attention).
        adapter_dir: The source peft adapter.
        output_dir: Where the erased adapter goes (must not exist, or be empty).
        loss_fn: ``loss_fn(model, batch) -> scalar`` as in training.
        train_data: The adapter's training data.
        request: An :class:`~eraserlib.InstanceRemoval`, :class:`~eraserlib.QueryModification` or
            :class:`~eraserlib.ResponseCorrection`.
        **erase_options: Passed to :func:`eraserlib.erase` (solver, damping, weight_decay, ...).

    Returns:
        The :class:`EraseResult` (also recorded in the manifest).
    """
    group = resolve_group(erase_options.get("process_group"))
    group.once(lambda: _check_target(Path(output_dir), Path(adapter_dir)))
    with group.together():
        model = load_adapter(base_model, adapter_dir, trainable=True)
    result = erase(model, loss_fn, train_data, request, **erase_options)
    apply_delta(model, result.delta)
    save_erased_adapter(model, output_dir, result, source_dir=adapter_dir, train_data=train_data, process_group=group)
    return result
