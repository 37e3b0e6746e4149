"""The CPU speed-up of one erase on 2 processes over 1 (torchrun, gloo): data-parallel sums, replicated solver.

One erase (instance removal, CG with a fixed number of iterations, so that every run does the
same work) on a tiny LoRA Llama (:mod:`eraserlib.toy.tiny_lora`, random adapter, fixed damping), run
by ``python -m torch.distributed.run --standalone --nproc_per_node W`` for W = 1 and 2 with one
torch thread per process, and (default size) for context in one process with 2 threads
(intra-op parallelism instead of data parallelism). Each configuration runs ``repeats`` erases after a warm-up one;
the figure is the median of the slowest rank's wall time. The ranks' answers are compared with
the one-process answer (relative difference of ΔΘ).

The machine this runs on has 2 cores shared with other work: its load average, recorded before
and after, bounds what a second process can gain. GPU figures: ``benchmarks.gpu_path_multi``.

    python -m benchmarks.distributed [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import reporting

ROOT = Path(__file__).resolve().parent.parent
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"num_examples": 32, "hidden_size": 16, "sequence_length": 8, "batch_size": 8, "iterations": 3,
             "request": 4, "repeats": 1, "damping": 1.0},
    "default": {"num_examples": 1024, "hidden_size": 64, "sequence_length": 32, "batch_size": 32, "iterations": 10,
                "request": 32, "repeats": 3, "damping": 3.0},
}
# The adapter is random (no training: every rank builds the same one from the seed), so its Hessian is
# indefinite; the damping keeps H + λI positive definite for CG. The default size's Lanczos spectrum
# on 256 examples was about [-1.5, 1.3] (``estimate_spectrum``), hence λ = 3.


def _problem(size: dict[str, Any]):
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, make_sequences

    config = TinyLoraConfig(num_examples=size["num_examples"], hidden_size=size["hidden_size"],
                            sequence_length=size["sequence_length"], heads=4, rank=4)
    return build_model(config), make_sequences(config)


def worker(size_name: str, out: Path) -> None:
    """One rank: warm-up, then ``repeats`` timed erases; rank 0 writes the times and ΔΘ."""
    import torch.distributed as dist

    import eraserlib
    from eraserlib.toy.tiny_lora import language_model_loss

    size = SIZES[size_name]
    dist.init_process_group("gloo")
    model, data = _problem(size)
    request = eraserlib.InstanceRemoval(data[:size["request"]])
    options = {"max_iterations": size["iterations"], "tolerance": 0.0}

    def once():
        return eraserlib.erase(model, language_model_loss, data, request, solver="cg", options=options,
                               curvature="hessian",
                               damping=size["damping"],
                               batch_size=size["batch_size"], progress=False)

    once()  # warm-up: allocator, first-call costs
    seconds, result = [], None
    for _ in range(size["repeats"]):
        dist.barrier()
        start = time.perf_counter()
        result = once()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the erase ends when its slowest rank does
        seconds.append(float(elapsed))
    if dist.get_rank() == 0:
        torch.save(result.delta, out / "delta.pt")
        (out / "times.json").write_text(json.dumps({"seconds": seconds, "diagnostics": {
            k: result.diagnostics[k] for k in ("hvp_count", "hvp_examples", "gradient_count", "steps", "world_size")}}))
    dist.destroy_process_group()


def _launch(size_name: str, processes: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "benchmarks.distributed", "--worker", "--size", size_name, "--worker-out", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=3600)
        if completed.returncode != 0:
            raise RuntimeError(f"the {processes}-process run failed:\n{completed.stdout[-2000:]}{completed.stderr[-4000:]}")
        record = json.loads((out / "times.json").read_text())
        record["delta"] = torch.load(out / "delta.pt")
    record.update(processes=processes, threads_per_process=threads, launch_seconds=time.perf_counter() - started,
                  median_seconds=statistics.median(record["seconds"]))
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("distributed", __doc__.splitlines()[0], sizes=("tiny", "default"))
    arguments.add_argument("--worker", action="store_true", help=argparse_hidden())
    arguments.add_argument("--worker-out", type=Path, default=None, help=argparse_hidden())
    arguments = arguments.parse_args(argv)
    if arguments.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        reporting.setup_torch(torch.get_num_threads())
        worker(arguments.size, arguments.worker_out)
        return {}
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    runs = [_launch(arguments.size, 1, 1), _launch(arguments.size, 2, 1)]
    if arguments.size != "tiny":  # context, not needed to check that the command runs
        runs.append(_launch(arguments.size, 1, 2))
    one = runs[0]
    flat = {id(r): torch.cat([v.reshape(-1).double() for v in r.pop("delta").values()]) for r in runs}
    reference = flat[id(one)]
    rows = []
    for run in runs:
        run["relative_difference_to_one_process"] = float((flat[id(run)] - reference).norm() / reference.norm())
        run["speed_up_over_one_process"] = one["median_seconds"] / run["median_seconds"]
        rows.append({"processes × threads": f"{run['processes']} × {run['threads_per_process']}",
                     "erase s (median)": run["median_seconds"], "speed-up": run["speed_up_over_one_process"],
                     "ΔΘ rel. diff": run["relative_difference_to_one_process"],
                     "HVP passes (all ranks)": run["diagnostics"]["hvp_count"]})
    record = {"settings": SIZES[arguments.size], "solver": "cg", "runs": runs,
              "speed_up_2_processes": runs[1]["speed_up_over_one_process"],
              "note": "one torch thread per process; the 1 × 2 row is intra-op threading in one process"}
    path = reporting.write_record(arguments, record, started, machine)
    print(reporting.format_table(rows, list(rows[0])))
    print(f"load average before {machine['load_average']}, after {reporting.load_average()}; wrote {path}")
    return {"path": path, "record": record}


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
