"""Throughput knobs of the Hessian-vector product, each measured before/after in the same run.

Knobs (on the small LoRA Llama of :mod:`benchmarks.scaling`, one HVP over a batch):

1. **Threads**: 1 vs 2 torch threads. On a shared 2-core machine a second thread competes
   with other processes; the default the book and tests use is a cap (``OMP_WAIT_POLICY=PASSIVE``).
2. **HVP batch size** B: examples per double-backward pass. Larger batches amortise the
   per-call overhead (examples per second), at the price of more memory per call.
3. **Precision**: the HVP with the base in bf16 against float32 (``compute_dtype``): time and the
   relative difference of the two products. eraserlib computes HVPs in float32 by default.
4. **HVP by double backward vs forward-over-reverse** (``torch.func.jvp`` of ``grad``): eraserlib
   uses double backward.

Every figure is a median over repeats; the load average is recorded next to it.

    python -m benchmarks.throughput [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import problems, reporting
from eraserlib.objective import TrainingObjective, flatten, hessian_vector_product, unflatten

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 8, "layers": 1, "n": 64, "batches": [8, 32], "repeats": 2, "threads": [1, 2]},
    "default": {"hidden_size": 64, "layers": 2, "n": 256, "batches": [4, 8, 16, 32, 64, 128], "repeats": 7,
                "threads": [1, 2]},
}



def _objective(problem: problems.Problem, batch_size: int, dtype: torch.dtype | None) -> TrainingObjective:
    return TrainingObjective(problem.model, problem.loss_fn, problem.data, batch_size=batch_size, compute_dtype=dtype)


def forward_over_reverse_hvp(objective: TrainingObjective, examples: list, vector: torch.Tensor) -> torch.Tensor:
    """Hv by ``torch.func.jvp`` of ``torch.func.grad`` (the alternative to double backward)."""
    from torch.func import grad, jvp

    names = objective.names
    frozen = {k: v for k, v in objective.model.named_parameters() if k not in names}
    batch = objective.collate_fn(examples)

    def loss(params):
        return objective.loss_fn(_Bound(objective.model, {**frozen, **params}), batch)

    primals = {k: p.detach() for k, p in zip(names, objective.params)}
    tangents = dict(zip(names, unflatten(vector, objective.params)))
    _, product = jvp(grad(loss), (primals,), (tangents,))
    return flatten([product[k] for k in names])


class _Bound(torch.nn.Module):
    """The model called with substituted parameters (what ``loss_fn(model, batch)`` expects)."""

    def __init__(self, model, params):
        super().__init__()
        self._model, self._params = model, params

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self._model, self._params, args, kwargs)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("throughput", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    settings = SIZES[arguments.size]
    problem = problems.tiny_lora(settings["n"], hidden_size=settings["hidden_size"], layers=settings["layers"],
                                 train_steps=20, batch_size=32, seed=arguments.seed, form_hessian=False)
    vector = torch.randn(problem.info["p"], generator=torch.Generator().manual_seed(arguments.seed))
    repeats = settings["repeats"]
    rows: list[dict[str, Any]] = []

    # 1. threads
    objective = _objective(problem, 32, torch.float32)
    batch = problem.data[:32]
    with objective.evaluation():
        for threads in settings["threads"]:
            torch.set_num_threads(threads)
            rows.append({"knob": "threads", "setting": threads,
                         "seconds": reporting.median_seconds(lambda: objective.data_hvp(batch, vector), repeats),
                         "load_1min": reporting.load_average()[0]})
    torch.set_num_threads(max(1, arguments.threads))

    # 2. batch size: seconds per HVP call and examples per second
    for size in settings["batches"]:
        objective = _objective(problem, size, torch.float32)
        batch = [problem.data[i % len(problem.data)] for i in range(size)]
        with objective.evaluation():
            seconds = reporting.median_seconds(lambda: objective.data_hvp(batch, vector), repeats)
        rows.append({"knob": "hvp_batch_size", "setting": size, "seconds": seconds,
                     "examples_per_second": size / seconds, "load_1min": reporting.load_average()[0]})

    # 3. precision: bf16 base vs float32, same batch and vector
    batch = problem.data[:32]
    products = {}
    model = problem.model
    for label, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model.to(dtype)
        for p in model.parameters():  # LoRA weights stay float32, as peft keeps them for bf16 bases
            if p.requires_grad:
                p.data = p.data.float()
        objective = _objective(problem, 32, None)
        with objective.evaluation():
            seconds = reporting.median_seconds(lambda: objective.data_hvp(batch, vector), repeats)
            products[label] = objective.data_hvp(batch, vector).double()
        rows.append({"knob": "hvp_precision", "setting": label, "seconds": seconds,
                     "load_1min": reporting.load_average()[0]})
    model.to(torch.float32)
    difference = float((products["bfloat16"] - products["float32"]).norm() / products["float32"].norm())
    rows[-1]["relative_difference_to_float32"] = difference

    # 4. double backward vs forward-over-reverse
    objective = _objective(problem, 32, torch.float32)
    with objective.evaluation():
        double = reporting.median_seconds(lambda: hessian_vector_product(problem.loss_fn(model, objective.collate_fn(batch)),
                                                        objective.params, vector), repeats)
        functional = reporting.median_seconds(lambda: forward_over_reverse_hvp(objective, batch, vector), repeats)
        agreement = float((forward_over_reverse_hvp(objective, batch, vector).double() - hessian_vector_product(
            problem.loss_fn(model, objective.collate_fn(batch)), objective.params, vector).double()).norm()
            / products["float32"].norm())
    rows.append({"knob": "hvp_method", "setting": "double backward", "seconds": double,
                 "load_1min": reporting.load_average()[0]})
    rows.append({"knob": "hvp_method", "setting": "jvp of grad", "seconds": functional,
                 "relative_difference_to_float32": agreement, "load_1min": reporting.load_average()[0]})

    path = reporting.write_record(arguments, {"settings": settings, "parameters": problem.info["p"], "rows": rows},
                                  started, machine)
    print(f"HVP throughput on a LoRA Llama (hidden {settings['hidden_size']}, {settings['layers']} layers, "
          f"p = {problem.info['p']})")
    print(reporting.format_table(rows, ["knob", "setting", "seconds", "examples_per_second",
                                        "relative_difference_to_float32", "load_1min"]))
    print(f"wrote {path}")
    return {"path": path, "rows": rows}


if __name__ == "__main__":
    main()
