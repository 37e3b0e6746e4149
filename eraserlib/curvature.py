"""Gauss–Newton curvature: G v = Jᵀ H_out J v, without forming the Jacobian J.

For a loss split as ℓ(θ) = L(f(θ)) — f the model's outputs (the logits), L the loss of the
outputs (:class:`eraserlib.losses.OutputLoss`) — the Hessian is

    ∇²ℓ = Jᵀ H_out J + Σₖ (∂L/∂fₖ) ∇²fₖ,      J = ∂f/∂θ,  H_out = ∂²L/∂f²,

and the Gauss–Newton matrix G = Jᵀ H_out J keeps the first term only. It is positive
semi-definite whenever L is convex in f (cross-entropy is: H_out = diag(p) − ppᵀ per predicted
token, times the token's weight in the per-example mean), so (G + λI)x = b has a solution for
every λ > 0, while the dropped term — the model's curvature weighted by the residuals ∂L/∂f —
is what makes the Hessian of a trained, not fully converged adapter indefinite.

One product G v costs three steps:

1. J v, the change of the outputs along v: forward mode (``torch.autograd.forward_ad`` dual
   numbers through ``torch.func.functional_call``: one forward pass that carries tangents and
   keeps the ordinary backward graph), or — the *double-vjp trick* — the derivative of the
   linear map u ↦ Jᵀu (one backward pass with ``create_graph``) along v, i.e. a second backward
   pass. Forward mode needs first derivatives of the network only (every op must have a
   forward-mode formula); the double-vjp needs every op twice differentiable, like an HVP (a
   once-differentiable op would cut the path silently, so the first product checks for one).
2. H_out (J v) by double backward through the loss head L alone (cheap: it sees the logits,
   not the network). Exact for any loss head; G is PSD when L is convex.
3. Jᵀ (H_out J v): one ordinary backward pass through the network.

Which of the two ways to form J v is faster depends on the model and the hardware;
:data:`DEFAULT_METHOD` is the one ``benchmarks/curvature_cost.py`` measured faster on the tiny
Llama (``benchmarks/results/curvature_cost-default.json``). ``method="auto"`` uses it and falls
back to the other when the model lacks what it needs (an op without a forward-mode formula, or
one without a second derivative); :attr:`GaussNewtonProduct.method` then says which ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.autograd.forward_ad as forward_ad
from torch import nn

from eraserlib.errors import DoubleBackwardUnsupportedError
from eraserlib.hessian import double_backward_error, once_differentiable_in_graph
from eraserlib.parameters import flatten, unflatten

#: The ways to form J v (see the module docstring); "auto" is :data:`DEFAULT_METHOD` with a fallback.
METHODS = ("auto", "double_vjp", "forward")
#: Faster on the tiny LoRA Llama on the CPU (benchmarks/curvature_cost.py measures both).
DEFAULT_METHOD = "double_vjp"


def check_output_loss(loss_fn: Any) -> None:
    """Raise ``TypeError`` unless ``loss_fn`` offers the split Gauss–Newton curvature needs.

    Args:
        loss_fn: The ``loss_fn`` given to ``erase``.

    Raises:
        TypeError: it has no ``outputs(model, batch)`` and ``loss_of_outputs(outputs, batch)``.
    """
    missing = [name for name in ("outputs", "loss_of_outputs") if not callable(getattr(loss_fn, name, None))]
    if missing:
        raise TypeError(
            f"curvature='gauss_newton' needs the loss split into the model's outputs and the loss of the outputs, but "
            f"loss_fn ({type(loss_fn).__name__}) has no {' and no '.join(missing)} method. Pass "
            "eraserlib.causal_lm_loss for Hugging Face causal LMs (with eraserlib.CausalLMCollator), or an object "
            "with outputs(model, batch) -> logits and loss_of_outputs(logits, batch) -> mean loss (the "
            "eraserlib.losses.OutputLoss protocol) — or use curvature='hessian', which needs loss_fn(model, batch) only."
        )


def check_curvature(curvature: Any, solver: Any, loss_fn: Any) -> None:
    """Raise a clear error unless ``curvature`` is known and fits the solver and the loss.

    Raises:
        ValueError: an unknown curvature, or Gauss–Newton asked of DataInf (which has its own).
        TypeError: Gauss–Newton with a ``loss_fn`` that is not split (see :func:`check_output_loss`).
    """
    from eraserlib.objective import CURVATURES

    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}.")
    if curvature == "gauss_newton":
        if getattr(solver, "name", solver) == "datainf":
            raise ValueError("solver='datainf' has its own curvature (a per-tensor empirical Fisher) and ignores "
                             "curvature=; use curvature='hessian' with it, or another solver for Gauss–Newton.")
        check_output_loss(loss_fn)


def output_hessian_product(loss_fn: Any, outputs: torch.Tensor, batch: Any, tangent: torch.Tensor) -> torch.Tensor:
    """H_out t: the Hessian of ``loss_fn.loss_of_outputs`` w.r.t. the outputs, times t (same shape as the outputs).

    Double backward through the loss head only; ``outputs`` is detached first, so the network
    is not touched. With ``tangent`` of shape (m, *outputs.shape) it returns m products at once.
    """
    leaf = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        gradient = torch.autograd.grad(loss_fn.loss_of_outputs(leaf, batch), leaf, create_graph=True)[0]
    batched = tangent.dim() == leaf.dim() + 1
    (product,) = torch.autograd.grad(gradient, leaf, grad_outputs=tangent, is_grads_batched=batched,
                                     allow_unused=True)
    return torch.zeros_like(tangent) if product is None else product  # a loss linear in the outputs


class _OutputsOf(nn.Module):
    """``loss_fn.outputs(model, batch)`` as a module, so ``functional_call`` can substitute θ inside ``model``."""

    def __init__(self, model: nn.Module, loss_fn: Any):
        super().__init__()
        self.model = model
        self._loss = [loss_fn]  # in a list: a loss that is itself a Module must not become a submodule

    def forward(self, batch: Any) -> torch.Tensor:
        return self._loss[0].outputs(self.model, batch)


def _forward_mode_jvp(model: nn.Module, loss_fn: Any, batch: Any, names: Sequence[str],
                      params: Sequence[torch.Tensor], tangents: Sequence[torch.Tensor]):
    """(f(θ) with its backward graph, J v) from one forward pass with dual numbers."""
    wrapper = _OutputsOf(model, loss_fn)
    with forward_ad.dual_level():
        duals = {f"model.{name}": forward_ad.make_dual(p, t.to(p.dtype))
                 for name, p, t in zip(names, params, tangents)}
        unpacked = forward_ad.unpack_dual(torch.func.functional_call(wrapper, duals, (batch,), strict=False))
    if unpacked.tangent is None:  # the outputs do not depend on θ
        return unpacked.primal, torch.zeros_like(unpacked.primal)
    return unpacked.primal, unpacked.tangent


def _check_twice_differentiable(transposed: Sequence[torch.Tensor | None]) -> None:
    """Raise unless the backward pass that gave Jᵀu is itself differentiable (checked once per product object).

    A once-differentiable op (a fused kernel, ``@once_differentiable``) cuts the path from u to
    Jᵀu without an error: J v would silently miss the parameters behind it.
    """
    if any(g is not None and not g.requires_grad for g in transposed) or once_differentiable_in_graph(transposed):
        raise double_backward_error("the model has a once-differentiable op (@once_differentiable backward)")


def _double_vjp_jvp(model: nn.Module, loss_fn: Any, batch: Any, params: Sequence[torch.Tensor],
                    tangents: Sequence[torch.Tensor], check: bool = False):
    """(f(θ) with its backward graph, J v) by differentiating u ↦ Jᵀu along v (two backward passes)."""
    outputs = loss_fn.outputs(model, batch)
    dummy = torch.zeros_like(outputs, requires_grad=True)
    transposed = torch.autograd.grad(outputs, params, grad_outputs=dummy, create_graph=True, allow_unused=True)
    if check:
        _check_twice_differentiable(transposed)
    dot = sum((g * t).sum() for g, t in zip(transposed, tangents) if g is not None)
    if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
        return outputs, torch.zeros_like(outputs)
    try:
        (jv,) = torch.autograd.grad(dot, dummy, retain_graph=True, allow_unused=True)
    except RuntimeError as error:
        raise double_backward_error(error) from error
    return outputs, torch.zeros_like(outputs) if jv is None else jv


def _transpose_product(outputs: torch.Tensor, params: Sequence[torch.Tensor], cotangent: torch.Tensor,
                       *, batched: bool = False, retain_graph: bool = False) -> torch.Tensor:
    """Jᵀ u for u of the outputs' shape (or (m, *shape) with ``batched``), flat (p,) or (m, p)."""
    grads = torch.autograd.grad(outputs, params, grad_outputs=cotangent, is_grads_batched=batched,
                                retain_graph=retain_graph, allow_unused=True)
    if batched:
        m = cotangent.shape[0]
        return torch.cat([torch.zeros(m, p.numel(), dtype=p.dtype, device=p.device) if g is None
                          else g.reshape(m, -1) for g, p in zip(grads, params)], dim=1)
    return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])


class GaussNewtonProduct:
    """G_B v = J_Bᵀ H_out J_B v for the mean loss of one batch B (see the module docstring).

    Args:
        model: The model; θ are ``params`` (its parameters named ``names``).
        loss_fn: An :class:`~eraserlib.losses.OutputLoss` (``outputs`` and ``loss_of_outputs``).
        names: Qualified names of the parameters θ in ``model``.
        params: The parameters θ.
        method: "auto" (:data:`DEFAULT_METHOD`, falling back to the other method when the model
            lacks what it needs), "double_vjp" or "forward".

    Attributes:
        method: The method the last product used ("double_vjp" or "forward").
        fallback: Why "auto" left its first choice (None while it has not).
    """

    def __init__(self, model: nn.Module, loss_fn: Any, names: Sequence[str], params: Sequence[torch.Tensor],
                 method: str = "auto"):
        if method not in METHODS:
            raise ValueError(f"gauss_newton_method must be one of {METHODS}, got {method!r}.")
        check_output_loss(loss_fn)
        self.model, self.loss_fn, self.names, self.params = model, loss_fn, list(names), list(params)
        self.automatic = method == "auto"
        self.method = DEFAULT_METHOD if self.automatic else method
        self.fallback: str | None = None
        self._checked = False  # whether the double-vjp path was checked for once-differentiable ops

    def outputs_and_jvp(self, batch: Any, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(θ) with its graph, J v) for a flat v (p,), by :attr:`method` (switching once if "auto" must)."""
        tangents = unflatten(vector.to(self.params[0].dtype), self.params)
        try:
            return self._jvp(self.method, batch, tangents)
        except (NotImplementedError, RuntimeError, DoubleBackwardUnsupportedError) as error:
            if not self.automatic or self.fallback is not None:
                raise
            other = "forward" if self.method == "double_vjp" else "double_vjp"
            self.fallback = f"{self.method} failed ({type(error).__name__}: {str(error)[:200]}); using {other}"
            self.method = other
            return self._jvp(other, batch, tangents)

    def _jvp(self, method: str, batch: Any, tangents: Sequence[torch.Tensor]):
        if method == "forward":
            return _forward_mode_jvp(self.model, self.loss_fn, batch, self.names, self.params, tangents)
        result = _double_vjp_jvp(self.model, self.loss_fn, batch, self.params, tangents, check=not self._checked)
        self._checked = True
        return result

    def __call__(self, batch: Any, vector: torch.Tensor) -> torch.Tensor:
        """G_B v, flat (p,), in the parameters' dtype."""
        outputs, jv = self.outputs_and_jvp(batch, vector)
        return _transpose_product(outputs, self.params, output_hessian_product(self.loss_fn, outputs, batch, jv))

    def columns(self, batch: Any, basis: torch.Tensor) -> torch.Tensor:
        """G_B E for a block of m vectors E (m, p) at once, shape (m, p): the dense matrix, block by block.

        J E by the double-vjp trick batched over the m vectors (``is_grads_batched``), then H_out
        and Jᵀ batched the same way: three passes per block instead of 3m.
        """
        outputs = self.loss_fn.outputs(self.model, batch)
        dummy = torch.zeros_like(outputs, requires_grad=True)
        grads = torch.autograd.grad(outputs, self.params, grad_outputs=dummy, create_graph=True, allow_unused=True)
        _check_twice_differentiable(grads)
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.params)])
        if not flat.requires_grad:
            return torch.zeros(basis.shape[0], basis.shape[1], dtype=basis.dtype, device=basis.device)
        try:
            (jv,) = torch.autograd.grad(flat, dummy, grad_outputs=basis.to(flat.dtype), is_grads_batched=True,
                                        retain_graph=True)
        except RuntimeError as error:
            raise double_backward_error(error) from error
        hjv = output_hessian_product(self.loss_fn, outputs, batch, jv)  # (m, *outputs.shape)
        return _transpose_product(outputs, self.params, hjv, batched=True, retain_graph=True)


__all__ = ["DEFAULT_METHOD", "GaussNewtonProduct", "METHODS", "check_curvature", "check_output_loss",
           "output_hessian_product"]
