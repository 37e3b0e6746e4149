"""``python -m eraserlab run``: one experiment — one request, every method, several run seeds — from the shell.

    python -m eraserlab run rec movielens rc 0.1 --seeds 0 1 2 --out results/ml-rc
    torchrun --standalone --nproc_per_node 3 -m eraserlab run rec movielens rc 0.1 --seeds 0 1 2 --out results/ml-rc
    python -m eraserlab run mllm spurious rc 0.4 --seeds 0 1 2 --out results/spurious-rc --preset tiny

Under ``torchrun`` the seeds are shared out over the ranks and the retrains shared between them
(:mod:`eraserlab.parallel`); the numbers are those of one process. Writes ``OUT/all_runs.csv`` (one
row per method and seed) and ``OUT/runs/`` (each run's frame, comparison table and record), and
prints r per method and distance (mean over seeds) with the cost as a share of a retraining.
Exit code 0 on success, 1 on an error (its message on stderr; nothing is written), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pandas as pd

DISTANCES = ("jsd_test", "jsd_corrected", "forget_loss")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eraserlab", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one experiment (one request, several seeds)")
    run.add_argument("arm", choices=["rec", "mllm"], help="rec: recommendation (LLM4Rec); mllm: multimodal")
    run.add_argument("name", help="rec: movielens, lastfm or bookcrossing; mllm: spurious or relation")
    run.add_argument("task", help="rec: ir, qm_removal, qm_replacement or rc; mllm: qm or rc")
    run.add_argument("ratio", type=float, help="share of the training examples the request touches")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (default: 0 1 2)")
    run.add_argument("--out", required=True, help="a new (or empty) folder for the results")
    run.add_argument("--preset", default="small", help="the arm's preset: small (default) or tiny")
    run.add_argument("--methods", nargs="+", default=None, help="methods to run (default: all for the task)")
    run.add_argument("--leave-out", nargs="+", default=[], help="methods not to run")
    run.add_argument("--request-seed", type=int, default=0,
                     help="the request every seed answers (default 0; -1: each seed draws its own)")
    run.add_argument("--retrains", type=int, default=None, help="K, the retrains each seed compares with")
    run.add_argument("--data-dir", default=None, help="the data folder (default: ERASER_DATA_DIR or ../shared/data)")
    run.add_argument("--cache-dir", default=None, help="where pre-trained bases are cached")
    run.add_argument("--base-model", default=None, help="a local Hugging Face checkpoint instead of the small base")
    run.add_argument("--device", default=None, help="cpu, cuda... (default: the arm's)")
    run.add_argument("--progress", action="store_true", help="progress bars (off by default: logs stay quiet)")
    return parser


def _experiment(arm: str):
    if arm == "rec":
        from eraserlab.rec.experiment import run_experiment
    else:
        from eraserlab.mllm.experiment import run_experiment
    return run_experiment


def _options(args: argparse.Namespace) -> dict:
    options = {"ratio": args.ratio, "methods": args.methods, "leave_out": list(args.leave_out),
               "retrains": args.retrains, "data_dir": args.data_dir, "cache_dir": args.cache_dir,
               "base_model": args.base_model, "progress": args.progress}
    options["model_size" if args.arm == "rec" else "preset"] = args.preset
    if args.device is not None:
        options["device"] = args.device
    return options


def summary(frame: pd.DataFrame) -> str:
    """r per method and distance (mean over seeds) and the cost share of the seed's retraining, as text."""
    from eraserlab.protocol import cost_share

    costs = cost_share(frame) if "retrain" in set(frame.method) else pd.Series(float("nan"), index=frame.index)
    lines = ["method            " + "".join(f"{'r ' + d:>18}" for d in DISTANCES) + f"{'cost (x Retrain)':>18}"]
    for method, part in frame.groupby("method", sort=False):
        cells = [f"{part[f'r/{d}'].mean():18.2f}" if f"r/{d}" in part else f"{'-':>18}" for d in DISTANCES]
        lines.append(f"{method:<18}" + "".join(cells) + f"{costs[part.index].mean():18.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: a hub name must not start a download
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    from eraserlab.parallel import launched, run_seeds

    rank = 0
    try:
        with launched() as (rank, world_size):
            frame = run_seeds(_experiment(args.arm), args.name, args.task, seeds=args.seeds, out=args.out,
                              request_seed=None if args.request_seed < 0 else args.request_seed, **_options(args))
    except Exception as error:  # noqa: BLE001 - a message and an exit code, not a traceback
        print(f"error (rank {rank}): {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if rank == 0:
        print(summary(frame))
        print(f"wrote {args.out}/all_runs.csv ({len(frame)} rows; {world_size} process{'es' if world_size > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
