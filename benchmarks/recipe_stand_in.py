"""The recipe chapter's stand-in: how far each erase moves the secret's loss, against a warm and a cold retrain.

The set-up of ``notebooks/erase_your_adapter.ipynb`` (random tiny Llama, LoRA r = 4 on q, v,
p = 1,024; 240 sequences + 16 copies of a secret; 80 epochs; :func:`benchmarks.removal_cases.recipe_case`),
the removal of the secret, and for each method the secret's loss and the retained data's loss
as shares of the way to a warm retrain (the trained adapter trained on again without the secret,
the recipe's reference) and to a cold one (a fresh adapter from the same initialisation):

* Hessian, one step, dense solve: "auto" damping and λ ∈ {0.1, 0.03, 0.01};
* Gauss–Newton, one step, dense solve: "auto" (λ_max/100), λ ∈ {0.1, 0.03, 0.01, 0.003} and
  kronfluence's rule 0.1 × mean eigenvalue — the damping-rule measurement;
* Gauss–Newton and Hessian, ``steps`` re-linearised steps (CG), "auto" damping;
* the removal mode ``removal="match_heldout"`` (Gauss–Newton, CG) against 32 random secrets.

Each row also carries the corrected objective R' (the retained loss; wd = 0), the membership
AUC of the secret among the held-out secrets, and the cost in passes.

    python -m benchmarks.recipe_stand_in [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import removal_cases, reporting

SIZES = {"tiny": {"epochs": 4, "copies": 4, "sequences": 40, "steps": 2, "cg": {"max_iterations": 10, "tolerance": 1e-3},
                  "sweep_hessian": [0.1], "sweep_gauss_newton": [0.03]},
         "default": {"epochs": 80, "copies": 16, "sequences": 240, "steps": 5, "cg": {"max_iterations": 100, "tolerance": 1e-4},
                     "sweep_hessian": [0.1, 0.03, 0.01], "sweep_gauss_newton": [0.1, 0.03, 0.01, 0.003]}}


def dense_matrices(case: removal_cases.Case) -> dict[str, torch.Tensor]:
    """The dense Hessian and Gauss–Newton matrix of the training objective (weight decay 0), timed."""
    from eraserlib.objective import TrainingObjective
    from eraserlib.solvers import dense_gauss_newton, dense_hessian

    objective = TrainingObjective(case.model, case.loss_fn, case.train_data, batch_size=32,
                                  collate_fn=case.collate_fn, curvature="gauss_newton")
    with objective.evaluation():
        return {"hessian": dense_hessian(objective), "gauss_newton": dense_gauss_newton(objective)}


def references(case: removal_cases.Case) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Scores before and after the warm and the cold retrain, and the retrains' seconds."""
    scores, seconds = {"before": removal_cases.score(case, case.model)}, {}
    for name in ("warm", "cold"):
        model, seconds[name] = removal_cases.retrain(case, warm=name == "warm")
        scores[name] = removal_cases.score(case, model)
    return scores, seconds


def run_case(case: removal_cases.Case, settings: dict[str, Any], matrices: dict[str, torch.Tensor],
             scores: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []

    def add(label: str, **arguments: Any) -> None:
        rows.append(removal_cases.run_method(case, label, scores, **arguments))
        print(f"  {label}: removed loss {rows[-1].get('removed_loss', float('nan')):.4f}", flush=True)

    for curvature, sweep in (("hessian", settings["sweep_hessian"]), ("gauss_newton", settings["sweep_gauss_newton"])):
        exact = {"solver": "exact", "curvature": curvature, "options": {"hessian": matrices[curvature]}}
        add(f"{curvature}, 1 step, auto", **exact)
        for lam in sweep:
            add(f"{curvature}, 1 step, λ={lam:g}", damping=lam, **exact)
    eigenvalues = torch.linalg.eigvalsh(matrices["gauss_newton"])
    kronfluence = 0.1 * float(eigenvalues.mean())  # kronfluence's default: 0.1 × the mean eigenvalue
    add("gauss_newton, 1 step, λ=0.1×mean eigenvalue", damping=kronfluence, solver="exact", curvature="gauss_newton",
        options={"hessian": matrices["gauss_newton"]})
    cg = {"solver": "cg", "options": settings["cg"]}
    k = settings["steps"]
    add(f"gauss_newton, {k} steps, auto", curvature="gauss_newton", steps=k, **cg)
    add(f"hessian, {k} steps, auto", curvature="hessian", steps=k, **cg)
    add(f"removal mode (gauss_newton, ≤{k} directions)", curvature="gauss_newton", removal="match_heldout",
        heldout=case.heldout, steps=k, **cg)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("recipe_stand_in", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    settings = SIZES[arguments.size]
    case = removal_cases.recipe_case(arguments.seed, epochs=settings["epochs"], copies=settings["copies"],
                                     sequences=settings["sequences"])
    scores, retrain_seconds = references(case)
    start = time.perf_counter()
    matrices = dense_matrices(case)
    dense_seconds = time.perf_counter() - start
    gauss_newton_eigenvalues = torch.linalg.eigvalsh(matrices["gauss_newton"])
    hessian_eigenvalues = torch.linalg.eigvalsh(matrices["hessian"])
    rows = run_case(case, settings, matrices, scores)
    record = {"settings": settings, "case": case.info, "references": scores, "retrain_seconds": retrain_seconds,
              "dense_matrices_seconds": dense_seconds,
              "spectra": {"hessian": {"smallest": float(hessian_eigenvalues[0]), "largest": float(hessian_eigenvalues[-1]),
                                      "negative": int((hessian_eigenvalues < 0).sum())},
                          "gauss_newton": {"smallest": float(gauss_newton_eigenvalues[0]),
                                           "largest": float(gauss_newton_eigenvalues[-1]),
                                           "mean": float(gauss_newton_eigenvalues.mean())}},
              "rows": rows}
    path = reporting.write_record(arguments, record, started, machine)
    print(f"{case.name}: p = {case.info['p']}; before / warm / cold: removed loss "
          + " / ".join(f"{scores[k]['removed_loss']:.4f}" for k in ("before", "warm", "cold")))
    print(reporting.format_table(rows, ["method", "damping", "removed_loss", "removed_loss_share_warm",
                                        "removed_loss_share_cold", "retained_loss", "membership_auc", "steps_taken",
                                        "gradient_count", "hvp_count", "forward_count", "wall_time_s"]))
    print(f"wrote {path}")
    return {"path": path, "record": record}


if __name__ == "__main__":
    main()
