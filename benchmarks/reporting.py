"""What every benchmark shares: its command line, the machine it ran on, its JSON record and table.

A timing means little without the machine and its load: this project runs on shared 2-core
machines where other jobs inflate every wall-clock figure. Each record therefore carries
:func:`machine` (CPU, threads, torch, device, the load average before and after the run).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eraserlib.storage import dumps

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parser(name: str, description: str, sizes: Sequence[str] = ("tiny", "default")) -> argparse.ArgumentParser:
    """The command line every benchmark accepts (``--size``, ``--out``, ``--threads``, ``--seed``).

    Args:
        name: The benchmark's name (the default output file is ``results/<name>-<size>.json``).
        description: One line for ``--help``.
        sizes: The named sizes; the first is the one the tests run.
    """
    arguments = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    arguments.add_argument("--size", choices=list(sizes), default="default" if "default" in sizes else sizes[-1],
                           help="problem sizes (tiny: seconds, for the tests)")
    arguments.add_argument("--out", type=Path, default=None,
                           help=f"JSON file to write (default: benchmarks/results/{name}-<size>.json)")
    arguments.add_argument("--threads", type=int, default=1,
                           help="torch threads (1: the honest figure on a shared machine)")
    arguments.add_argument("--seed", type=int, default=0)
    arguments.set_defaults(benchmark=name)
    return arguments


def setup_torch(threads: int) -> None:
    """Thread cap, and silence for the one library warning peft raises on every adapter it builds."""
    import warnings

    import torch

    torch.set_num_threads(max(1, threads))
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes; above the core count = contention)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return [math.nan] * 3


def machine() -> dict[str, Any]:
    """The machine and its state: CPU model, cores, threads, torch version, GPU if any, load."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        uptime = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": load_average(),
        "uptime": uptime,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def output_path(arguments: argparse.Namespace) -> Path:
    return arguments.out or RESULTS_DIR / f"{arguments.benchmark}-{arguments.size}.json"


def write_record(arguments: argparse.Namespace, record: dict[str, Any], started: float,
                 machine_before: dict[str, Any]) -> Path:
    """Write ``record`` with the run's metadata to the output file; returns its path."""
    path = output_path(arguments)
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {
        "benchmark": arguments.benchmark,
        "size": arguments.size,
        "seed": arguments.seed,
        "command": " ".join(["python -m", f"benchmarks.{arguments.benchmark}"] + sys.argv[1:]),
        "machine": machine_before,
        "load_average_after": load_average(),
        "total_seconds": time.perf_counter() - started,
        **record,
    }
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(dumps(full))
    os.replace(temporary, path)  # a reader never sees half a file
    return path


def median_seconds(function, repeats: int) -> float:
    """Median wall-clock of ``repeats`` calls of ``function``, after one warm-up call."""
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (dicts) over ``columns``; numbers in 4 significant digits."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            if not math.isfinite(value):
                return "-"
            return f"{value:.4g}"
        return str(value)

    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) if table else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in table]
    return "\n".join(lines)


def rewrite_assignment(module: Path, name: str, value: Any) -> None:
    """Rewrite the last assignment ``name = ...`` of a generated settings module with ``value`` (pretty-printed),
    keeping everything before it (docstring, helpers); atomically (a partial file, then a rename)."""
    import pprint

    head = module.read_text().split(f"{name} = ")[0]
    temporary = module.with_name(f".{module.name}.partial")
    temporary.write_text(f"{head}{name} = {pprint.pformat(value, width=110, sort_dicts=False)}\n")
    temporary.replace(module)
