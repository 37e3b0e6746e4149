"""The cost of one Gauss–Newton product against one Hessian-vector product and one gradient, on the CPU.

On LoRA Llamas of three sizes (the recipe chapter's stand-in, hidden 32, r = 4 on q, v; a wider
one, hidden 64, r = 8; a longer-context one, 64 tokens over a 256-token vocabulary), over one
batch of B examples, each figure a median of repeats after a warm-up:

* gradient: one forward + backward of the mean loss (``TrainingObjective.loss_sum_gradient``);
* HVP: double backward (``data_hvp``);
* Gauss–Newton, J v by the double-vjp trick and by forward mode (``data_gauss_newton`` with
  ``gauss_newton_method="double_vjp"`` / ``"forward"``), and the relative difference of the two
  products (they compute the same G v);
* a forward pass without a graph (what a line search evaluates).

``eraserlib.curvature.DEFAULT_METHOD`` is the faster of the two Gauss–Newton methods on the
recipe stand-in here. The load average is recorded beside each row: on a shared machine it
inflates every figure, ratios less than seconds.

    python -m benchmarks.curvature_cost [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import reporting
from eraserlib.objective import TrainingObjective

MODELS: dict[str, list[dict[str, Any]]] = {
    "tiny": [{"name": "toy", "hidden_size": 8, "rank": 2, "layers": 1, "vocab_size": 24, "sequence_length": 10,
              "batch": 8}],
    "default": [
        {"name": "recipe stand-in", "hidden_size": 32, "rank": 4, "layers": 2, "vocab_size": 24,
         "sequence_length": 10, "batch": 32},
        {"name": "wider", "hidden_size": 64, "rank": 8, "layers": 2, "vocab_size": 24, "sequence_length": 10,
         "batch": 32},
        {"name": "longer context", "hidden_size": 64, "rank": 8, "layers": 2, "vocab_size": 256,
         "sequence_length": 64, "batch": 8},
    ],
}
REPEATS = {"tiny": 2, "default": 9}


def _model(spec: dict[str, Any], seed: int):
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, make_sequences

    config = TinyLoraConfig(vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"], layers=spec["layers"],
                            rank=spec["rank"], sequence_length=spec["sequence_length"], num_examples=spec["batch"],
                            seed=seed)
    return build_model(config), make_sequences(config)


def measure(spec: dict[str, Any], repeats: int, seed: int) -> dict[str, Any]:
    """Median seconds of one gradient, HVP, Gauss–Newton product (both methods) and forward on one batch."""
    from eraserlib.toy.tiny_lora import language_model_loss

    model, batch = _model(spec, seed)
    objectives = {method: TrainingObjective(model, language_model_loss, batch, batch_size=len(batch),
                                            curvature="gauss_newton", gauss_newton_method=method)
                  for method in ("double_vjp", "forward")}
    objective = objectives["double_vjp"]
    vector = torch.randn(objective.num_parameters, generator=torch.Generator().manual_seed(seed))
    with objective.evaluation():
        seconds = {
            "forward": reporting.median_seconds(lambda: objective.loss_sum(batch), repeats),
            "gradient": reporting.median_seconds(lambda: objective.loss_sum_gradient(batch), repeats),
            "hvp": reporting.median_seconds(lambda: objective.data_hvp(batch, vector), repeats),
        }
        for method, other in objectives.items():
            seconds[f"gauss_newton_{method}"] = reporting.median_seconds(
                lambda other=other: other.data_gauss_newton(batch, vector), repeats)
        products = {method: other.data_gauss_newton(batch, vector).double() for method, other in objectives.items()}
        hv = objective.data_hvp(batch, vector).double()
    difference = float((products["forward"] - products["double_vjp"]).norm() / products["double_vjp"].norm())
    gv = products["double_vjp"]
    return {"model": spec["name"], "parameters": objective.num_parameters, "batch": len(batch),
            "sequence_length": spec["sequence_length"], "vocab_size": spec["vocab_size"],
            **{f"{k}_s": v for k, v in seconds.items()},
            **{f"{k}_over_gradient": v / seconds["gradient"] for k, v in seconds.items() if k != "gradient"},
            "forward_mode_vs_double_vjp": difference,
            "faster_gauss_newton": min(("double_vjp", "forward"), key=lambda m: seconds[f"gauss_newton_{m}"]),
            "gauss_newton_vs_hvp_cosine": float(gv @ hv / (gv.norm() * hv.norm())),
            "load_1min": reporting.load_average()[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("curvature_cost", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    rows = [measure(spec, REPEATS[arguments.size], arguments.seed) for spec in MODELS[arguments.size]]
    from eraserlib.curvature import DEFAULT_METHOD

    record = {"models": MODELS[arguments.size], "repeats": REPEATS[arguments.size], "rows": rows,
              "library_default_method": DEFAULT_METHOD}
    path = reporting.write_record(arguments, record, started, machine)
    print("One batch: seconds and multiples of one gradient")
    print(reporting.format_table(rows, ["model", "parameters", "batch", "gradient_s", "hvp_over_gradient",
                                        "gauss_newton_double_vjp_over_gradient",
                                        "gauss_newton_forward_over_gradient", "forward_over_gradient",
                                        "faster_gauss_newton", "forward_mode_vs_double_vjp", "load_1min"]))
    print(f"wrote {path}")
    return {"path": path, "rows": rows}


if __name__ == "__main__":
    main()
