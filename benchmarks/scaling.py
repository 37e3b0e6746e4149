"""How the cost of one erase grows: with the adapter, with the request, and with several requests.

1. **Adapter size.** LoRA rank r and target modules (q,v → q,k,v,o → every linear layer) on
   one small Llama: seconds per gradient and per HVP (median of repeats) and one erase at a
   fixed amount of work (llmeraser, ``max_steps`` fixed, tolerance 0, so every size does the
   same number of HVPs). An HVP is a forward and two backward passes through the *base* model
   plus O(p) adapter terms, so at adapter sizes far below the base's its cost grows much
   slower than p; the solver's own vector arithmetic is O(p).
2. **Request size.** k removed examples: b costs ⌈k/B⌉ gradient passes, the solver's cost does
   not depend on k.
3. **Several requests.** R disjoint removals: one joint solve for their union, R independent
   solves at θ̂ (whose sum is the joint answer up to the 1/(n−k) renormalisation), and R
   sequential erases (each at the adapter the previous one produced, on the data that remain).
   Reported: cost of each, and the drift of the sequential and summed answers from the joint
   one, with the exact solver (the linearisation's own drift) and with llmeraser (plus its noise).

    python -m benchmarks.scaling [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

import eraserlib
from benchmarks import problems, reporting
from eraserlib.errors import SolverDivergedError
from eraserlib.damping import AUTO_CONDITION_NUMBER
from eraserlab.profiling import measure
from eraserlib.solvers import estimate_spectrum

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 8, "layers": 1, "n": 32, "train_steps": 10, "ranks": [1, 2],
             "targets": [["q_proj", "v_proj"]], "repeats": 1, "erase_steps": 16, "request_shares": [0.05, 0.2],
             "requests": 2, "sequential": {"n": 32, "hidden_size": 8, "layers": 1, "train_steps": 20}},
    "default": {"hidden_size": 64, "layers": 2, "n": 256, "train_steps": 60, "ranks": [1, 2, 4, 8, 16, 32],
                "targets": [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"],
                            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]],
                "repeats": 5, "erase_steps": 128, "request_shares": [0.01, 0.05, 0.1, 0.2], "requests": 4,
                "sequential": {"n": 128, "hidden_size": 16, "layers": 2, "train_steps": 120}},
}
BATCH = 32



def adapter_size(settings: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Unit costs and a fixed-work erase for every (targets, rank)."""
    rows = []
    for targets in settings["targets"]:
        for rank in settings["ranks"]:
            problem = problems.tiny_lora(settings["n"], rank=rank, target_modules=tuple(targets),
                                         hidden_size=settings["hidden_size"], layers=settings["layers"],
                                         train_steps=settings["train_steps"], batch_size=BATCH, seed=seed,
                                         form_hessian=False)
            objective = problem.objective(seed)
            batch = problem.data[:BATCH]
            vector = torch.randn(objective.num_parameters, generator=torch.Generator().manual_seed(seed))
            with objective.evaluation():
                gradient_s = reporting.median_seconds(lambda: objective.loss_sum_gradient(batch), settings["repeats"])
                hvp_s = reporting.median_seconds(lambda: objective.data_hvp(batch, vector), settings["repeats"])
            usage, result, diverged = erase_at_fixed_work(problem, settings["erase_steps"], seed)
            rows.append({"targets": "+".join(t.removesuffix("_proj") for t in targets), "rank": rank,
                         "parameters": objective.num_parameters, "gradient_s": gradient_s, "hvp_s": hvp_s,
                         "hvp_over_gradient": hvp_s / gradient_s,
                         "erase_s": usage.wall_time_s if result else None,
                         "erase_hvps": result.diagnostics["hvp_count"] if result else None,
                         "erase_damping": result.diagnostics["damping"] if result else None,
                         "erase_peak_mb": usage.peak_memory_mb if result else None,
                         "auto_damping_diverged": diverged > 0, "diverged_attempts": diverged})
            print(f"  adapter {rows[-1]['targets']} r={rank}: p={objective.num_parameters}", flush=True)
    base = rows[0]
    for row in rows:
        row["parameters_ratio"] = row["parameters"] / base["parameters"]
        row["hvp_ratio"] = row["hvp_s"] / base["hvp_s"]
        row["erase_ratio"] = row["erase_s"] / base["erase_s"] if row["erase_s"] and base["erase_s"] else None
    return rows


def erase_at_fixed_work(problem: problems.Problem, steps: int, seed: int, request=None):
    """One llmeraser erase of exactly ``steps`` steps (tolerance 0), timed.

    ``damping="auto"`` can fail on a barely trained adapter: its Lanczos estimate (20 iterations
    on one batch) may miss negative curvature that the full Hessian has, and the solver then
    diverges. That is recorded, and the erase is repeated with a damping from a longer Lanczos
    run on a larger sample (60 iterations, 4 batches, margin 3; then 10× that), so that the
    cost of the same amount of work is still measured.

    Returns:
        (usage, result, number of attempts that diverged before the measured one); the result
        is None if every attempt diverged.
    """
    request = request or problem.request
    options = {"solver": "llmeraser", "batch_size": BATCH, "seed": seed, "progress": False,
               "options": {"max_steps": steps, "tolerance": 0.0}}
    objective = problem.objective(seed)
    attempts: list = ["auto"]
    failures = 0
    while attempts:
        damping = attempts.pop(0)
        try:
            with measure() as usage:
                result = eraserlib.erase(problem.model, problem.loss_fn, problem.data, request, damping=damping,
                                         curvature="hessian", **options)
            return usage, result, failures
        except SolverDivergedError:
            failures += 1
            if failures == 1:
                with objective.evaluation():
                    spectrum = estimate_spectrum(objective, iterations=60, sample_size=4 * BATCH)
                # the library's rule with twice its margin on the most negative curvature
                careful = max(0.0, spectrum.largest / AUTO_CONDITION_NUMBER - 3.0 * min(spectrum.smallest, 0.0))
                attempts = [careful, 10 * careful]
    return usage, None, failures


def request_size(settings: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Erase cost against k (llmeraser at fixed steps): gradient passes for b, solver HVPs, seconds."""
    problem = problems.tiny_lora(settings["n"], hidden_size=settings["hidden_size"], layers=settings["layers"],
                                 train_steps=settings["train_steps"], batch_size=BATCH, seed=seed, form_hessian=False)
    rows = []
    for share in settings["request_shares"]:
        k = max(1, round(share * len(problem.data)))
        request = eraserlib.InstanceRemoval(problem.data[:k])
        usage, result, diverged = erase_at_fixed_work(problem, settings["erase_steps"], seed, request)
        rows.append({"share": share, "k": k, "auto_damping_diverged": diverged > 0,
                     "gradient_passes": result.diagnostics["gradient_count"] if result else None,
                     "hvps": result.diagnostics["hvp_count"] if result else None,
                     "erase_s": usage.wall_time_s if result else None, "peak_mb": usage.peak_memory_mb})
    return rows


def _flat(delta: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in delta.values()]).double()


def _compare(a: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    return {"relative_difference": float((a - reference).norm() / reference.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(a, reference, dim=0))}


def several_requests(settings: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Joint vs summed-independent vs sequential erases of R disjoint removals (exact and llmeraser)."""
    rows = []
    count = settings["requests"]
    for solver in ("exact", "llmeraser"):
        spec = settings["sequential"]
        problem = problems.tiny_lora(spec["n"], hidden_size=spec["hidden_size"], layers=spec["layers"],
                                     train_steps=spec["train_steps"], batch_size=BATCH, seed=seed, form_hessian=False)
        model, data = problem.model, problem.data
        k = max(1, round(0.02 * len(data)))
        groups = [data[i * k:(i + 1) * k] for i in range(count)]
        # exact: the sequential solves linearise at points where this fixed damping no longer makes H + λI
        # positive definite (exact refuses such a system unless told); the drift is what is measured here
        options = {"options": {"max_steps": settings["erase_steps"] * 4}} if solver == "llmeraser" else \
            {"options": {"allow_indefinite": True}}
        # the damping of the joint solve, fixed for every solve so that only the linearisation point differs
        start = time.perf_counter()
        joint = eraserlib.erase(model, problem.loss_fn, data, eraserlib.InstanceRemoval(sum(groups, [])),
                                solver=solver, batch_size=BATCH, seed=seed, progress=False, curvature="hessian", **options)
        joint_s = time.perf_counter() - start
        damping = joint.diagnostics["damping"]
        joint_delta = _flat(joint.delta)

        start = time.perf_counter()
        summed = sum(_flat(eraserlib.erase(model, problem.loss_fn, data, eraserlib.InstanceRemoval(g), solver=solver,
                                           batch_size=BATCH, damping=damping, seed=seed + i, progress=False,
                                           curvature="hessian", **options).delta) for i, g in enumerate(groups))
        independent_s = time.perf_counter() - start

        before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        remaining = list(data)
        start = time.perf_counter()
        for i, group in enumerate(groups):
            result = eraserlib.erase(model, problem.loss_fn, remaining, eraserlib.InstanceRemoval(group),
                                     solver=solver, batch_size=BATCH, damping=damping, seed=seed + i, progress=False,
                                     curvature="hessian", **options)
            eraserlib.apply_delta(model, result.delta)
            remaining = remaining[len(group):]  # the groups are the first R·k examples, in order
        sequential_s = time.perf_counter() - start
        sequential = torch.cat([(p.detach() - before[name]).reshape(-1) for name, p in model.named_parameters()
                                if p.requires_grad]).double()
        rows.append({"solver": solver, "requests": count, "k_each": k, "n": len(data), "damping": damping,
                     "joint_s": joint_s, "independent_s": independent_s, "sequential_s": sequential_s,
                     "summed_vs_joint": _compare(summed, joint_delta),
                     "sequential_vs_joint": _compare(sequential, joint_delta)})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("scaling", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    settings = SIZES[arguments.size]
    adapters = adapter_size(settings, arguments.seed)
    requests = request_size(settings, arguments.seed)
    several = several_requests(settings, arguments.seed)
    path = reporting.write_record(arguments, {"settings": settings, "batch_size": BATCH, "adapter_size": adapters,
                                              "request_size": requests, "several_requests": several},
                                  started, machine)
    print("Adapter size (llmeraser erase at a fixed number of steps)")
    print(reporting.format_table(adapters, ["targets", "rank", "parameters", "gradient_s", "hvp_s",
                                            "hvp_over_gradient", "erase_s", "parameters_ratio", "hvp_ratio",
                                            "erase_ratio", "auto_damping_diverged"]))
    print("\nRequest size")
    print(reporting.format_table(requests, ["share", "k", "gradient_passes", "hvps", "erase_s", "peak_mb"]))
    print("\nSeveral requests: joint vs sum of independent vs sequential")
    flat = [{"solver": r["solver"], "R": r["requests"], "joint_s": r["joint_s"], "independent_s": r["independent_s"],
             "sequential_s": r["sequential_s"], "sum cos": r["summed_vs_joint"]["cosine"],
             "sum rel.diff": r["summed_vs_joint"]["relative_difference"],
             "seq cos": r["sequential_vs_joint"]["cosine"],
             "seq rel.diff": r["sequential_vs_joint"]["relative_difference"]} for r in several]
    print(reporting.format_table(flat, list(flat[0])))
    print(f"load average {machine['load_average']} -> {reporting.load_average()}; wrote {path}")
    return {"path": path}


if __name__ == "__main__":
    main()
