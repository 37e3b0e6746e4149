"""The GPU path on several GPUs: the data-parallel erase's unit costs and one erase, per number of ranks.

The multi-GPU variant of :mod:`benchmarks.gpu_path` (same model: LLaMA2-7B-shaped, bf16, LoRA
r = 8 on q_proj and v_proj, a full replica per GPU; ``--size tiny`` on the CPU). For each rank
count W in ``--processes`` it launches ``torchrun --standalone --nproc_per_node W`` (NCCL on
GPUs, gloo on the CPU) and measures, as the slowest rank's median wall time:

1. one Hessian-vector product over a global batch of B·W examples (each rank B: weak scaling —
   the stochastic solvers' step with W times the examples);
2. the gradient over all ``train_set`` examples (each rank n/W: strong scaling — b and every
   full-data product of CG scale like it);
3. one all-reduce of a vector of the adapter's size (the communication per product);
4. one ``eraserlib.erase`` (instance removal, llmeraser, global batch B·W, ``--steps`` steps);
5. from these, the erase and the (ideal data-parallel) retrain times of a realistic request.

    python -m benchmarks.gpu_path_multi [--size tiny|llama-7b] [--processes 1 2 4 8] [--out FILE]

GPU figures are only what a GPU run writes; on the CPU (``--size tiny --device cpu``) the same
code runs in seconds, which the test suite checks.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import gpu_path, reporting

ROOT = Path(__file__).resolve().parent.parent


def _median_max(function, repeats: int, device: torch.device) -> float:
    """Median over ``repeats`` (after a warm-up) of the slowest rank's seconds for ``function()``."""
    import torch.distributed as dist

    function()
    seconds = []
    for _ in range(repeats):
        dist.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64,
                               device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        seconds.append(float(elapsed))
    return statistics.median(seconds)


def worker(arguments) -> None:
    """One rank of one rank count: the measurements above; rank 0 writes them to ``--worker-out``."""
    import torch.distributed as dist

    import eraserlib
    from eraserlib.objective import TrainingObjective

    cuda = arguments.device == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    shape = gpu_path.SHAPES[arguments.size]
    dtype = torch.bfloat16 if cuda else torch.float32
    started = time.perf_counter()
    model = gpu_path.build_model(shape, device, dtype, arguments.checkpoint, arguments.rank, arguments.seed)
    build_seconds = time.perf_counter() - started
    vocabulary = model.config.vocab_size
    generator = torch.Generator().manual_seed(arguments.seed)  # the same data on every rank
    train_data = [torch.randint(3, vocabulary, (shape["sequence_length"],), generator=generator)
                  for _ in range(max(shape["train_set"], shape["batch_size"] * world))]
    B = shape["batch_size"]
    objective = TrainingObjective(model, gpu_path.language_model_loss, train_data, batch_size=B, compute_dtype=None,
                                  seed=arguments.seed)
    p = objective.num_parameters
    vector = torch.randn(p, generator=generator).to(device)
    repeats = shape["repeats"]
    with objective.evaluation():
        units = {
            "hvp_global_batch_s": _median_max(lambda: objective.data_hvp(train_data[:B * world], vector), repeats,
                                              device),
            "full_gradient_s": _median_max(lambda: objective.loss_sum_gradient(train_data), 1, device),
            "all_reduce_s": _median_max(lambda: objective.group.all_reduce(vector), repeats, device),
        }
    k = shape["request"]
    erase: dict[str, Any] = {"max_steps": arguments.steps, "batch_size": B * world}
    try:
        dist.barrier()
        start = time.perf_counter()
        result = eraserlib.erase(model, gpu_path.language_model_loss, train_data,
                                 eraserlib.InstanceRemoval(train_data[-k:]), solver="llmeraser", batch_size=B * world,
                                 curvature="hessian",
                                 compute_dtype=None, options={"max_steps": arguments.steps}, seed=arguments.seed,
                                 progress=False)
        erase.update(seconds=time.perf_counter() - start, steps=result.diagnostics["steps"],
                     stop_reason=result.diagnostics["stop_reason"], hvp_count=result.diagnostics["hvp_count"],
                     delta_norm=result.diagnostics["delta_norm"])
    except (eraserlib.EraserError, torch.OutOfMemoryError) as error:  # recorded; the other rank counts still run
        erase["error"] = f"{type(error).__name__}: {error}"[:500]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else math.nan
    if rank == 0:
        record = {"world_size": world, "build_seconds": build_seconds, "trainable_parameters": p,
                  "train_set": len(train_data), "per_rank_batch": B, **units, "erase": erase,
                  "peak_memory_gib_rank0": peak}
        (arguments.worker_out / "record.json").write_text(json.dumps(record))
    dist.destroy_process_group()


def _launch(arguments, processes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "benchmarks.gpu_path_multi", "--worker", "--worker-out", folder, "--size", arguments.size,
                   "--device", arguments.device, "--rank", str(arguments.rank), "--steps", str(arguments.steps),
                   "--seed", str(arguments.seed)] + (["--checkpoint", arguments.checkpoint] if arguments.checkpoint
                                                     else [])
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                   timeout=arguments.timeout)
        if completed.returncode != 0:
            return {"world_size": processes, "error": (completed.stdout[-1000:] + completed.stderr[-3000:])}
        return json.loads((Path(folder) / "record.json").read_text())


def _project(run: dict[str, Any], arguments, shape: dict[str, Any]) -> dict[str, Any]:
    """Erase and ideal data-parallel retrain seconds of the realistic request, from one rank count's unit costs."""
    n, world, B = arguments.train_examples, run["world_size"], shape["batch_size"]
    k = max(1, round(arguments.request_share * n))
    gradient_per_batch = run["full_gradient_s"] / math.ceil(run["train_set"] / (B * world))  # one B·W step
    steps = run["erase"].get("steps") or arguments.steps
    erase_s = math.ceil(k / (B * world)) * gradient_per_batch + (20 + steps) * run["hvp_global_batch_s"]
    retrain_s = arguments.epochs * math.ceil(n / (B * world)) * gradient_per_batch
    return {"train_examples": n, "request_examples": k, "solver_steps": steps, "erase_seconds": erase_s,
            "retrain_seconds": retrain_s, "retrain_over_erase": retrain_s / erase_s}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("gpu_path_multi", __doc__.splitlines()[0], sizes=("tiny", "llama-7b"))
    arguments.add_argument("--processes", type=int, nargs="+", default=None,
                           help="rank counts to measure (default: 1, 2, 4, … up to the GPUs present)")
    arguments.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    arguments.add_argument("--checkpoint", default=None, help="local Hugging Face model folder (overrides the shape)")
    arguments.add_argument("--rank", type=int, default=8, help="LoRA rank")
    arguments.add_argument("--steps", type=int, default=None, help="llmeraser steps of the erase (default: the "
                                                                   "shape's max_steps)")
    arguments.add_argument("--timeout", type=float, default=580.0, help="seconds one rank count may take")
    arguments.add_argument("--train-examples", type=int, default=10_000, help="n of the projected request")
    arguments.add_argument("--request-share", type=float, default=0.1, help="k/n of that request")
    arguments.add_argument("--epochs", type=int, default=5, help="epochs of the retrain it is compared with")
    arguments.add_argument("--worker", action="store_true", help="(internal) run as one rank under torchrun")
    arguments.add_argument("--worker-out", type=Path, default=None, help="(internal) the worker's output folder")
    arguments.set_defaults(size=None)
    arguments = arguments.parse_args(argv)
    if arguments.device == "auto":
        arguments.device = "cuda" if torch.cuda.is_available() else "cpu"
    if arguments.size is None:
        arguments.size = "llama-7b" if arguments.device == "cuda" else "tiny"
    shape = gpu_path.SHAPES[arguments.size]
    if arguments.steps is None:
        arguments.steps = shape["max_steps"]
    if arguments.worker:
        reporting.setup_torch(int(os.environ.get("OMP_NUM_THREADS", "1")))
        worker(arguments)
        return {}
    if arguments.processes is None:
        available = torch.cuda.device_count() if arguments.device == "cuda" else 2
        arguments.processes = [w for w in (1, 2, 4, 8, 16) if w <= max(1, available)]
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    runs = [_launch(arguments, w) for w in arguments.processes]
    rows = []
    for run in runs:
        if "error" in run:
            rows.append({"ranks": run["world_size"], "error": run["error"][-200:]})
            continue
        run["projection"] = _project(run, arguments, shape)
        rows.append({"ranks": run["world_size"], "HVP (B·W) s": run["hvp_global_batch_s"],
                     "full gradient s": run["full_gradient_s"], "all-reduce s": run["all_reduce_s"],
                     "erase s": run["erase"].get("seconds"), "erase s, projected": run["projection"]["erase_seconds"],
                     "retrain / erase": run["projection"]["retrain_over_erase"]})
    record = {"shape": shape, "device": arguments.device, "checkpoint": arguments.checkpoint, "runs": runs}
    path = reporting.write_record(arguments, record, started, machine)
    columns = sorted({c for row in rows for c in row}, key=lambda c: list(rows[0]).index(c) if c in rows[0] else 99)
    print(reporting.format_table(rows, columns))
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return {"path": path, "record": record}


if __name__ == "__main__":
    main()
