"""Estimating H on a subsample of the training data: accuracy against cost, and the default it suggests.

A full-data HVP processes all n examples; CG needs tens of them, so a full-data Hessian costs
several epochs. Solving with H_m, the Hessian of a fixed random subsample of m examples
(``solver="cg", hessian_examples=m``), cuts each HVP to m examples but answers a different
system, (H_m + λI)⁻¹ b: its error against the full solve does not shrink with more iterations,
only with m. For each m (and several random subsamples) this records the cost (examples
processed by HVPs, seconds) and the cosine and relative error to the exact full-data answer,
on the tiny LoRA Llama and on the least-squares quadratic, and names the smallest m whose
worst cosine over the subsamples is ≥ 0.99.

(llmeraser needs no such choice: it draws a fresh mini-batch from all n at every step, so
its cost never depended on n; the curve is for CG and for the dense/exact solvers.)

    python -m benchmarks.hessian_subsample [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import problems, reporting
from eraserlib.errors import NegativeCurvatureError
from eraserlib.solvers import CG

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"tiny_lora": {"n": 64, "hidden_size": 8, "layers": 1, "train_steps": 20}, "least_squares_n": 256,
             "subsamples": [16, 32, 64], "draws": 1},
    "default": {"tiny_lora": {"n": 1024, "hidden_size": 16, "layers": 2, "train_steps": 240},
                "least_squares_n": 8192, "subsamples": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192], "draws": 3},
}
GOAL = 0.99


def curve(problem: problems.Problem, subsamples: list[int], draws: int, seed: int) -> dict[str, Any]:
    """CG on H_m for each m ≤ n and each draw; accuracy against the exact full-data solve."""
    hessian = problem.form_hessian()
    damping = problems.auto_damping(hessian, problem.weight_decay)
    b = problem.right_hand_side()
    exact = torch.linalg.solve(hessian + damping * torch.eye(len(b), dtype=torch.float64), b.double())
    rows = []
    n = problem.info["n"]
    for m in sorted({min(m, n) for m in subsamples} | {n}):  # m = n: plain CG, the reference cost
        for draw in range(draws if m < n else 1):
            objective = problem.objective(seed + 1000 * draw)
            start = time.perf_counter()
            row = {"problem": problem.name, "n": n, "m": m, "draw": draw}
            try:
                with objective.evaluation():
                    solved = CG({"max_iterations": 200, "tolerance": 1e-6, "hessian_examples": m}).solve(
                        objective, b, damping)
                x, details = solved.solution, solved.diagnostics()
            except NegativeCurvatureError:
                # A subsample's Hessian has a wider spectrum than the full one: the damping that makes
                # H + λI positive definite need not do so for H_m + λI. A failure is a result here.
                row.update(seconds=time.perf_counter() - start, hvp_examples=objective.hvp_examples,
                           epochs_of_hvps=objective.hvp_examples / n, cosine=None, relative_error=None,
                           error="negative curvature of H_m + λI")
                rows.append(row)
                continue
            x = x.double()
            row.update(seconds=time.perf_counter() - start, iterations=details["iterations"],
                       hvp_examples=objective.hvp_examples, epochs_of_hvps=objective.hvp_examples / n,
                       cosine=float(torch.nn.functional.cosine_similarity(x, exact, dim=0)),
                       relative_error=float((x - exact).norm() / exact.norm()))
            rows.append(row)
    worst = {}
    for row in rows:
        cosine = row["cosine"] if row["cosine"] is not None else -1.0  # a failed solve is the worst case
        worst[row["m"]] = min(worst.get(row["m"], 1.0), cosine)
    chosen = next((m for m in sorted(worst) if worst[m] >= GOAL), None)
    return {"problem": problem.name, **problem.info, "damping": damping, "rows": rows,
            "worst_cosine_by_m": worst, "smallest_m_reaching_goal": chosen}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("hessian_subsample", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    settings = SIZES[arguments.size]
    spec = settings["tiny_lora"]
    results = [
        curve(problems.tiny_lora(spec["n"], hidden_size=spec["hidden_size"], layers=spec["layers"],
                                 train_steps=spec["train_steps"], seed=arguments.seed),
              settings["subsamples"], settings["draws"], arguments.seed),
        curve(problems.least_squares(settings["least_squares_n"], seed=arguments.seed),
              settings["subsamples"], settings["draws"], arguments.seed),
    ]
    path = reporting.write_record(arguments, {"settings": settings, "cosine_goal": GOAL, "results": results},
                                  started, machine)
    for result in results:
        print(f"{result['problem']} (n = {result['n']}, p = {result['p']}): smallest m with worst cosine >= {GOAL}: "
              f"{result['smallest_m_reaching_goal']}")
        print(reporting.format_table(result["rows"], ["m", "draw", "iterations", "hvp_examples", "epochs_of_hvps",
                                                      "seconds", "cosine", "relative_error", "error"]))
        print()
    print(f"load average {machine['load_average']} -> {reporting.load_average()}; wrote {path}")
    return {"path": path, "results": results}


if __name__ == "__main__":
    main()
