"""Hessian-vector products by double backward, and what breaks them.

Pearlmutter's trick: Hv = ∇_θ (∇_θ ℓ(θ) · v), one extra backward pass and no p×p matrix. It
costs about 2–3 gradients (``benchmarks/results/throughput-default.json`` and
``curvature_cost-default.json`` measure it here). The second backward needs every operation in
the model to be twice differentiable, which fused attention kernels are not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from eraserlib.errors import DoubleBackwardUnsupportedError
from eraserlib.parameters import flatten, unflatten

_DOUBLE_BACKWARD_HINT = (
    "The model contains an operation without a second derivative, which Hessian-vector "
    "products need (double backward). Fused attention kernels (SDPA's flash/efficient kernels, "
    "flash_attention_2) are the usual cause: load the model with "
    'attn_implementation="eager" (e.g. AutoModelForCausalLM.from_pretrained(path, '
    'attn_implementation="eager")), or run SDPA inside '
    "torch.nn.attention.sdpa_kernel([SDPBackend.MATH]). Original error: {error}"
)


def double_backward_error(error: object) -> DoubleBackwardUnsupportedError:
    """The error to raise when a second derivative is missing, with the fix and the cause ``error``."""
    return DoubleBackwardUnsupportedError(_DOUBLE_BACKWARD_HINT.format(error=error))


def once_differentiable_in_graph(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether the autograd graph behind ``tensors`` holds a ``@once_differentiable`` backward (an error node).

    Such an op (the backward of a fused kernel written as a custom ``autograd.Function``) does not
    raise when one differentiates through it with ``torch.autograd.grad``: its error node hangs off
    a detached copy, so autograd prunes it and the second derivative silently misses every path
    through the op. Walking the graph once finds it.
    """
    stack = [t.grad_fn for t in tensors if t is not None and t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ in ("Error", "DelayedError"):
            return True
        stack.extend(next_node for next_node, _ in node.next_functions)
    return False


def hessian_vector_product(
    loss: torch.Tensor, params: Sequence[torch.Tensor], vector: torch.Tensor, check: bool = True
) -> torch.Tensor:
    """Hv for the Hessian H of ``loss`` with respect to ``params``, by double backward.

    Pearlmutter (1994): Hv = ∇_θ (∇_θ loss · v); one extra backward pass, no p×p matrix.

    Args:
        loss: A scalar that still holds its autograd graph.
        params: The parameters θ (p scalars in all).
        vector: The flat vector v, shape (p,).
        check: Walk the gradient's graph for once-differentiable ops (:func:`once_differentiable_in_graph`);
            a caller that multiplies by the same model again may check only the first time.

    Returns:
        The flat vector Hv, shape (p,), in the parameters' dtype.

    Raises:
        DoubleBackwardUnsupportedError: if the graph has an op without a second derivative.
    """
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    if check and once_differentiable_in_graph(grads):
        raise double_backward_error("the model has a once-differentiable op (@once_differentiable backward)")
    vs = unflatten(vector.to(params[0].dtype), params)
    dot = sum((g * v).sum() for g, v in zip(grads, vs) if g is not None and g.requires_grad)
    if not isinstance(dot, torch.Tensor):
        # No gradient carries a graph: an op cut the second-order path (a once-differentiable
        # kernel) — or the loss is linear in θ. Returning H v = 0 would be silently wrong.
        raise double_backward_error("the gradient has no autograd graph (is the loss linear in the parameters?)")
    try:
        hv = torch.autograd.grad(dot, params, allow_unused=True)
    except RuntimeError as error:
        raise double_backward_error(error) from error
    if all(h is None for h in hv):
        # The gradient's graph never reaches θ again: a once-differentiable op cut the path.
        raise double_backward_error("the second backward pass does not reach any parameter")
    return flatten([torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)])
