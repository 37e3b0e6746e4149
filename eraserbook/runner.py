"""Execute the book's notebooks with papermill under a named profile, then build the book.

Every chapter is a parameterised notebook in ``notebooks/`` (one cell tagged ``parameters``).
A *profile* says how big each run is; ``notebooks/profiles.yml`` holds, per notebook and per
profile, the parameters that differ from the notebook's own defaults:

* ``smoke``   tiny settings for CI: the whole book in a few minutes on 2 cores;
* ``default`` the laptop book (the notebooks' own defaults should be this profile);
* ``full``    the paper's whole grid at laptop model sizes (hours);
* ``paper``   the paper's model sizes, for a GPU.

Usage::

    python -m eraserbook run   [--profile default] [notebooks/x.ipynb ...] [-p name value ...]
    python -m eraserbook build [--profile default]
    python -m eraserbook list  [--profile default]

Where things go (``<tree>`` is the repository root for ``default`` and ``_build/profiles/<profile>``
for every other profile, so that building one profile never touches another):

* executed notebook: ``<tree>/book/<name>.ipynb`` (the page the book shows);
* its results:       ``<tree>/book/results/<name>/`` (the notebook's ``results_dir``, linked from the
  page for download);
* the HTML book:     ``<tree>/_build/html/index.html`` (replaced only by a successful build);
* a failed run:      ``<tree>/_build/failed/<name>.ipynb`` (the previous executed notebook and
  results stay as they were).

A notebook is executed again only when its inputs changed: the notebook source, the ``eraserlib``
sources, ``requirements.txt``, the profile or the parameters (a hash stored in the executed
notebook's metadata), and the results of the chapters it reads (listed in its metadata as
``{"eraser_book": {"reads_results_of": [...]}}``; they must come earlier in the toc).
``--force`` reruns anyway, e.g. after new data arrived.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "default", "full", "paper")
DEFAULT_PROFILE = "default"
PROFILES_FILE = Path("notebooks") / "profiles.yml"
NOTEBOOKS_DIR = Path("notebooks")
BOOK_DIR = Path("book")
RESULTS_SUBDIR = "results"
# The runner sets these two parameters itself; every notebook declares them in its parameters cell.
RUNNER_PARAMETERS = ("profile", "results_dir")
STAMP_KEY = "eraser_book"
KERNEL_NAME = "python3"  # the environment's own kernel: jupyter_client runs it with sys.executable
#: The code whose changes can change a chapter's output: the library and the experiments. The book
#: machinery (this package) is left out, so editing a figure colour or the CLI marks nothing stale.
STAMPED_PACKAGES = ("eraserlib", "eraserlab")
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


class RunnerError(Exception):
    """A problem with the book's set-up (profiles, toc, parameters), reported without a traceback."""


# --------------------------------------------------------------------------------------------
# Profiles


@dataclass
class Profiles:
    """The profiles file: profile descriptions and per-notebook, per-profile parameter overrides.

    Attributes:
        descriptions: profile name -> one-line description.
        overrides: notebook name -> profile name -> {parameter: value}.
    """

    descriptions: dict[str, str]
    overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Profiles:
        """Reads and validates ``profiles.yml`` (its structure; parameter names are checked later).

        Args:
            path: the YAML file.

        Returns:
            The parsed profiles.

        Raises:
            RunnerError: when the file is missing or malformed, or names an unknown profile.
        """
        if not path.is_file():
            raise RunnerError(f"{path}: profiles file not found")
        data = yaml.safe_load(path.read_text()) or {}
        descriptions = data.get("profiles") or {}
        if set(descriptions) != set(PROFILES):
            raise RunnerError(
                f"{path}: 'profiles' must describe exactly {', '.join(PROFILES)}; "
                f"found {', '.join(descriptions) or 'none'}"
            )
        overrides = data.get("notebooks") or {}
        if not isinstance(overrides, dict):
            raise RunnerError(f"{path}: 'notebooks' must map notebook names to profiles")
        for notebook, per_profile in overrides.items():
            per_profile = per_profile or {}
            overrides[notebook] = per_profile
            for profile, params in per_profile.items():
                if profile not in PROFILES:
                    raise RunnerError(
                        f"{path}: notebook '{notebook}' names unknown profile '{profile}' "
                        f"(known: {', '.join(PROFILES)})"
                    )
                if params is not None and not isinstance(params, dict):
                    raise RunnerError(
                        f"{path}: notebooks.{notebook}.{profile} must map parameter names to values"
                    )
                per_profile[profile] = params or {}
        return cls(descriptions=descriptions, overrides=overrides)

    def parameters_for(self, notebook: str, profile: str) -> dict[str, Any]:
        """The overrides of ``notebook`` under ``profile`` (empty: the notebook's own defaults)."""
        return dict(self.overrides.get(notebook, {}).get(profile, {}))


# --------------------------------------------------------------------------------------------
# The book's layout


@dataclass(frozen=True)
class Layout:
    """Where one profile's book lives.

    The ``default`` profile is the repository root itself (so ``jupyter-book build .`` works);
    every other profile gets a copy of the book's pages under ``_build/profiles/<profile>``.

    Attributes:
        root: the repository (book) root, with ``_config.yml``, ``_toc.yml``, ``notebooks/``.
        profile: the profile name.
    """

    root: Path
    profile: str

    @property
    def tree(self) -> Path:
        """The book root for this profile (holds ``_config.yml``, ``_toc.yml``, ``book/``)."""
        if self.profile == DEFAULT_PROFILE:
            return self.root
        return self.root / "_build" / "profiles" / self.profile

    @property
    def book_dir(self) -> Path:
        return self.tree / BOOK_DIR

    @property
    def html_dir(self) -> Path:
        return self.tree / "_build" / "html"

    def executed(self, name: str) -> Path:
        return self.book_dir / f"{name}.ipynb"

    def results(self, name: str) -> Path:
        return self.book_dir / RESULTS_SUBDIR / name

    def failed(self, name: str) -> Path:
        return self.tree / "_build" / "failed" / f"{name}.ipynb"

    def source(self, name: str) -> Path:
        return self.root / NOTEBOOKS_DIR / f"{name}.ipynb"


def notebook_names(root: Path) -> list[str]:
    """Names (file stems) of the chapter notebooks in ``notebooks/``, sorted."""
    return sorted(p.stem for p in (root / NOTEBOOKS_DIR).glob("*.ipynb"))


def toc_documents(root: Path) -> list[str]:
    """Document paths listed in ``_toc.yml`` (suffix removed), in reading order.

    Raises:
        RunnerError: when ``_toc.yml`` is missing or has no root.
    """
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise RunnerError(f"{toc_path}: not found")
    toc = yaml.safe_load(toc_path.read_text()) or {}
    if "root" not in toc:
        raise RunnerError(f"{toc_path}: no 'root' entry")
    documents: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                documents.append(_strip_suffix(node["file"]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    documents.append(_strip_suffix(toc["root"]))
    visit({k: v for k, v in toc.items() if k != "root"})
    return documents


def _strip_suffix(document: str) -> str:
    return re.sub(r"\.(md|ipynb)$", "", str(document))


def toc_notebooks(root: Path) -> list[str]:
    """Chapter notebooks in reading order, after checking that toc and ``notebooks/`` agree.

    A toc entry ``book/<name>`` is a chapter notebook when ``notebooks/<name>.ipynb`` exists,
    otherwise it must be a page ``book/<name>.md``.

    Raises:
        RunnerError: a toc entry with no source, or a notebook that is not in the toc.
    """
    sources = set(notebook_names(root))
    ordered = []
    for document in toc_documents(root):
        name = document.removeprefix(f"{BOOK_DIR.as_posix()}/")
        if name in sources and document == f"{BOOK_DIR.as_posix()}/{name}":
            ordered.append(name)
        elif not (root / f"{document}.md").is_file():
            raise RunnerError(
                f"_toc.yml lists '{document}', but neither notebooks/{name}.ipynb "
                f"nor {document}.md exists"
            )
    missing = sorted(sources - set(ordered))
    if missing:
        entries = ", ".join(f"'- file: book/{name}'" for name in missing)
        raise RunnerError(
            f"notebooks not in _toc.yml: {', '.join(missing)}; every notebook is a chapter, add {entries}"
        )
    return ordered


def declared_parameters(source: Path) -> dict[str, str]:
    """Names assigned in the notebook's ``parameters`` cell, with their default's source text.

    Raises:
        RunnerError: no cell tagged ``parameters``, or the runner's own parameters are missing.
    """
    notebook = json.loads(source.read_text())
    for cell in notebook["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            code = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            break
    else:
        raise RunnerError(f"{source}: no cell is tagged 'parameters'")
    declared = {}
    for node in ast.parse(code).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name):
                declared[target.id] = ast.get_source_segment(code, node.value) or ""
    absent = [name for name in RUNNER_PARAMETERS if name not in declared]
    if absent:
        raise RunnerError(
            f"{source}: the parameters cell must define {', '.join(absent)} (the runner sets them), "
            f'e.g. profile = "default" and results_dir = "results/{source.stem}"'
        )
    return declared


def parse_value(text: str) -> Any:
    """A command-line parameter value as YAML: ``0.05`` -> float, ``[1, 2]`` -> list, ``abc`` -> str."""
    value = yaml.safe_load(text)
    # PyYAML (YAML 1.1) reads 1e-3 as text; on a command line it is meant as a number.
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
        return float(value)
    return value


# --------------------------------------------------------------------------------------------
# Jobs and stamps


@dataclass
class Job:
    """One notebook to execute under one profile."""

    name: str
    layout: Layout
    parameters: dict[str, Any]  # everything passed to papermill, runner parameters included
    overrides: dict[str, Any] = field(default_factory=dict)  # the command line's share of them


def make_jobs(
    root: Path, profile: str, names: list[str], cli_overrides: dict[str, Any], explicit: bool
) -> list[Job]:
    """Resolves each notebook's parameters: notebook defaults < profile overrides < command line.

    Args:
        root: the book root.
        profile: profile name.
        names: notebooks to run, in order.
        cli_overrides: ``-p name value`` pairs.
        explicit: whether the user named the notebooks (then each must declare every ``-p``).

    Raises:
        RunnerError: an override names a parameter that the notebook does not declare.
    """
    profiles = Profiles.load(root / PROFILES_FILE)
    unknown = sorted(set(profiles.overrides) - set(notebook_names(root)))
    if unknown:
        raise RunnerError(
            f"{PROFILES_FILE}: no notebook named {', '.join(unknown)} in {NOTEBOOKS_DIR}/"
        )
    reserved = set(RUNNER_PARAMETERS) & set(cli_overrides)
    if reserved:
        raise RunnerError(f"-p {', '.join(sorted(reserved))}: set by the runner, use --profile")
    layout = Layout(root, profile)
    jobs, used = [], set()
    for name in names:
        declared = declared_parameters(layout.source(name))
        params = profiles.parameters_for(name, profile)
        undeclared = sorted(set(params) - set(declared))
        if undeclared:
            raise RunnerError(
                f"{PROFILES_FILE}: {name}.{profile} sets {', '.join(undeclared)}, which "
                f"notebooks/{name}.ipynb does not declare in its parameters cell"
            )
        overrides = {}
        for key, value in cli_overrides.items():
            if key in declared:
                overrides[key] = params[key] = value
                used.add(key)
            elif explicit:
                raise RunnerError(f"-p {key}: notebooks/{name}.ipynb declares no parameter '{key}'")
        params.update(profile=profile, results_dir=f"{RESULTS_SUBDIR}/{name}")
        jobs.append(Job(name=name, layout=layout, parameters=params, overrides=overrides))
    if set(cli_overrides) - used:
        raise RunnerError(f"-p {', '.join(sorted(set(cli_overrides) - used))}: no notebook declares it")
    return jobs


def input_stamp(job: Job) -> str:
    """SHA-256 of everything that decides a notebook's output (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(job.layout.source(job.name).read_bytes())
    for package in STAMPED_PACKAGES:
        for path in sorted((REPOSITORY_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(REPOSITORY_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    requirements = job.layout.root / "requirements.txt"
    if requirements.is_file():
        digest.update(requirements.read_bytes())
    digest.update(json.dumps(job.parameters, sort_keys=True, default=str).encode())
    # A chapter that reads other chapters' results (the cost and comparison chapters) lists them in
    # its notebook metadata, {"eraser_book": {"reads_results_of": [...]}}: their results are inputs.
    for name in _results_read_by(job.layout.source(job.name)):
        results = job.layout.results(name)
        for path in sorted(results.rglob("*")) if results.is_dir() else []:
            if path.is_file():
                digest.update(f"{name}/{path.relative_to(results).as_posix()}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _results_read_by(source: Path) -> list[str]:
    """The chapters whose results the notebook at ``source`` reads (its metadata says so)."""
    try:
        metadata = json.loads(source.read_text())["metadata"]
    except (ValueError, KeyError):
        return []
    return list(metadata.get(STAMP_KEY, {}).get("reads_results_of", []))


def is_up_to_date(job: Job, stamp: str) -> bool:
    """Whether the executed notebook and its results exist and were made from the same inputs."""
    executed, results = job.layout.executed(job.name), job.layout.results(job.name)
    if not (executed.is_file() and results.is_dir()):
        return False
    try:
        metadata = json.loads(executed.read_text())["metadata"]
    except (ValueError, KeyError):
        return False
    return metadata.get(STAMP_KEY, {}).get("stamp") == stamp


# --------------------------------------------------------------------------------------------
# Executing one notebook


def kernel_environment(threads: int) -> dict[str, str]:
    """Environment for the kernels: no OpenMP spin-waiting, no hub look-ups, a thread cap.

    Spin-waiting OpenMP threads made torch ~10x slower next to another busy process; an offline
    hub fails at once instead of retrying for ~47 s (see ENVIRONMENT.md).
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
        trace = _strip_ansi("\n".join(error.traceback)).splitlines()
        trace = "\n".join("    " + line for line in trace[-20:])
        return (
            f"{where} failed in cell In [{error.exec_count}]:\n{source}\n"
            f"  {error.ename}: {error.evalue}\n{trace}{tail}"
        )
    return f"{where} failed: {type(error).__name__}: {_strip_ansi(str(error))}{tail}"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _finish_notebook(job: Job, path: Path, seconds: float, stamp: str) -> None:
    """Hides the parameters cells, adds the "About this run" box and the input stamp."""
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


# --------------------------------------------------------------------------------------------
# Running several notebooks, staging and building


def run(
    root: Path,
    profile: str,
    names: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    keep_going: bool = False,
    threads: int | None = None,
    cell_timeout: int | None = None,
    jobs: int | None = None,
) -> bool:
    """Executes notebooks under a profile, skipping those whose inputs have not changed.

    With ``jobs`` > 1 up to that many notebooks run at once, each in its own kernel; a notebook
    that reads another's results (``reads_results_of``) starts only after that one finished.
    Notebooks that need the same cached base model wait for each other instead of training it
    twice (:func:`eraserlab.records.cache_lock`).

    Args:
        root: the book root.
        profile: one of ``PROFILES``.
        names: notebook names; ``None`` runs every notebook (toc order).
        overrides: ``-p`` parameter overrides.
        force: rerun even when up to date.
        keep_going: go on after a failed notebook (the result is still a failure).
        threads: thread cap per kernel (default: ``OMP_NUM_THREADS``, else the usable cores shared
            among the parallel kernels, at most 4).
        cell_timeout: seconds one cell may take (default: no limit).
        jobs: notebooks run at once (default: :func:`default_jobs`).

    Returns:
        True when every notebook ran or was up to date.
    """
    if profile not in PROFILES:
        raise RunnerError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    if jobs is not None and jobs < 1:
        raise RunnerError(f"--jobs must be at least 1, got {jobs}")
    explicit = names is not None
    if names is None:
        names = _all_in_reading_order(root)
    todo = make_jobs(root, profile, names, overrides or {}, explicit)
    stage(root, profile)
    jobs = min(jobs or default_jobs(), max(1, len(todo)))
    os.environ.update(kernel_environment(threads or default_threads(jobs)))
    width = max((len(job.name) for job in todo), default=0)
    label = {job.name: f"[{index}/{len(todo)}] {job.name:<{width}} ({profile}) " for index, job in enumerate(todo, 1)}
    if jobs == 1:
        return _run_in_turn(todo, label, force, keep_going, cell_timeout)
    return _run_in_parallel(todo, label, force, keep_going, cell_timeout, jobs)


def _report(label: str, outcome: Outcome) -> bool:
    """Prints how a job ended; True when it ran."""
    if outcome.status == "ran":
        print(f"{label}ran in {outcome.seconds:.1f} s", flush=True)
        if outcome.message:
            print(f"    warning: {outcome.message}", flush=True)
        return True
    print(f"{label}FAILED after {outcome.seconds:.1f} s", flush=True)
    print(outcome.message, file=sys.stderr, flush=True)
    return False


def _run_in_turn(todo: list[Job], label: dict[str, str], force: bool, keep_going: bool,
                 cell_timeout: int | None) -> bool:
    ok = True
    for job in todo:
        print(label[job.name], end="", flush=True)
        stamp = input_stamp(job)
        if not force and is_up_to_date(job, stamp):
            print("up to date, skipped")
            continue
        if not _report("", execute(job, stamp, cell_timeout)):
            ok = False
            if not keep_going:
                break
    return ok


def _run_in_parallel(todo: list[Job], label: dict[str, str], force: bool, keep_going: bool,
                     cell_timeout: int | None, jobs: int) -> bool:
    """Runs up to ``jobs`` notebooks at once in toc order, each after the chapters it reads."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    names = {job.name for job in todo}
    needs = {job.name: [n for n in _results_read_by(job.layout.source(job.name)) if n in names] for job in todo}
    pending, running, done, ok = list(todo), {}, {}, True
    # spawn, not fork: each worker starts clean (no copied locks or threads of this process)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            stop = not ok and not keep_going
            for job in list(pending):
                if stop or len(running) >= jobs:
                    break
                states = [done.get(n) for n in needs[job.name]]
                if any(state is None for state in states):
                    continue  # a chapter it reads has not finished yet
                pending.remove(job)
                if not all(states):
                    print(f"{label[job.name]}not run: {', '.join(needs[job.name])} failed", flush=True)
                    done[job.name] = ok = False
                    continue
                stamp = input_stamp(job)  # after the chapters it reads finished: their results count
                if not force and is_up_to_date(job, stamp):
                    print(f"{label[job.name]}up to date, skipped", flush=True)
                    done[job.name] = True
                    continue
                print(f"{label[job.name]}started", flush=True)
                running[pool.submit(execute, job, stamp, cell_timeout)] = job
            if stop and not running:
                break
            if not running:
                if pending and not stop:
                    raise RunnerError(f"{', '.join(j.name for j in pending)} read each other's results (a cycle)")
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                done[job.name] = _report(label[job.name], future.result())
                ok = ok and done[job.name]
    return ok


def _all_in_reading_order(root: Path) -> list[str]:
    """Every notebook: those in the toc in its order first, then any others (run allows those)."""
    sources = notebook_names(root)
    in_toc = [
        d.removeprefix(f"{BOOK_DIR.as_posix()}/")
        for d in toc_documents(root)
        if d.removeprefix(f"{BOOK_DIR.as_posix()}/") in sources
    ]
    return in_toc + [name for name in sources if name not in in_toc]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Notebooks at once: 2 where there are 2 or more cores (every chapter's models are small and
    single-threaded, so two kernels on two cores finish the book in about half the time), else 1."""
    return 2 if _cores() >= 2 else 1


def default_threads(jobs: int = 1) -> int:
    """``OMP_NUM_THREADS`` when set, else the usable cores shared among ``jobs`` kernels, at most 4."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, min(4, _cores() // jobs))


def _is_generated(relative: Path) -> bool:
    """Files in ``book/`` that the runner writes: executed notebooks, results, scratch."""
    parts = relative.parts
    return (
        (len(parts) == 1 and relative.suffix == ".ipynb")
        or parts[0] == RESULTS_SUBDIR
        or any(part.startswith(".") for part in parts)
    )


def stage(root: Path, profile: str) -> None:
    """Mirrors the book's hand-written files into a non-default profile's tree.

    Copies ``_config.yml``, ``_toc.yml`` and everything in ``book/`` except generated files,
    and removes staged copies whose source is gone. Unchanged files keep their time stamps, so
    Sphinx's incremental build sees no change.
    """
    layout = Layout(root, profile)
    layout.book_dir.mkdir(parents=True, exist_ok=True)
    if layout.tree == root:
        return
    wanted = {Path(name) for name in ("_config.yml", "_toc.yml")}
    wanted |= {
        BOOK_DIR / p.relative_to(root / BOOK_DIR)
        for p in (root / BOOK_DIR).rglob("*")
        if p.is_file() and not _is_generated(p.relative_to(root / BOOK_DIR))
    }
    for relative in wanted:
        source, target = root / relative, layout.tree / relative
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for target in layout.book_dir.rglob("*"):
        relative = target.relative_to(layout.book_dir)
        if target.is_file() and not _is_generated(relative) and BOOK_DIR / relative not in wanted:
            target.unlink()


def prune(root: Path, profile: str, keep: list[str]) -> None:
    """Removes executed notebooks and results whose source notebook no longer exists."""
    layout = Layout(root, profile)
    for executed in layout.book_dir.glob("*.ipynb"):
        if executed.stem not in keep:
            print(f"removing {executed.relative_to(root)}: notebooks/{executed.name} is gone")
            executed.unlink()
            shutil.rmtree(layout.results(executed.stem), ignore_errors=True)


def build(root: Path, profile: str, **run_options: Any) -> bool:
    """Runs every notebook under ``profile``, then builds the HTML with Jupyter Book.

    The build never executes notebooks, treats every warning as an error, and rebuilds every
    page (glue from one page into another would otherwise go stale).

    Returns:
        True on success; the book is at ``Layout(root, profile).html_dir / "index.html"``.
    """
    if profile not in PROFILES:
        raise RunnerError(f"unknown profile '{profile}' (known: {', '.join(PROFILES)})")
    names = toc_notebooks(root)
    if not run(root, profile, names, **run_options):
        print("book not built: a notebook failed", file=sys.stderr)
        return False
    prune(root, profile, names)
    return jupyter_book_build(Layout(root, profile))


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
    lines = [_strip_ansi(line) for line in text.splitlines() if cause.search(line)]
    return "\n".join(lines or text.splitlines()[-40:])


def _swap_in(built: Path, target: Path) -> None:
    """Replaces the directory ``target`` by ``built`` with renames (the old one goes last)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def list_notebooks(root: Path, profile: str) -> None:
    """Prints each notebook, whether it is up to date under ``profile`` and its parameters."""
    for job in make_jobs(root, profile, _all_in_reading_order(root), {}, explicit=False):
        state = "up to date" if is_up_to_date(job, input_stamp(job)) else "to run"
        shown = {k: v for k, v in job.parameters.items() if k not in RUNNER_PARAMETERS}
        print(f"{job.name}: {state}; {shown or 'notebook defaults'}")


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eraserbook", description=__doc__.split("\n\n")[0]
    )
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


if __name__ == "__main__":
    sys.exit(main())
