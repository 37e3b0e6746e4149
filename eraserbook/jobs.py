"""What to execute: each notebook's parameters, the stamp of its inputs, and whether it is up to date.

A notebook is executed again only when its inputs changed: the notebook source, the sources of
the library and the experiments (``eraserlib/``, ``eraserlab/``; not this package, so editing a
figure colour or the command line marks nothing stale), ``requirements.txt``, the profile or the
parameters (a hash stored in the executed notebook's metadata), and the results of the chapters
it reads (listed in its metadata as ``{"eraser_book": {"reads_results_of": [...]}}``; they must
come earlier in the toc).
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eraserbook.errors import RunnerError
from eraserbook.layout import NOTEBOOKS_DIR, RESULTS_SUBDIR, Layout, notebook_names
from eraserbook.profiles import PROFILES_FILE, Profiles

# The runner sets these two parameters itself; every notebook declares them in its parameters cell.
RUNNER_PARAMETERS = ("profile", "results_dir")
STAMP_KEY = "eraser_book"
#: The code whose changes can change a chapter's output: the library and the experiments. The book
#: machinery (this package) is left out, so editing a figure colour or the CLI marks nothing stale.
STAMPED_PACKAGES = ("eraserlib", "eraserlab")
#: Where the stamped packages are (tests point it at a copy to edit).
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Job:
    """One notebook to execute under one profile."""

    name: str
    layout: Layout
    parameters: dict[str, Any]  # everything passed to papermill, runner parameters included
    overrides: dict[str, Any] = field(default_factory=dict)  # the command line's share of them


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
    unknown = sorted((set(profiles.overrides) | set(profiles.start_first)) - set(notebook_names(root)))
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
    for name in results_read_by(job.layout.source(job.name)):
        results = job.layout.results(name)
        for path in sorted(results.rglob("*")) if results.is_dir() else []:
            if path.is_file():
                digest.update(f"{name}/{path.relative_to(results).as_posix()}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def results_read_by(source: Path) -> list[str]:
    """The chapters whose results the notebook at ``source`` reads (its metadata says so)."""
    try:
        metadata = json.loads(source.read_text())["metadata"]
    except (ValueError, KeyError):
        return []
    return list(metadata.get(STAMP_KEY, {}).get("reads_results_of", []))


def executed_metadata(path: Path) -> dict[str, Any] | None:
    """The runner's metadata of an executed notebook (stamp, parameters, ...), or None if unreadable."""
    try:
        return json.loads(path.read_text())["metadata"].get(STAMP_KEY, {})
    except (OSError, ValueError, KeyError):
        return None


def is_up_to_date(job: Job, stamp: str) -> bool:
    """Whether the executed notebook and its results exist and were made from the same inputs."""
    executed, results = job.layout.executed(job.name), job.layout.results(job.name)
    if not (executed.is_file() and results.is_dir()):
        return False
    metadata = executed_metadata(executed)
    return metadata is not None and metadata.get("stamp") == stamp
