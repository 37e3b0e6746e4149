"""Building the HTML book: every chapter run (or up to date), generated pages, then Jupyter Book.

Sphinx builds into a staging folder; only a successful build replaces ``<tree>/_build/html``,
so a failed build leaves the previous book readable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eraserbook.environment import ENVIRONMENT_PAGE, write_environment_page
from eraserbook.execute import strip_ansi
from eraserbook.layout import BOOK_DIR, Layout, prune, toc_documents, toc_notebooks
from eraserbook.profiles import check_profile
from eraserbook.schedule import run


def build(root: Path, profile: str, **run_options: Any) -> bool:
    """Runs every notebook under ``profile``, then builds the HTML with Jupyter Book.

    The build never executes notebooks, treats every warning as an error, and rebuilds every
    page (glue from one page into another would otherwise go stale).

    Args:
        root: the book root.
        profile: one of ``PROFILES``.
        **run_options: passed to :func:`eraserbook.schedule.run` (``force``, ``jobs``, ...).

    Returns:
        True on success; the book is at ``Layout(root, profile).html_dir / "index.html"``.
    """
    check_profile(profile)
    names = toc_notebooks(root)
    if not run(root, profile, names, **run_options):
        print("book not built: a notebook failed", file=sys.stderr)
        return False
    prune(root, profile, names)
    layout = Layout(root, profile)
    if f"{BOOK_DIR.as_posix()}/{ENVIRONMENT_PAGE}" in toc_documents(root):
        write_environment_page(layout, names)
    return jupyter_book_build(layout)


def jupyter_book_build(layout: Layout) -> bool:
    """``jupyter-book build -W --all`` of one profile's tree; prints the log only on failure.

    Sphinx builds into ``<tree>/_build/next/_build/html``; only a successful build replaces
    ``<tree>/_build/html``, so a failed build leaves the previous book readable.
    """
    print(f"building the {layout.profile} book ", end="", flush=True)
    staging = layout.tree / "_build" / "next"
    log = layout.tree / "_build" / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build", str(layout.tree), "--path-output", str(staging), "--warningiserror", "--all",
    ]
    start = time.perf_counter()
    with log.open("w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    built = staging / "_build" / "html"
    if status.returncode != 0:
        shutil.rmtree(built, ignore_errors=True)
        print(f"FAILED after {seconds:.1f} s")
        print(f"{_build_errors(log.read_text())}\n(full log: {log})", file=sys.stderr)
        return False
    _swap_in(built, layout.html_dir)
    print(f"done in {seconds:.1f} s: {layout.html_dir / 'index.html'}")
    return True


def _build_errors(text: str) -> str:
    """The lines of a Sphinx log that say what went wrong (else its end): not the tracebacks."""
    cause = re.compile(r"SphinxWarning: |WARNING: |ERROR: |Warning, treated as error|Exception occurred")
    lines = [strip_ansi(line) for line in text.splitlines() if cause.search(line)]
    return "\n".join(lines or text.splitlines()[-40:])


def _swap_in(built: Path, target: Path) -> None:
    """Replaces the directory ``target`` by ``built`` with renames (the old one goes last)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)
