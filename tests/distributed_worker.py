"""The ranks of ``tests/test_distributed.py``: run under ``torchrun``, one erase per scenario on every rank.

    python -m torch.distributed.run --standalone --nproc_per_node W tests/distributed_worker.py \\
        --setup DIR --out DIR --scenarios NAME [NAME ...]

Each scenario is a function of the setup folder (the convex model and the tiny LoRA adapter the
test wrote there) returning an :class:`~eraserlib.EraseResult`; the test runs the same functions in
its own process (no process group) for the one-process answer. Every rank writes
``<scenario>-rank<r>.pt``: its delta and diagnostics, or the error it raised, and whether the
erased adapter was on disk when its call returned; and ``garbage-rank<r>.pt``, what the scenarios
left in unreachable cycles. A scenario that raises on every rank leaves
the process group usable for the next one (that is what the failure protocol promises).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import eraserlib
from eraserlib.toy import convex

#: The convex problem: n odd, so the shares of 2 and 4 ranks differ in length.
CONVEX = {"num_examples": 203, "num_features": 5, "weight_decay": 1e-2, "seed": 3}
#: The tiny LoRA problem (n odd as well).
LORA_EXAMPLES = 61
#: The training example the poisoned loss refuses (position 1: rank 1 of 2 or 4 sees it in full-data sums).
POISON = 1


def convex_problem(setup: Path):
    problem = convex.make_problem(**CONVEX)
    model = convex.LogisticRegression(problem.num_features)
    model.load_state_dict(torch.load(setup / "convex.pt"))
    return model, problem


def lora_config():
    from eraserlib.toy.tiny_lora import TinyLoraConfig

    return TinyLoraConfig(num_examples=LORA_EXAMPLES)


def lora_model(setup: Path):
    from eraserlib.adapters import load_adapter
    from eraserlib.toy.tiny_lora import build_base_model

    return load_adapter(build_base_model(lora_config()), setup / "adapter")


def lora_data():
    from eraserlib.toy.tiny_lora import make_sequences

    return make_sequences(lora_config())


def _convex(setup, solver, request, **options):
    model, problem = convex_problem(setup)
    data = problem.examples
    requests = {
        "ir": lambda: eraserlib.InstanceRemoval(data[10:17]),
        "rc": lambda: eraserlib.ResponseCorrection.from_indices(data, [3, 8, 50, 51, 200],
                                                                 [(x, 1 - y) for x, y in (data[i] for i in
                                                                                          (3, 8, 50, 51, 200))]),
    }
    return eraserlib.erase(model, convex.logistic_loss, data, requests[request](), solver=solver, options=options,
                           weight_decay=problem.weight_decay, batch_size=16, progress=False)


def _lora(setup, solver, **options):
    from eraserlib.toy.tiny_lora import language_model_loss

    data = lora_data()
    return eraserlib.erase(lora_model(setup), language_model_loss, data, eraserlib.InstanceRemoval(data[5:8]),
                           solver=solver, options=options, damping=0.1, batch_size=16, progress=False)


class PoisonedLoss:
    """The tiny LM loss, raising on the training example at ``POISON`` (or on this rank's ``fail_at``-th call)."""

    def __init__(self, data, fail_on_rank: int | None = None, fail_at: int | None = None):
        self.poison = data[POISON] if fail_at is None else None
        self.fail_on_rank, self.fail_at, self.calls = fail_on_rank, fail_at, 0

    def __call__(self, model, batch):
        import torch.distributed as dist

        from eraserlib.toy.tiny_lora import language_model_loss

        self.calls += 1
        if self.poison is not None and bool((batch == self.poison).all(1).any()):
            raise ValueError("poisoned example in this batch")
        if self.fail_at is not None and dist.get_rank() == self.fail_on_rank and self.calls == self.fail_at:
            raise RuntimeError(f"simulated failure at call {self.calls}")
        return language_model_loss(model, batch)


def _adapter(setup, out, name, loss=None, occupied=False):
    from eraserlib.adapters import erase_adapter
    from eraserlib.toy.tiny_lora import build_base_model, language_model_loss

    data = lora_data()
    target = out / f"{name}-erased"
    if occupied and int(os.environ.get("RANK", "0")) == 0:
        target.mkdir(exist_ok=True)
        (target / "precious.txt").write_text("keep me")
    return erase_adapter(build_base_model(lora_config()), setup / "adapter", target, loss or language_model_loss,
                         data, eraserlib.InstanceRemoval(data[5:8]), solver="cg", damping=0.1, batch_size=16,
                         progress=False)


def _sharded(setup, *, shard_adapter=False, reshard=True):
    """The tiny LoRA model with each decoder layer and the root sharded by FSDP2 (the adapter replicated)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = lora_model(setup)
    adapter = {p for p in model.parameters() if p.requires_grad}
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    options = {"mesh": mesh} if shard_adapter else {"mesh": mesh, "ignored_params": adapter}
    for layer in model.base_model.model.model.layers:
        fully_shard(layer, **options)
    fully_shard(model, **options)
    if not reshard:  # keep the gathered base between forward and backward: double backward then works
        model.set_reshard_after_forward(False)
        model.set_reshard_after_backward(False)
    return model


def _fsdp(setup, out, solver, *, save=False, **sharding):
    from eraserlib.adapters import save_erased_adapter
    from eraserlib.toy.tiny_lora import language_model_loss

    data = lora_data()
    model = _sharded(setup, **sharding) if out is not None else lora_model(setup)
    result = eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[5:6]), solver=solver,
                             damping=0.1, batch_size=16, progress=False)
    if save:
        eraserlib.apply_delta(model, result.delta)
        save_erased_adapter(model, out / "fsdp_datainf-erased", result, source_dir=setup / "adapter", train_data=data)
    return result


def _fsdp_gauss_newton(setup, out):
    from eraserlib.toy.tiny_lora import language_model_loss

    data = lora_data()
    model = _sharded(setup) if out is not None else lora_model(setup)
    return eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[5:6]), solver="cg",
                           damping=0.1, batch_size=16, progress=False, curvature="gauss_newton")


def _last_rank_fails(setup):
    """llmeraser on the convex problem, its loss raising on the last rank at that rank's 10th call (mid-solve)."""
    import torch.distributed as dist

    model, problem = convex_problem(setup)
    calls = []

    def loss(model, batch):
        calls.append(1)
        if dist.get_rank() == dist.get_world_size() - 1 and len(calls) == 10:
            raise RuntimeError("simulated failure in the 10th batch")
        return convex.logistic_loss(model, batch)

    return eraserlib.erase(model, loss, problem.examples, eraserlib.InstanceRemoval(problem.examples[10:17]),
                           solver="llmeraser", weight_decay=problem.weight_decay, batch_size=16, progress=False)


def _disagree(setup):
    """Rank 1 asks to remove other examples than the rest: every rank must refuse."""
    model, problem = convex_problem(setup)
    first = 20 if int(os.environ.get("RANK", "0")) == 1 else 10
    return eraserlib.erase(model, convex.logistic_loss, problem.examples,
                           eraserlib.InstanceRemoval(problem.examples[first:first + 3]), solver="cg",
                           weight_decay=problem.weight_decay, progress=False)


#: name → function(setup folder, output folder or None for the one-process run).
SCENARIOS = {
    "convex_exact": lambda setup, out: _convex(setup, "exact", "ir"),
    "convex_cg": lambda setup, out: _convex(setup, "cg", "rc"),
    "convex_cg_subsample": lambda setup, out: _convex(setup, "cg", "ir", hessian_examples=64),
    "convex_llmeraser": lambda setup, out: _convex(setup, "llmeraser", "ir"),
    "convex_lissa": lambda setup, out: _convex(setup, "lissa", "rc", depth=300),
    "convex_datainf": lambda setup, out: _convex(setup, "datainf", "ir"),
    "lora_cg": lambda setup, out: _lora(setup, "cg"),  # what adapter_cg computes, without the files
    "adapter_cg": lambda setup, out: _adapter(setup, out, "adapter_cg"),
    "adapter_poisoned_example": lambda setup, out: _adapter(setup, out, "adapter_poisoned_example",
                                                            loss=PoisonedLoss(lora_data())),
    "adapter_fails_mid_solve": lambda setup, out: _adapter(setup, out, "adapter_fails_mid_solve",
                                                           loss=PoisonedLoss(lora_data(), fail_on_rank=1, fail_at=6)),
    "adapter_occupied_target": lambda setup, out: _adapter(setup, out, "adapter_occupied_target", occupied=True),
    "disagree": lambda setup, out: _disagree(setup),
    "last_rank_fails": lambda setup, out: _last_rank_fails(setup),
    "fsdp_datainf": lambda setup, out: _fsdp(setup, out, "datainf", save=out is not None),
    "fsdp_cg": lambda setup, out: _fsdp(setup, out, "cg"),
    "fsdp_cg_unresharded": lambda setup, out: _fsdp(setup, out, "cg", reshard=False),
    "fsdp_sharded_adapter": lambda setup, out: _fsdp(setup, out, "cg", shard_adapter=True),
    "fsdp_gauss_newton": _fsdp_gauss_newton,
}


def run(name: str, setup: Path, out: Path | None) -> dict:
    """One scenario as a record: the delta and diagnostics, or the error (type, message)."""
    try:
        result = SCENARIOS[name](setup, out)
    except Exception as error:  # noqa: BLE001 - the record says which error each rank raised
        return {"error": type(error).__name__, "message": str(error)}
    return {"delta": result.delta, "diagnostics": result.diagnostics}


def main() -> None:
    import torch.distributed as dist

    arguments = argparse.ArgumentParser()
    arguments.add_argument("--setup", type=Path, required=True)
    arguments.add_argument("--out", type=Path, required=True)
    arguments.add_argument("--scenarios", nargs="+", required=True)
    arguments.add_argument("--timeout", type=float, default=120.0, help="seconds a collective may wait")
    arguments = arguments.parse_args()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=arguments.timeout))
    rank = dist.get_rank()
    for name in arguments.scenarios:
        record = run(name, arguments.setup, arguments.out)
        record["output_exists_on_return"] = (arguments.out / f"{name}-erased" / "eraser_manifest.json").is_file()
        torch.save(record, arguments.out / f"{name}-rank{rank}.pt")
    torch.save(garbage_census(), arguments.out / f"garbage-rank{rank}.pt")
    dist.destroy_process_group()


def garbage_census() -> dict[str, int]:
    """How many erase groups and tensors the scenarios left in unreachable cycles (then freed).

    Such a cycle keeps the process group alive past ``destroy_process_group``; freed at interpreter
    exit, it made gloo abort the rank. Plain ``destroy_process_group`` follows, as in a user's script.
    """
    import gc

    from eraserlib.distributed import Group

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        census = {"groups": sum(isinstance(o, Group) for o in gc.garbage),
                  "tensors": sum(isinstance(o, torch.Tensor) for o in gc.garbage)}
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.collect()
    return census


if __name__ == "__main__":
    main()
