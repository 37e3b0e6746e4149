"""The re-linearised Gauss–Newton erase on the settings where the default book leaves it out, judged by the protocol.

The default book runs ``llmeraser_gn_steps`` (Gauss–Newton curvature, up to k re-linearised steps on the
corrected objective) in the response-correction chapter only: each step costs about a one-step erase. This
benchmark runs it on the book's other settings, and on Last.fm QM (which only the full profile runs), with
Corrupted, the K retrains and the two one-step erases, as the chapters run them: 3 seeds of one request
(``request_seed=0``), the seeds sharing their retrains, the book's presets. With the same bases and thread
counts (one machine) the same seeds and request give the chapters' Corrupted adapters and retrains; across
machines the float round-off differs and so do the adapters, so compare methods within a record. Reported
per setting and method: the protocol's normalised residual r per distance (0: as close as another
retraining, 1: no better than Corrupted), mean and sd over seeds, the cost as a share of the seed's
retraining wall-clock, and the request's effect with in how many seeds it is resolved.

    python -m benchmarks.relinearised_erase [--size tiny|default] [--settings movielens:ir spurious:rc ...]
        [--cache-dir DIR]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import reporting
from eraserlib.storage import write_atomically

METHODS = ["retrain", "llmeraser", "llmeraser_gn", "llmeraser_gn_steps"]
DISTANCES = ("jsd_test", "jsd_corrected", "forget_loss")
#: Per size: the seeds, the settings (arm, data set or benchmark, task, share) and the preset.
SIZES = {
    "tiny": {"seeds": [0], "preset": "tiny",
             "settings": [("rec", "movielens", "ir", 0.1), ("mllm", "spurious", "rc", 0.4)]},
    "default": {"seeds": [0, 1, 2], "preset": "small",
                "settings": [("rec", "movielens", "ir", 0.1), ("rec", "bookcrossing", "ir", 0.1),
                             ("rec", "movielens", "qm_removal", 0.1), ("rec", "lastfm", "qm_removal", 0.1),
                             ("mllm", "spurious", "rc", 0.4),
                             ("mllm", "relation", "rc", 0.4)]},
}


def run_setting(arm: str, name: str, task: str, ratio: float, seeds: list[int], preset: str,
                cache_dir: str | None) -> pd.DataFrame:
    """Every seed of one request, sharing the retrains (as ``eraserbook.chapters.run_seeds``)."""
    from eraserlab.protocol import RetrainPool

    pool = RetrainPool(seeds)
    frames = []
    for seed in seeds:
        if arm == "rec":
            from eraserlab.rec.experiment import run_experiment

            frame = run_experiment(name, task, ratio, methods=METHODS, seed=seed, model_size=preset, progress=False,
                                   request_seed=0, retrain_pool=pool, cache_dir=cache_dir)
        else:
            from eraserlab.mllm.experiment import run_experiment

            frame = run_experiment(name, task, ratio, methods=METHODS, seed=seed, preset=preset, progress=False,
                                   request_seed=0, retrain_pool=pool, cache_dir=cache_dir)
        frames.append(frame)
        print(f"  {name} {task} seed {seed}: done", flush=True)
    return pd.concat(frames, ignore_index=True)


def summary(frame: pd.DataFrame, setting: str) -> list[dict[str, Any]]:
    """Per method: r per distance (mean, sd over seeds) and the cost share of a retraining."""
    from eraserlab.protocol import cost_share

    frame = frame.assign(cost_share=cost_share(frame))
    rows = []
    for method, part in frame.groupby("method", sort=False):
        row: dict[str, Any] = {"setting": setting, "method": method, "seeds": int(part["seed"].nunique()),
                               "cost_share": float(part["cost_share"].mean()), "time_s": float(part["time_s"].mean())}
        if "task_learnt" in part:  # the multimodal arm: did Retrain beat the best constant answer (else not judged)
            row["task_learnt_seeds"] = int(part.groupby("seed")["task_learnt"].first().astype(bool).sum())
            row["retrain_accuracy"] = float(part["retrain_accuracy"].mean())
            row["constant_accuracy"] = float(part["constant_accuracy"].mean())
        for d in DISTANCES:
            if f"r/{d}" in part:
                row[f"r/{d}"] = float(part[f"r/{d}"].mean())
                row[f"r_sd/{d}"] = float(part[f"r/{d}"].std(ddof=1)) if len(part) > 1 else None
                row[f"effect/{d}"] = float(part[f"effect/{d}"].mean())
                row[f"effect_low/{d}"] = float(part[f"effect_low/{d}"].min())  # the envelope of the seeds' intervals
                row[f"effect_high/{d}"] = float(part[f"effect_high/{d}"].max())
                # seeds whose request moved this distance beyond retraining's noise: r is judged only where all do
                row[f"resolved_seeds/{d}"] = int(part.groupby("seed")[f"effect_resolved/{d}"].first().astype(bool).sum())
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("relinearised_erase", __doc__.splitlines()[0])
    arguments.add_argument("--settings", nargs="*", default=None,
                           help="name:task pairs of the size's settings to run (default: all of them)")
    arguments.add_argument("--cache-dir", default=None, help="where the bases are cached (default: the arms')")
    arguments = arguments.parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    size = SIZES[arguments.size]
    settings = size["settings"]
    if arguments.settings is not None:
        known = {f"{name}:{task}": (arm, name, task, ratio) for arm, name, task, ratio in settings}
        unknown = sorted(set(arguments.settings) - set(known))
        if unknown:
            raise SystemExit(f"unknown settings {unknown}; this size has {sorted(known)}")
        settings = [known[s] for s in arguments.settings]
    rows, frames = [], []
    for arm, name, task, ratio in settings:
        frame = run_setting(arm, name, task, ratio, size["seeds"], size["preset"], arguments.cache_dir)
        rows.extend(summary(frame, f"{name} {task} {ratio:g}"))
        frames.append(frame.assign(arm=arm, setting=f"{name} {task} {ratio:g}"))
    path = reporting.write_record(arguments, {"seeds": size["seeds"], "preset": size["preset"],
                                              "settings": [list(s) for s in settings], "rows": rows}, started, machine)
    print(reporting.format_table(rows, ["setting", "method", "r/jsd_test", "r/jsd_corrected", "r/forget_loss",
                                        "cost_share"]))
    runs = Path(path).with_suffix(".runs.csv")  # every run's row (method, seed), for analyses the summary lacks
    write_atomically(runs, pd.concat(frames, ignore_index=True).to_csv(index=False))
    print(f"wrote {path} and {runs}")
    return {"path": path, "rows": rows, "runs": runs}


if __name__ == "__main__":
    main()
