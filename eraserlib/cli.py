"""The command line: erase training rows from a peft adapter, with the data in JSONL, CSV or Parquet files.

    python -m eraserlib erase   --base DIR --adapter DIR --train FILE --forget FILE --out DIR [options]
    python -m eraserlib correct --base DIR --adapter DIR --train FILE --old FILE --new FILE --out DIR
                                [--kind response|query] [options]

Files are read with Hugging Face ``datasets`` (``pip install 'eraserlib[cli]'``) by their
extension (``.jsonl``/``.json``, ``.csv``, ``.parquet``), locally, offline. Rows have a ``text``
column, or ``prompt`` and ``completion`` (only the completion is predicted); they are tokenised
with the base directory's tokenizer as :mod:`eraserlib.text` describes, and the loss is
:data:`eraserlib.causal_lm_loss` (the per-example mean). A row of ``--forget`` (or ``--old``)
must be a row of ``--train`` (the same text), listed as many times as it occurs there.

``--dry-run`` checks everything without erasing, in seconds: the paths (output creatable and
writable), the files, the request against the training file, loading the base model, the
tokenizer and the adapter, and one Hessian-vector product (double backward) on one example.

On several processes: ``torchrun --standalone --nproc_per_node N -m eraserlib erase ...`` runs the
same erase data-parallel (:mod:`eraserlib.distributed`: every rank reads the same files and sums
over its share of the examples); rank 0 writes the adapter and prints the summary, and a failure
on any rank is every rank's exit code.

Exit codes, for shell scripts (stdout carries one JSON line with the outcome; stderr the message):

* 0 — done (or the dry run found nothing wrong);
* 1 — an internal error (a bug: please report the traceback);
* 2 — bad input or usage: arguments, unreadable or malformed data files, a request row that is
  not in the training file, solver options;
* 3 — the erase was refused or its result failed a check: negative curvature, divergence,
  non-finite values, precision, a solver that did not converge, a safety rail that fired.
  Nothing is written (``--keep-anyway`` writes the adapter despite the warnings, which its manifest records);
* 4 — the model, the adapter or the output: a missing or corrupt adapter file, a base directory
  that does not load, a model without double backward, an output directory that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_REFUSED, EXIT_ENVIRONMENT = 0, 1, 2, 3, 4
#: File extension → the ``datasets`` builder that reads it.
READERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class CommandError(Exception):
    """A failure with its exit code and a message for the user."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def exit_code(error: BaseException) -> int:
    """The documented exit code of an error (see the module docstring)."""
    from eraserlib import errors
    from eraserlib.solvers import InvalidOptionsError

    if isinstance(error, CommandError):
        return error.code
    if isinstance(error, (errors.AdapterError, errors.DoubleBackwardUnsupportedError,
                          errors.NoTrainableParametersError)):
        return EXIT_ENVIRONMENT
    if isinstance(error, (errors.NegativeCurvatureError, errors.SolverDivergedError, errors.NonFiniteError,
                          errors.ProblemTooLargeError, errors.PrecisionError)):
        return EXIT_REFUSED
    if isinstance(error, (errors.InvalidRequestError, errors.InvalidArgumentError, InvalidOptionsError,
                          errors.LossFunctionError, ValueError)):
        return EXIT_BAD_INPUT
    if isinstance(error, OSError):
        return EXIT_ENVIRONMENT
    return EXIT_INTERNAL


def _damping(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0 or 'auto', got {text!r}") from None


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE (e.g. max_steps=4096), got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m eraserlib`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m eraserlib", description="Erase training rows from a peft "
                                     "LoRA adapter (influence update), with a manifest of what was done.",
                                     epilog="Exit codes: 0 ok, 1 internal error, 2 bad input, 3 refused or failed "
                                            "a check (nothing written), 4 model/adapter/output problem.")
    commands = parser.add_subparsers(dest="command", required=True)
    erase = commands.add_parser("erase", help="remove rows (instance removal)")
    correct = commands.add_parser("correct", help="replace rows by corrected ones (response/query correction)")
    for command in (erase, correct):
        command.add_argument("--base", required=True, help="the base model's directory (save_pretrained, with its "
                                                           "tokenizer)")
        command.add_argument("--adapter", required=True, help="the peft adapter's directory (only read)")
        command.add_argument("--train", required=True, help="the adapter's training data (.jsonl/.csv/.parquet)")
        command.add_argument("--out", required=True, help="where the erased adapter goes (new or empty directory)")
    erase.add_argument("--forget", required=True, help="the rows to remove (rows of --train)")
    correct.add_argument("--old", required=True, help="the rows to replace (rows of --train)")
    correct.add_argument("--new", required=True, help="their replacements, row by row")
    correct.add_argument("--kind", choices=["response", "query"], default="response",
                         help="response correction (default) or query modification")
    for command in (erase, correct):
        command.add_argument("--solver", default="llmeraser", help="llmeraser (default), cg, lissa, exact, datainf")
        command.add_argument("--damping", type=_damping, default="auto", help="λ ≥ 0 or 'auto' (default)")
        command.add_argument("--curvature", choices=["hessian", "gauss_newton"], default="hessian",
                             help="hessian (default, the paper's) or gauss_newton (positive semi-definite: for an "
                                  "adapter whose Hessian is indefinite)")
        command.add_argument("--batch-size", type=int, default=16, help="examples per forward pass (default 16)")
        command.add_argument("--seed", type=int, default=0, help="seeds every random choice (default 0)")
        command.add_argument("--weight-decay", type=float, default=0.0,
                             help="L2 coefficient of the training loss (0 after AdamW; default 0)")
        command.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                             help="a solver option (repeatable), e.g. --option max_steps=4096")
        command.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda, cuda:1")
        command.add_argument("--dry-run", action="store_true", help="check everything, erase nothing")
        command.add_argument("--keep-anyway", action="store_true",
                             help="write the adapter even when a warning fired (exit 3 otherwise, nothing written)")
    return parser


def read_rows(path: str | os.PathLike, what: str, *, progress: bool | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL / CSV / Parquet file, read with ``datasets.load_dataset`` (cache in a temporary directory).

    Raises:
        CommandError: exit 2 for a missing, unknown, malformed or empty file.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        raise CommandError(EXIT_BAD_INPUT, f"the {what} file {path} does not exist.")
    builder = READERS.get(path.suffix.lower())
    if builder is None:
        raise CommandError(EXIT_BAD_INPUT, f"the {what} file {path} has an unknown extension {path.suffix!r}: use "
                                           f"one of {', '.join(READERS)}.")
    try:
        import datasets
    except ImportError:
        raise CommandError(EXIT_BAD_INPUT, "reading data files needs Hugging Face datasets: "
                                           "pip install 'eraserlib[cli]'.") from None
    if not progress:
        datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="eraserlib-read-") as cache:
        try:
            dataset = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache,
                                            keep_in_memory=True)
            rows = dataset.to_list()
        except Exception as error:  # datasets raises many kinds (DatasetGenerationError, ArrowInvalid, ...)
            cause = error.__cause__ or error
            raise CommandError(EXIT_BAD_INPUT, f"cannot read the {what} file {path} as {builder}: "
                                               f"{type(cause).__name__}: {str(cause)[:300]}") from None
    if not rows:
        raise CommandError(EXIT_BAD_INPUT, f"the {what} file {path} has no rows.")
    return rows


def keys_of(rows: list[dict[str, Any]], names: tuple[str, ...] | None, what: str) -> tuple[tuple[str, ...], list]:
    """Each row's key (its text, or prompt and completion) in the file's layout (found from the first row)."""
    from eraserlib.text import layout, row_key

    names = names or layout(list(rows[0]), f"the {what} file")
    return names, [row_key(row, names, f"row {i + 1} of the {what} file") for i, row in enumerate(rows)]


def match_rows(train_keys: list, request_keys: list, what: str) -> list[int]:
    """Positions in the training file of the request's rows, each occurrence named once.

    Raises:
        CommandError: exit 2 for a row not in the training file, or listed fewer or more times than it occurs.
    """
    places: dict[tuple, list[int]] = {}
    for i, key in enumerate(train_keys):
        places.setdefault(key, []).append(i)
    wanted: dict[tuple, int] = {}
    for key in request_keys:
        wanted[key] = wanted.get(key, 0) + 1
    positions = []
    for j, key in enumerate(request_keys):
        found = places.get(key, [])
        shown = " | ".join(key)[:120]
        if not found:
            raise CommandError(EXIT_BAD_INPUT, f"row {j + 1} of the {what} file is not a row of the training file "
                                               f"(no training row has the same text): {shown!r}.")
        if wanted[key] != len(found):
            raise CommandError(EXIT_BAD_INPUT, f"row {j + 1} of the {what} file occurs {len(found)} time(s) in the "
                                               f"training file but {wanted[key]} time(s) in the {what} file: list it "
                                               f"once per copy to change (all {len(found)} to change it everywhere): "
                                               f"{shown!r}.")
        positions.append(found[sum(1 for k in request_keys[:j] if k == key)])
    return positions


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (``python -m eraserlib`` exits with it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only: a name must not start a download
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2), already printed
        return int(stop.code or 0)
    start = time.perf_counter()
    rank, launched = 0, False
    try:
        from eraserlib.distributed import join_launcher

        rank, launched = join_launcher()
        from eraserlib.command import execute

        summary = execute(args)
    except BaseException as error:  # noqa: BLE001 - every failure becomes a documented exit code
        if isinstance(error, KeyboardInterrupt):
            raise
        code = exit_code(error)
        if code == EXIT_INTERNAL:
            import traceback

            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        if rank == 0:
            print(json.dumps({"status": "error", "exit_code": code, "error": type(error).__name__,
                              "message": str(error)}, ensure_ascii=False))
        return code
    finally:
        if launched:
            from eraserlib.distributed import leave_launcher

            leave_launcher()
    summary["seconds"] = round(time.perf_counter() - start, 3)
    if launched:
        summary["ranks"] = int(os.environ["WORLD_SIZE"])
    if rank == 0:  # every rank ran the same erase; one summary
        print(json.dumps(summary, ensure_ascii=False, default=str))
    return EXIT_OK
