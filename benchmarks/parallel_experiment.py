"""The CPU speed-up of one experiment on 2 processes over 1: its seeds shared out, its retrains shared between ranks.

One recommendation experiment (MovieLens, instance removal of 10%, Corrupted, K retrains and the
Hessian erase; ``eraserlab.parallel``) run by ``python -m eraserlab run`` in one process and by
``torchrun --standalone --nproc_per_node 2 -m eraserlab run`` (one torch thread per process in both),
after the base is pre-trained here (not timed). With two seeds each rank runs one and trains its own
retrain; one process runs both, and trains both retrains. The figure is the launch's wall time;
the two runs' frames are compared (every column but the wall-clock ones must be equal).

The machine has 2 cores shared with other work: its load average, recorded before and after, bounds
what a second process can gain.

    python -m benchmarks.parallel_experiment [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import reporting

ROOT = Path(__file__).resolve().parent.parent
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "seeds": [0, 1]},
    "default": {"preset": "small", "seeds": [0, 1]},
}
METHODS = ["corrupted", "retrain", "llmeraser"]
#: Columns that describe the machine or the sharing, not the result.
NOT_RESULTS = ["time_s", "peak_memory_mb", "eval_time_s", "certificate_time_s", "retrains_extra_time_s",
               "load_1min", "retrains_reused"]


def _launch(processes: int, size: dict[str, Any], out: Path, cache_dir: str | None) -> dict[str, Any]:
    arguments = ["-m", "eraserlab", "run", "rec", "movielens", "ir", "0.1", "--preset", size["preset"], "--seeds",
                 *map(str, size["seeds"]), "--methods", *METHODS, "--out", str(out), "--device", "cpu"]
    if cache_dir is not None:
        arguments += ["--cache-dir", cache_dir]
    command = [sys.executable, *arguments] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *arguments]
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    load, started = reporting.load_average(), time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=7200)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"the {processes}-process run failed:\n{completed.stdout[-2000:]}{completed.stderr[-4000:]}")
    return {"processes": processes, "seconds": seconds, "load_before": load, "load_after": reporting.load_average(),
            "frame": pd.read_csv(out / "all_runs.csv")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("parallel_experiment", __doc__.splitlines()[0], sizes=("tiny", "default"))
    arguments.add_argument("--cache-dir", default=None, help="where the base is cached (default: the arm's)")
    arguments = arguments.parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    size = SIZES[arguments.size]
    from eraserlab.datasets import data_dir
    from eraserlab.rec.experiment import PRESETS
    from eraserlab.rec.pretrain import pretrain_base

    preset = PRESETS[size["preset"]]
    pretrain_base("movielens", data_dir(None), preset.model, preset.pretrain, cache_dir=arguments.cache_dir,
                  device="cpu", progress=False)
    with tempfile.TemporaryDirectory() as folder:
        runs = [_launch(w, size, Path(folder) / f"w{w}", arguments.cache_dir) for w in (1, 2)]
    one, two = (run.pop("frame") for run in runs)
    differing = [c for c in one.columns if c not in NOT_RESULTS and not one[c].equals(two[c])]
    if differing:
        raise RuntimeError(f"the 2-process experiment's results differ from one process's in {differing}")
    speed_up = runs[0]["seconds"] / runs[1]["seconds"]
    rows = [{"processes": r["processes"], "wall s": r["seconds"], "speed-up": runs[0]["seconds"] / r["seconds"],
             "load before": r["load_before"][0]} for r in runs]
    record = {"settings": {**size, "methods": METHODS, "experiment": "rec movielens ir 0.1"}, "runs": runs,
              "speed_up_2_processes": speed_up, "results_equal": True,
              "note": "one torch thread per process; the base pre-trained before, not timed"}
    path = reporting.write_record(arguments, record, started, machine)
    print(reporting.format_table(rows, list(rows[0])))
    print(f"load average before {machine['load_average']}, after {reporting.load_average()}; wrote {path}")
    return {"path": path, "record": record}


if __name__ == "__main__":
    main()
