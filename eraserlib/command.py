"""What ``python -m eraserlib erase|correct`` does, step by step (the parsing and exit codes are in :mod:`eraserlib.cli`).

Every check that needs no erase comes first, cheapest first: the output path, the adapter's
files, the data files, the request against the training file, the tokenizer, the base model,
the adapter on it, the solver's options and arguments, one forward/backward pass and one
Hessian-vector product. ``--dry-run`` stops there.
"""

from __future__ import annotations

import sys
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

from eraserlib.cli import EXIT_ENVIRONMENT, EXIT_REFUSED, CommandError, keys_of, match_rows, read_rows


def _quiet_libraries(progress: bool) -> None:
    """Hugging Face's own progress bars and info logs off unless stderr is a terminal (they fill log files)."""
    if progress:
        return
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CommandError(2, f"--device {name!r} is not a device ({error}).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(EXIT_ENVIRONMENT, f"--device {name}: CUDA is not available on this machine.")
    return device


def _load_base(base_dir: Path, device: Any) -> tuple[Any, Any]:
    """The tokenizer and the base model (eager attention: twice differentiable), from a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (base_dir / "config.json").is_file():
        raise CommandError(EXIT_ENVIRONMENT, f"--base {base_dir} is not a model directory (no config.json): pass the "
                                             "directory the base model was saved to with save_pretrained.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    except Exception as error:  # OSError, ValueError, ... from transformers
        raise CommandError(EXIT_ENVIRONMENT, f"cannot load a tokenizer from {base_dir} ({type(error).__name__}: "
                                             f"{str(error)[:300]}): save the tokenizer with the base model.") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), attn_implementation="eager")
    except Exception as error:
        raise CommandError(EXIT_ENVIRONMENT, f"cannot load the base model from {base_dir} ({type(error).__name__}: "
                                             f"{str(error)[:300]}).") from None
    return tokenizer, model.to(device)


def _request(args: Namespace, train_keys: list, names: tuple[str, ...], examples: list, tokenizer: Any) -> Any:
    """The request over the tokenised training examples, from the request files' rows."""
    import eraserlib
    from eraserlib.text import tokenize

    if args.command == "erase":
        _, forget = keys_of(read_rows(args.forget, "forget"), names, "forget")
        return eraserlib.InstanceRemoval.from_indices(examples, match_rows(train_keys, forget, "forget"))
    _, old = keys_of(read_rows(args.old, "old"), names, "old")
    _, new = keys_of(read_rows(args.new, "new"), names, "new")
    if len(old) != len(new):
        raise CommandError(2, f"--old has {len(old)} rows and --new {len(new)}: new row i replaces old row i.")
    kind = eraserlib.ResponseCorrection if args.kind == "response" else eraserlib.QueryModification
    replacements = [tokenize(key, tokenizer, f"row {i + 1} of the new file") for i, key in enumerate(new)]
    return kind.from_indices(examples, match_rows(train_keys, old, "old"), replacements)


def _checks(args: Namespace, model: Any, examples: list, request: Any, collate: Any) -> None:
    """The erase's own checks, and one forward/backward pass and one HVP (the model is not changed)."""
    from eraserlib import validation
    from eraserlib.damping import check_damping
    from eraserlib.losses import causal_lm_loss
    from eraserlib.objective import TrainingObjective
    from eraserlib.solvers import get_solver

    solver = get_solver(args.solver, dict(args.option))
    validation.check_option_values(solver.options, solver.name)
    check_damping(args.damping)
    validation.check_erase_arguments(model=model, loss_fn=causal_lm_loss, weight_decay=args.weight_decay,
                                     batch_size=args.batch_size, seed=args.seed, compute_dtype=None,
                                     spectrum_iterations=20, spectrum_sample_size=None, progress=None,
                                     collate_fn=collate)
    validation.check_parameters_finite(model)
    objective = TrainingObjective(model, causal_lm_loss, examples, batch_size=args.batch_size, collate_fn=collate,
                                  seed=args.seed)
    first = request.examples if request.kind == "instance_removal" else request.old
    with objective.evaluation():
        validation.preflight(objective, first)
        validation.probe_double_backward(objective, first[0])


def _erase(args: Namespace, model: Any, examples: list, request: Any, collate: Any) -> tuple[Any, list[str]]:
    """The erase, with eraserlib's warnings collected (printed to stderr) instead of raised."""
    import eraserlib
    from eraserlib.errors import EraseWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EraseWarning)
        result = eraserlib.erase(model, eraserlib.causal_lm_loss, examples, request, solver=args.solver,
                                 options=dict(args.option), damping=args.damping, curvature=args.curvature,
                                 weight_decay=args.weight_decay, collate_fn=collate, batch_size=args.batch_size,
                                 seed=args.seed)
    said = []
    for warning in caught:
        if issubclass(warning.category, EraseWarning):
            said.append(f"{warning.category.__name__}: {warning.message}")
            print(f"warning: {said[-1]}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result, said


def execute(args: Namespace) -> dict[str, Any]:
    """Run one command; returns the JSON summary (raises :class:`CommandError` or an eraserlib error)."""
    from eraserlib.adapters import check_adapter_dir, load_adapter, save_erased_adapter
    from eraserlib.losses import CausalLMCollator
    from eraserlib.outputs import check_output_dir, expand
    from eraserlib.text import tokenize

    progress = sys.stderr.isatty()
    target = check_output_dir(args.out, args.adapter)
    check_adapter_dir(args.adapter)
    base_dir = expand(args.base)
    names, train_keys = keys_of(read_rows(args.train, "training", progress=progress), None, "training")
    device = _device(args.device)
    _quiet_libraries(progress)
    tokenizer, base = _load_base(base_dir, device)
    examples = [tokenize(key, tokenizer, f"row {i + 1} of the training file") for i, key in enumerate(train_keys)]
    request = _request(args, train_keys, names, examples, tokenizer)
    collate = CausalLMCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    model = load_adapter(base, args.adapter, trainable=True)
    summary: dict[str, Any] = {"command": args.command, "request": request.kind, "request_size": len(request),
                               "num_train": len(examples)}
    try:
        if args.dry_run:
            _checks(args, model, examples, request, collate)
            return {"status": "dry_run_ok", **summary, "output": str(target),
                    "checked": ["output directory", "adapter files", "data files", "request rows in the training "
                                "file", "tokenizer and base model", "adapter on the base", "solver options and "
                                "arguments", "loss and gradient", "one Hessian-vector product"]}
        import eraserlib

        result, said = _erase(args, model, examples, request, collate)
        summary.update(request_indices=result.diagnostics["request_indices"], warnings=said,
                       stop_reason=result.diagnostics.get("stop_reason"),
                       safety_fired=(result.diagnostics.get("safety") or {}).get("fired", []))
        if said and not args.keep_anyway:
            raise CommandError(EXIT_REFUSED, f"{len(said)} warning(s) above: the erased adapter was not written "
                                             f"(pass --keep-anyway to write it; its manifest records them).")
        result.diagnostics["warnings"] = said  # into the manifest (written only with --keep-anyway when not empty)
        eraserlib.apply_delta(model, result.delta)
        save_erased_adapter(model, target, result, source_dir=args.adapter)
    finally:
        model.unload()
    return {"status": "ok", **summary, "output": str(target)}
