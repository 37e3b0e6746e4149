"""The environment each chapter was executed in, and the page of the book that shows it.

The runner records the environment in every executed notebook's metadata when it executes it
(:func:`executed_environment`); the build writes ``book/environment.md`` from those records
(:func:`write_environment_page`) when the toc lists that page. Nothing on it is typed by hand.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from eraserbook.jobs import executed_metadata
from eraserbook.layout import Layout

ENVIRONMENT_PAGE = "environment"
#: The packages whose versions decide the chapters' numbers, as the page names them.
PACKAGES = {"torch": "PyTorch", "transformers": "Transformers", "peft": "PEFT", "numpy": "NumPy"}
#: What the book was built with (recorded at build time, not per chapter).
BUILD_PACKAGES = {"jupyter-book": "Jupyter Book", "sphinx": "Sphinx", "myst-nb": "MyST-NB",
                  "papermill": "papermill"}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def executed_environment() -> dict[str, Any]:
    """Python and package versions, CPU and cores of this process (the kernels run this interpreter).

    Read from package metadata, so the runner itself never imports torch.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "system": f"{platform.system()} {platform.machine()}",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": os.environ.get("OMP_NUM_THREADS", "not capped"),
    }


def _rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    packages = environment.get("packages", {})
    return [
        ("Python", environment.get("python", "?")),
        *((label, packages.get(name, "?")) for name, label in PACKAGES.items()),
        ("System", environment.get("system", "?")),
        ("CPU", environment.get("cpu", "?")),
        ("Cores (usable by the kernels)", f"{environment.get('cores', '?')} ({environment.get('usable_cores', '?')})"),
        ("Threads per kernel (OMP_NUM_THREADS)", str(environment.get("threads", "?"))),
    ]


def _table(rows: list[tuple[str, str]], heading: str) -> str:
    lines = [f"| | {heading} |", "|---|---|"]
    lines += [f"| {name} | `{value}` |" if name != "CPU" else f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def environment_page(records: dict[str, dict[str, Any] | None], profile: str) -> str:
    """The page's MyST source.

    Args:
        records: chapter name -> the environment its executed notebook recorded (None: none).
        profile: the profile of this build.

    Returns:
        One table per distinct environment, naming the chapters executed in it.
    """
    groups: list[tuple[dict[str, Any] | None, list[str]]] = []
    for name, environment in records.items():
        for recorded, names in groups:
            if recorded == environment:
                names.append(name)
                break
        else:
            groups.append((environment, [name]))
    parts = [
        "# The environment of this build\n",
        f"The runner recorded, when it executed each chapter of this book (the `{profile}` "
        "profile), the versions of Python and of the packages that compute its numbers, and the "
        "machine's processor and cores; it wrote this page from those records when it built the "
        "book. Nothing on this page is typed by hand.\n",
    ]
    for environment, names in groups:
        chapters = ", ".join(f"{{doc}}`{name}`" for name in names)
        if environment is None:
            parts.append(f"Not recorded for {chapters} (executed before the runner recorded "
                         "environments; `--force` reruns them).\n")
            continue
        which = "Every chapter" if len(groups) == 1 else f"The chapters {chapters}"
        parts.append(f"{which} ran in this environment:\n\n{_table(_rows(environment), 'recorded')}\n")
    build = [(label, _version(name)) for name, label in BUILD_PACKAGES.items()]
    parts.append(f"The pages were built with:\n\n{_table(build, 'version')}\n")
    return "\n".join(parts)


def write_environment_page(layout: Layout, names: list[str]) -> Path:
    """Writes ``<tree>/book/environment.md`` from the executed chapters ``names`` (atomically).

    Args:
        layout: the profile's book.
        names: the chapter notebooks, in reading order.

    Returns:
        The page's path.
    """
    records = {}
    for name in names:
        recorded = executed_metadata(layout.executed(name)) or {}
        records[name] = recorded.get("environment")
    text = environment_page(records, layout.profile)
    target = layout.page(ENVIRONMENT_PAGE)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.read_text() == text:
        return target  # unchanged: keep its time stamp
    partial = target.with_name(f".{target.name}.partial")  # hidden: never staged or built
    partial.write_text(text)
    os.replace(partial, target)
    return target
