"""The command line: ``python -m eraserbook run|build|list``.

Usage::

    python -m eraserbook run   [--profile default] [notebooks/x.ipynb ...] [-p name value ...]
    python -m eraserbook build [--profile default]
    python -m eraserbook list  [--profile default]

``run`` executes notebooks with papermill under a profile (``notebooks/profiles.yml``), skipping
those whose inputs have not changed (:mod:`eraserbook.jobs`); ``build`` runs every chapter and
builds the HTML book (:mod:`eraserbook.build`); ``list`` shows each chapter's state. ``--force``
reruns anyway, e.g. after new data arrived. Where each profile's pages and results go:
:mod:`eraserbook.layout`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eraserbook.build import build
from eraserbook.errors import RunnerError
from eraserbook.jobs import RUNNER_PARAMETERS, input_stamp, is_up_to_date, make_jobs
from eraserbook.layout import NOTEBOOKS_DIR, reading_order
from eraserbook.profiles import DEFAULT_PROFILE, PROFILES, parse_value
from eraserbook.schedule import run

DESCRIPTION = "Execute the book's notebooks with papermill under a named profile, then build the book."


def list_notebooks(root: Path, profile: str) -> None:
    """Prints each notebook, whether it is up to date under ``profile`` and its parameters."""
    for job in make_jobs(root, profile, reading_order(root), {}, explicit=False):
        state = "up to date" if is_up_to_date(job, input_stamp(job)) else "to run"
        shown = {k: v for k, v in job.parameters.items() if k not in RUNNER_PARAMETERS}
        print(f"{job.name}: {state}; {shown or 'notebook defaults'}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eraserbook", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="execute notebooks under a profile")
    run_parser.add_argument("notebooks", nargs="*", help="notebooks/<name>.ipynb (default: all)")
    run_parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="override a parameter (VALUE is read as YAML: 0.05, true, [1, 2], text)",
    )
    build_parser = commands.add_parser("build", help="run every notebook, then build the HTML book")
    list_parser = commands.add_parser("list", help="show each notebook's state and parameters")
    for sub in (run_parser, build_parser, list_parser):
        sub.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
        sub.add_argument("--root", type=Path, default=Path.cwd(), help="book root (default: .)")
    for sub in (run_parser, build_parser):
        sub.add_argument("--force", action="store_true", help="rerun even when up to date")
        sub.add_argument("--keep-going", action="store_true", help="continue after a failure")
        sub.add_argument("--threads", type=int, help="thread cap per kernel")
        sub.add_argument("--jobs", type=int, help="notebooks run at once (default: 2 with 2+ cores)")
        sub.add_argument("--cell-timeout", type=int, help="seconds one cell may take")
    return parser


def _notebook_name(root: Path, argument: str) -> str:
    path = Path(argument)
    name = path.stem if path.suffix == ".ipynb" else path.name
    if not (root / NOTEBOOKS_DIR / f"{name}.ipynb").is_file():
        raise RunnerError(f"{argument}: no such notebook in {root / NOTEBOOKS_DIR}")
    return name


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 a notebook or build failed, 2 usage)."""
    args = _parser().parse_args(argv)
    root = args.root.resolve()
    try:
        if args.command == "list":
            list_notebooks(root, args.profile)
            return 0
        options = dict(
            force=args.force, keep_going=args.keep_going, threads=args.threads,
            cell_timeout=args.cell_timeout, jobs=args.jobs,
        )
        if args.command == "build":
            return 0 if build(root, args.profile, **options) else 1
        names = [_notebook_name(root, a) for a in args.notebooks] or None
        overrides = {name: parse_value(value) for name, value in args.parameter}
        return 0 if run(root, args.profile, names, overrides, **options) else 1
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
