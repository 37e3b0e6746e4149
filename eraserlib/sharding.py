"""A frozen base sharded across devices with FSDP2: what an erase can do through it, and what it refuses.

For a base that does not fit one device, shard the *frozen base* with
FSDP2 (``torch.distributed.fsdp.fully_shard``) and keep the adapter replicated: pass its
parameters as ``ignored_params`` (Accelerate: ``FullyShardedDataParallelPlugin(fsdp_version=2,
ignored_modules=...)``). What works with torch 2.13 (measured on the CPU with gloo,
``tests/test_distributed.py``):

* gradients (``torch.autograd.grad``, what b and DataInf need): exact;
* forward-mode Jacobian products (``torch.autograd.forward_ad`` dual numbers through
  ``torch.func.functional_call``, the Gauss–Newton product's forward mode): **fail** inside FSDP2's
  own autograd Function ("A custom Function's forward is returning a view (or an input as-is) but
  the jvp is not returning a view"), so neither way of forming J v works through a sharded base
  (``tests/test_distributed.py::test_fsdp_gauss_newton_products`` records it); erase raises
  :class:`~eraserlib.DoubleBackwardUnsupportedError` saying so;
* Hessian-vector products by double backward: **fail** with FSDP's default resharding — the
  second backward reads the all-gathered weights FSDP freed after the first one ("setStorage:
  sizes [16, 16], … out of bounds for storage of size 0"); erase then raises
  :class:`~eraserlib.DoubleBackwardUnsupportedError` naming the two ways out: a Gauss–Newton
  curvature, or ``set_reshard_after_forward(False)`` + ``set_reshard_after_backward(False)``
  (exact, but every rank then holds the whole unsharded base during a product — no saving);
* the Gauss–Newton product's other formulation, the "double-vjp" trick (J v as the derivative
  of Jᵀu in u), is a double backward too and fails the same way; forward-over-reverse HVPs fail
  as well ("A custom Function's forward is returning a view … but the jvp is not returning a
  view", and ``aten::silu_backward`` has no forward derivative even without FSDP);
* a *sharded* adapter (its parameters DTensors, not in ``ignored_params``) gets no gradient at
  all from ``torch.autograd.grad`` (FSDP2 reduce-scatters into ``.grad`` instead): erase refuses
  it; FSDP1 (``FullyShardedDataParallel``, flat sharded parameters) likewise, and a
  ``DistributedDataParallel`` wrapper (pass ``ddp.module``: erase reduces by itself).

Under FSDP every forward pass is a collective (its all-gathers), so every rank runs the same
number of chunks (ranks with a shorter share run weight-0 chunks). A failure of one rank's
``loss_fn`` *within* a sum then leaves the others in FSDP's own all-gather, which eraserlib's
failure flags cannot reach: every rank fails only when the process group's ``timeout`` expires
(observed with gloo and a 40 s timeout: "Application timeout caused pair closure" on one rank,
"Timed out waiting 40000ms for send operation to complete" on the other), or when the launcher
stops the others (``torchrun`` does once a worker exits). Failures outside the sums (bad
arguments, ranks that disagree, the write) are reported cleanly under FSDP too.

"""

from __future__ import annotations

import sys

import torch
from torch import nn

from eraserlib.errors import DistributedConfigurationError, DoubleBackwardUnsupportedError

FSDP_FORWARD_MODE = (
    "Curvature products do not work through a base sharded with FSDP2's fully_shard on this torch: "
    "Hessian-vector products and the double-vjp Gauss–Newton product need a second backward through "
    "all-gathered weights FSDP frees after the first, and the forward-mode Gauss–Newton product fails in "
    "FSDP's own autograd Function. Keep the base unsharded between forward and backward — "
    "model.set_reshard_after_forward(False) and model.set_reshard_after_backward(False) — if the whole "
    "unsharded base fits on each device, or erase on one device. Gradients (the right-hand side, DataInf, "
    "the certificate) work. Original error: {error}"
)
#: How FSDP2's all-gather Function fails under forward-mode AD (torch 2.13).
FSDP_FORWARD_MODE_SIGNATURE = "custom Function's forward is returning a view"

FSDP_DOUBLE_BACKWARD = (
    "Hessian-vector products (double backward) do not work through a base sharded with FSDP2's fully_shard "
    "under its default resharding: the second backward pass reads all-gathered weights that FSDP freed after "
    "the first. Use a Gauss–Newton curvature (first derivatives and forward-mode products only), or keep the "
    "base unsharded between forward and backward — model.set_reshard_after_forward(False) and "
    "model.set_reshard_after_backward(False) — if the whole unsharded base fits on each device. "
    "Original error: {error}"
)



def explain(error: Exception) -> Exception:
    """A curvature failure through an FSDP2-sharded base, named for what it is (not fused attention)."""
    if isinstance(error, DoubleBackwardUnsupportedError):
        explained = DoubleBackwardUnsupportedError(FSDP_DOUBLE_BACKWARD.format(error=error))
    elif isinstance(error, RuntimeError) and FSDP_FORWARD_MODE_SIGNATURE in str(error):
        explained = DoubleBackwardUnsupportedError(FSDP_FORWARD_MODE.format(error=error))
    else:
        return error
    explained.__cause__ = error
    return explained


def is_dtensor(tensor: torch.Tensor) -> bool:
    # a DTensor exists only where its module was imported: importing it here would cost every erase ~2 s
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def check_model(model: nn.Module) -> bool:
    """Whether ``model``'s base is sharded with FSDP2 (``fully_shard``) with the adapter replicated.

    Raises:
        DistributedConfigurationError: for a wrapper or sharding erase cannot differentiate through
            correctly (the message says what to do instead).
    """
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        raise DistributedConfigurationError(
            "erase got a DistributedDataParallel wrapper: pass the wrapped module (ddp_model.module, or "
            "accelerator.unwrap_model(model)). erase shares the work between ranks itself, and DDP's own "
            "collectives in forward would have to run in step with it.")
    fsdp = sys.modules.get("torch.distributed.fsdp")  # FSDP models exist only once it was imported
    if fsdp is None:
        return False
    modules = list(model.modules())
    if any(isinstance(m, fsdp.FullyShardedDataParallel) for m in modules):
        raise DistributedConfigurationError(
            "erase cannot differentiate through FSDP1 (FullyShardedDataParallel): it flattens and shards the "
            "parameters, and torch.autograd.grad returns no gradient for them. Shard the frozen base with FSDP2 "
            "instead (torch.distributed.fsdp.fully_shard, or accelerate's fsdp_version=2), with the adapter's "
            "parameters in ignored_params.")
    sharded_adapter = [name for name, p in model.named_parameters() if p.requires_grad and is_dtensor(p)]
    if sharded_adapter:
        raise DistributedConfigurationError(
            f"The adapter's parameters are sharded (DTensors, e.g. {sharded_adapter[0]!r}): torch.autograd.grad "
            "gives them no gradient under FSDP2, which would make every product zero. Keep the adapter replicated: "
            "fully_shard(module, ..., ignored_params=set(adapter parameters)) (accelerate: FullyShardedDataParallel"
            "Plugin(fsdp_version=2, ignored_modules=...)); only the frozen base needs sharding.")
    return any(isinstance(m, fsdp.FSDPModule) for m in modules)
