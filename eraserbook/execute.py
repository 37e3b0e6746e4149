"""Executing one notebook with papermill: atomic outputs, the "About this run" box, failure reports."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eraserbook.environment import executed_environment
from eraserbook.jobs import RUNNER_PARAMETERS, STAMP_KEY, Job

KERNEL_NAME = "python3"  # the environment's own kernel: jupyter_client runs it with sys.executable


def kernel_environment(threads: int) -> dict[str, str]:
    """Environment for the kernels: no OpenMP spin-waiting, no hub look-ups, a thread cap.

    Spin-waiting OpenMP threads made torch ~10x slower next to another busy process; an offline
    hub fails at once instead of retrying for ~47 s (both seen on the project's 2-core machine).
    """
    return {
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        # ipykernel's debugger otherwise warns about frozen modules on every kernel start
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


@dataclass
class Outcome:
    """What happened to one executed job: ``ran`` or ``failed`` (with the report)."""

    status: str
    seconds: float = 0.0
    message: str = ""


def execute(job: Job, stamp: str, cell_timeout: int | None) -> Outcome:
    """Executes one notebook, replacing the executed notebook and its results only on success.

    The notebook runs into a temporary file beside the final one and into a fresh results
    folder while the previous results wait aside; both are swapped in by renames at the end,
    so an interrupted or failed run leaves the previous book page as it was.

    Args:
        job: the notebook and its parameters.
        stamp: the inputs' hash taken before the run (sources may change while it runs).
        cell_timeout: seconds one cell may take, or None.

    Returns:
        ``ran`` (with a note when cells wrote to stderr) or ``failed`` with a readable report.
    """
    layout, name = job.layout, job.name
    executed, results = layout.executed(name), layout.results(name)
    aside = results.with_name(f".{name}.previous")
    if aside.is_dir():  # an earlier run was killed mid-way: aside holds the last good results
        shutil.rmtree(results, ignore_errors=True)
        aside.rename(results)
    for stale in layout.book_dir.glob(f".{name}-*"):  # scratch of a killed run
        shutil.rmtree(stale, ignore_errors=True)
    had_results = results.is_dir()
    if had_results:
        results.rename(aside)
    results.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=layout.book_dir))
    partial = scratch / f"{name}.ipynb"
    start = time.perf_counter()
    try:
        _papermill(job, partial, cell_timeout)
        seconds = time.perf_counter() - start
        _finish_notebook(job, partial, seconds, stamp)
        os.replace(partial, executed)
    except BaseException as error:
        shutil.rmtree(results, ignore_errors=True)
        if had_results:
            aside.rename(results)
        if partial.is_file():
            layout.failed(name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, layout.failed(name))
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(error, Exception):
            return Outcome("failed", time.perf_counter() - start, describe_failure(job, error))
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    if had_results:
        shutil.rmtree(aside)
    layout.failed(name).unlink(missing_ok=True)  # an older failure is no longer news
    return Outcome("ran", seconds, _stderr_note(executed))


def _papermill(job: Job, output: Path, cell_timeout: int | None) -> None:
    import papermill  # imported here: `list` and the CLI's --help need no Jupyter machinery
    from traitlets.config import Config

    # Kernel and runner talk over local sockets, not TCP ports (the kernel warns about unencrypted
    # TCP on every start otherwise). The sockets go to a short temporary folder (a socket path has
    # a ~100-byte limit), not the kernel's working directory, where a killed kernel left them.
    sockets = tempfile.mkdtemp(prefix="eraser-kernel-")
    try:
        papermill.execute_notebook(
            str(job.layout.source(job.name)),
            str(output),
            parameters=job.parameters,
            kernel_name=KERNEL_NAME,
            language="python",
            cwd=str(job.layout.book_dir),  # so that results_dir is relative to the executed page
            progress_bar=False,
            execution_timeout=cell_timeout,
            config=Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}}),
        )
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def describe_failure(job: Job, error: Exception) -> str:
    """A readable report: which notebook and cell failed, its source and the error."""
    from papermill.exceptions import PapermillExecutionError

    where = f"notebooks/{job.name}.ipynb (profile {job.layout.profile})"
    saved = job.layout.failed(job.name)
    tail = (
        f"\n  the partly executed notebook: {saved}" if saved.is_file() else ""
    ) + "\n  the previous executed notebook and results are unchanged"
    if isinstance(error, PapermillExecutionError):
        source = "\n".join("    | " + line for line in error.source.splitlines()[-15:])
        trace = strip_ansi("\n".join(error.traceback)).splitlines()
        trace = "\n".join("    " + line for line in trace[-20:])
        return (
            f"{where} failed in cell In [{error.exec_count}]:\n{source}\n"
            f"  {error.ename}: {error.evalue}\n{trace}{tail}"
        )
    return f"{where} failed: {type(error).__name__}: {strip_ansi(str(error))}{tail}"


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (tracebacks and Sphinx logs carry them)."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _finish_notebook(job: Job, path: Path, seconds: float, stamp: str) -> None:
    """Hides the parameters cells, adds the "About this run" box, the input stamp and the environment."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    files = sorted(
        p.relative_to(job.layout.book_dir).as_posix()
        for p in job.layout.results(job.name).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    notebook.cells.append(nbformat.v4.new_markdown_cell(about_this_run(job, files, seconds)))
    notebook.metadata[STAMP_KEY] = {
        "stamp": stamp,
        "profile": job.layout.profile,
        "parameters": job.parameters,
        "seconds": round(seconds, 1),
        "results": files,
        # the kernel is this interpreter (KERNEL_NAME), so these are the versions it imported
        "environment": executed_environment(),
    }
    nbformat.write(notebook, path)


def about_this_run(job: Job, files: list[str], seconds: float) -> str:
    """The MyST box closing every executed page: profile, parameters, downloads, how to rerun."""
    shown = {k: v for k, v in job.parameters.items() if k not in RUNNER_PARAMETERS}
    settings = ", ".join(f"`{k} = {_short(v)}`" for k, v in shown.items()) or "the notebook's defaults"
    downloads = " · ".join(f"{{download}}`{Path(f).name} <{f}>`" for f in files) or "none"
    command = f"python -m eraserbook run notebooks/{job.name}.ipynb --profile {job.layout.profile}"
    for key, value in job.overrides.items():  # JSON is valid YAML, which is how -p values are read
        command += f" -p {key} {shlex.quote(json.dumps(value))}"
    return (
        ":::{admonition} About this run\n:class: note\n\n"
        f"Executed with the `{job.layout.profile}` profile ({settings}) in {seconds:.0f} s.\n\n"
        f"Results of this run: {downloads}\n\n"
        f"Rerun: `{command}`\n:::\n"
    )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stderr_note(executed: Path) -> str:
    """Names cells that wrote to stderr: the book build treats stderr output as an error."""
    cells = json.loads(executed.read_text())["cells"]
    noisy = [
        str(cell.get("execution_count"))
        for cell in cells
        if any(o.get("name") == "stderr" for o in cell.get("outputs", []))
    ]
    if not noisy:
        return ""
    return f"stderr output in cell(s) In [{', '.join(noisy)}]: the book build will reject it"
