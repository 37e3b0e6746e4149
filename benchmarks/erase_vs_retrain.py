"""Erase vs retrain: wall-clock and peak memory of every method on the same request, in one run.

Backend ``rec`` (the default): the recommendation experiment
(:func:`eraserlab.rec.experiment.run_experiment`) for instance removal (Book-Crossing),
query modification (MovieLens, last history item removed) and response correction
(MovieLens), at 1%, 5% and 10% of the training examples. It runs Corrupted, Retrain,
LLMEraser, Gradient Ascent (IR) or fine-tuning on the corrected examples (QM/RC), and SISA,
each timed with :mod:`eraserlab.profiling` (wall-clock; peak RSS above the start on the CPU,
peak allocated CUDA memory on a GPU).

Backend ``tiny_lora`` (used when the recommendation arm cannot be imported, or on request):
the tiny LoRA Llama of :mod:`eraserlib.toy.tiny_lora` with the three request types built as in
``tests/test_solvers.py`` (QM changes the first half of a sequence, RC the second half);
methods Corrupted, Retrain and LLMEraser.

Reported per request: Retrain/LLMEraser time ratio, LLMEraser/Retrain peak-memory ratio, and
whether the erased model is closer to Retrain than Corrupted is (mean Jensen–Shannon
divergence to Retrain's predictions on the test examples; for ``tiny_lora``: the test loss
gap and the cosine of the adapter change with Retrain's). The issue's goal: ≥ 40× faster than
Retrain at ≤ 2× its peak memory, and closer to Retrain than Corrupted. At laptop sizes
retraining is cheap (a few hundred examples), so the ratio measured here says how the costs
scale, not what they are at the paper's n — see ``benchmarks.gpu_path`` for that projection.

    python -m benchmarks.erase_vs_retrain [--size tiny|default] [--backend rec|tiny_lora]
        [--tasks bookcrossing:ir movielens:qm_removal movielens:rc] [--ratios 0.01 0.05 0.1]
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

import eraserlib
from benchmarks import reporting

TASKS = ["bookcrossing:ir", "movielens:qm_removal", "movielens:rc"]
RATIOS = [0.01, 0.05, 0.1]
SIZES = {"tiny": {"model_size": "tiny", "tiny_lora_n": 48, "train_steps": 30},
         "default": {"model_size": "small", "tiny_lora_n": 512, "train_steps": 240}}


def rec_available() -> bool:
    """Whether the recommendation experiment can be imported (it is built beside this suite)."""
    try:
        from eraserlab.rec.experiment import run_experiment  # noqa: F401
    except ImportError:
        return False
    return True


def run_rec(tasks: list[str], ratios: list[float], size: str, seed: int, cache_dir: str | None) -> list[dict]:
    """One run_experiment per (task, ratio); returns one row per (request, method)."""
    from eraserlab.rec.experiment import run_experiment

    rows = []
    for spec in tasks:
        dataset, task = spec.split(":")
        for ratio in ratios:
            start = time.perf_counter()
            frame = run_experiment(dataset, task, ratio=ratio, seed=seed, model_size=SIZES[size]["model_size"],
                                   progress=False, cache_dir=cache_dir)
            for record in frame.to_dict(orient="records"):
                rows.append({key: record.get(key) for key in (
                    "dataset", "task", "ratio", "seed", "method", "time_s", "peak_memory_mb", "memory_kind",
                    "jsd_test", "jsd_corrected", "delta_cosine", "delta_relative_error", "test_loss",
                    "hit_ratio_at_1", "auc", "n_train", "n_request", "load_1min", "device", "setup_time_s")})
            print(f"  {dataset} {task} {ratio:g}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def run_tiny_lora(ratios: list[float], size: str, seed: int) -> list[dict]:
    """Corrupted / Retrain / LLMEraser on the tiny LoRA Llama for IR, QM and RC."""
    from eraserlab.profiling import measure
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences
    from eraserlib.training import TrainConfig, train

    settings = SIZES[size]
    config = TinyLoraConfig(num_examples=settings["tiny_lora_n"], seed=seed)
    clean = make_sequences(config)
    test = make_sequences(config, num_examples=64, seed_offset=7)
    replacements = make_sequences(config, seed_offset=99)
    train_config = TrainConfig(max_steps=settings["train_steps"], lr=1e-2, batch_size=32, max_grad_norm=None, seed=seed)
    rows = []
    for kind in ("instance_removal", "query_modification", "response_correction"):
        for ratio in ratios:
            k = max(1, round(ratio * len(clean)))
            chosen = torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed + int(1e4 * ratio)))[:k]
            chosen = sorted(chosen.tolist())
            if kind == "instance_removal":
                trained_on = clean
                retrain_on = [z for i, z in enumerate(clean) if i not in set(chosen)]
                request = eraserlib.InstanceRemoval([clean[i] for i in chosen])
            else:
                half = config.sequence_length // 2
                corrupt = {i: (torch.cat([replacements[i][:half], clean[i][half:]]) if kind == "query_modification"
                               else torch.cat([clean[i][:half], replacements[i][half:]])) for i in chosen}
                trained_on = [corrupt.get(i, z) for i, z in enumerate(clean)]
                retrain_on = clean
                old, new = [corrupt[i] for i in chosen], [clean[i] for i in chosen]
                request = (eraserlib.QueryModification if kind == "query_modification"
                           else eraserlib.ResponseCorrection)(old, new)
            models, costs = {}, {}
            for method, data in (("corrupted", trained_on), ("retrain", retrain_on)):
                model = build_model(config)  # same seeded initial adapter for both
                with measure() as usage:
                    train(model, language_model_loss, data, train_config, progress=False)
                models[method], costs[method] = model, usage
            model = build_model(config)
            model.load_state_dict(models["corrupted"].state_dict())
            with measure() as usage:
                result = eraserlib.erase(model, language_model_loss, trained_on, request, batch_size=32, seed=seed,
                                         curvature="hessian", progress=False)
                eraserlib.apply_delta(model, result.delta)
            models["llmeraser"], costs["llmeraser"] = model, usage
            reference = _change(models["retrain"], models["corrupted"])
            with torch.no_grad():
                batch = torch.stack(test)
                losses = {m: float(language_model_loss(models[m], batch)) for m in models}
            for method in ("corrupted", "retrain", "llmeraser"):
                change = _change(models[method], models["corrupted"])
                rows.append({
                    "dataset": "tiny_lora", "task": kind, "ratio": ratio, "seed": seed, "method": method,
                    "time_s": costs[method].wall_time_s, "peak_memory_mb": costs[method].peak_memory_mb,
                    "memory_kind": costs[method].memory_kind, "test_loss": losses[method],
                    "test_loss_gap_to_retrain": abs(losses[method] - losses["retrain"]),
                    "delta_cosine": (float(torch.nn.functional.cosine_similarity(change, reference, dim=0))
                                     if change.norm() > 0 else math.nan),
                    "n_train": len(trained_on), "n_request": k, "load_1min": reporting.load_average()[0],
                    "solver_stop": result.diagnostics.get("stop_reason") if method == "llmeraser" else None,
                })
            print(f"  tiny_lora {kind} {ratio:g} done", flush=True)
    return rows


def _change(model, reference) -> torch.Tensor:
    theirs = dict(reference.named_parameters())
    return torch.cat([(p.detach() - theirs[name].detach()).reshape(-1) for name, p in model.named_parameters()
                      if p.requires_grad]).double()


def verdicts(rows: list[dict]) -> list[dict]:
    """Per request: time and memory ratios, and whether LLMEraser is closer to Retrain than Corrupted."""
    out = []
    keys = sorted({(r["dataset"], r["task"], r["ratio"]) for r in rows}, key=str)
    for dataset, task, ratio in keys:
        by = {r["method"]: r for r in rows if (r["dataset"], r["task"], r["ratio"]) == (dataset, task, ratio)}
        erase, retrain, corrupted = by.get("llmeraser"), by.get("retrain"), by.get("corrupted")
        if not (erase and retrain and corrupted):
            continue
        if erase.get("jsd_test") is not None:
            closer = erase["jsd_test"] < corrupted["jsd_test"]
            closeness = "jsd_test"
        else:
            closer = erase["test_loss_gap_to_retrain"] < corrupted["test_loss_gap_to_retrain"]
            closeness = "test_loss_gap_to_retrain"
        memory_ratio = (erase["peak_memory_mb"] / retrain["peak_memory_mb"]
                        if retrain["peak_memory_mb"] and retrain["peak_memory_mb"] > 0 else math.nan)
        out.append({"dataset": dataset, "task": task, "ratio": ratio, "n_train": erase.get("n_train"),
                    "retrain_s": retrain["time_s"], "llmeraser_s": erase["time_s"],
                    "retrain/llmeraser": retrain["time_s"] / erase["time_s"],
                    "llmeraser_mb": erase["peak_memory_mb"], "retrain_mb": retrain["peak_memory_mb"],
                    "memory llmeraser/retrain": memory_ratio, "closer_than_corrupted": bool(closer),
                    "closeness_measure": closeness, "delta_cosine": erase.get("delta_cosine"),
                    "40x_faster": retrain["time_s"] / erase["time_s"] >= 40,
                    "memory_within_2x": bool(memory_ratio <= 2) if math.isfinite(memory_ratio) else None})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = reporting.parser("erase_vs_retrain", __doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["rec", "tiny_lora"], default=None,
                        help="rec: the recommendation experiment (default when importable); tiny_lora otherwise")
    parser.add_argument("--tasks", nargs="+", default=None, help="dataset:task pairs (rec backend)")
    parser.add_argument("--ratios", nargs="+", type=float, default=None)
    parser.add_argument("--cache-dir", default=None, help="where the rec arm caches its pre-trained bases")
    arguments = parser.parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    backend = arguments.backend or ("rec" if rec_available() else "tiny_lora")
    tiny = arguments.size == "tiny"
    ratios = arguments.ratios or ([0.1] if tiny else RATIOS)
    if backend == "rec":
        tasks = arguments.tasks or (["movielens:rc"] if tiny else TASKS)
        rows = run_rec(tasks, ratios, arguments.size, arguments.seed, arguments.cache_dir)
    else:
        rows = run_tiny_lora(ratios, arguments.size, arguments.seed)
    goal = verdicts(rows)
    path = reporting.write_record(arguments, {"backend": backend, "ratios": ratios, "rows": rows, "goal": goal},
                                  started, machine)
    print(f"backend {backend}")
    print(reporting.format_table(rows, ["dataset", "task", "ratio", "method", "time_s", "peak_memory_mb",
                                        "jsd_test", "test_loss", "delta_cosine"]))
    print("\nGoal: >= 40x faster than Retrain at <= 2x its peak memory, closer to Retrain than Corrupted")
    print(reporting.format_table(goal, ["dataset", "task", "ratio", "n_train", "retrain_s", "llmeraser_s",
                                        "retrain/llmeraser", "memory llmeraser/retrain", "closer_than_corrupted",
                                        "40x_faster", "memory_within_2x"]))
    print(f"load average {machine['load_average']} -> {reporting.load_average()}; wrote {path}")
    return {"path": path, "goal": goal}


if __name__ == "__main__":
    main()
