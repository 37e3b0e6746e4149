"""The training objective over the trainable parameters, its gradients and Hessian-vector products.

Everything the solvers need is here, behind one object, :class:`TrainingObjective`, for

    R(θ) = (1/n) Σᵢ ℓ(zᵢ; θ) + (wd/2) ‖θ‖²,

where θ are the model's parameters with ``requires_grad=True`` (the LoRA matrices of a
``PeftModel``), ℓ is the user's ``loss_fn`` and zᵢ the n training examples. Vectors in
parameter space are *flat* 1-D tensors of length p (the number of trainable scalars): the
solvers only need dot products, norms and axpys, and one flat tensor keeps their code short.

The curvature the solvers use is :meth:`TrainingObjective.data_product`: the Hessian
(``curvature="hessian"``, the default) or the Gauss–Newton matrix (``curvature="gauss_newton"``,
:mod:`eraserlib.curvature`: positive semi-definite, needs the loss split into outputs and loss of
the outputs).

Hessian-vector products are :mod:`eraserlib.hessian`'s, the parameter vectors' helpers
:mod:`eraserlib.parameters`' (both importable from here too).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.distributed import Selection, resolve_group
from eraserlib.errors import NonFiniteError
from eraserlib.hessian import hessian_vector_product
from eraserlib.parameters import flatten, trainable_parameters, unflatten

LossFn = Callable[[nn.Module, Any], torch.Tensor]

#: The curvatures ``data_product`` can use.
CURVATURES = ("hessian", "gauss_newton")

@contextlib.contextmanager
def _computation_dtype(model: nn.Module, dtype: torch.dtype | None):
    """Run the model in at least ``dtype``'s precision (e.g. float32 for a bf16 model), restoring after.

    A bf16 Hessian-vector product was reported 5% off the float32 one on a 1B model, far
    more than the solvers' tolerance, so HVPs run in float32 unless told otherwise. Tensors
    already at least as precise (float64) are left alone. Parameters keep their identity
    (only ``.data`` is swapped), so references held elsewhere stay valid.
    """
    if dtype is None:
        yield
        return
    width = torch.finfo(dtype).bits
    tensors = [t for t in list(model.parameters()) + list(model.buffers())
               if t.is_floating_point() and torch.finfo(t.dtype).bits < width]
    original = [t.dtype for t in tensors]
    for t in tensors:
        t.data = t.data.to(dtype)
    try:
        yield
    finally:
        for t, kind in zip(tensors, original):
            t.data = t.data.to(kind)


@contextlib.contextmanager
def _twice_differentiable_attention():
    """Route PyTorch SDPA through its math kernel, the only one with a second derivative."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def _check_finite(vector: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(vector).all():
        bad = (~torch.isfinite(vector)).sum().item()
        raise NonFiniteError(
            f"The {what} has {bad} non-finite entries (NaN or Inf). Check the loss on these "
            "examples (e.g. empty targets, log(0)), lower the learning rate the adapter was trained "
            "with, or compute in float32 (compute_dtype=torch.float32)."
        )
    return vector


class TrainingObjective:
    """R(θ) = (1/n) Σ ℓ(zᵢ; θ) + (wd/2)‖θ‖² with mini-batch and full-data oracles.

    Args:
        model: The trained model; only parameters with ``requires_grad=True`` are θ.
        loss_fn: ``loss_fn(model, batch) -> scalar``, the *mean* loss over the examples in the
            batch (so that a batch of k examples weighs k/n in R).
        train_data: The n training examples, as the model was trained on them.
        weight_decay: wd, the L2 coefficient of the training objective.
        batch_size: Examples per forward pass (memory) and per stochastic HVP (noise).
        collate_fn: Turns a list of examples into a batch; default ``torch.utils.data.default_collate``.
        seed: Seeds the mini-batch order.
        compute_dtype: Dtype of the model during gradients and HVPs (float32 by default, see
            :func:`_computation_dtype`); ``None`` keeps the model's own.
        process_group: The ranks that share the sums (:func:`eraserlib.distributed.resolve_group`;
            None: the default process group if ``torch.distributed`` is initialised, else this
            process alone). Each rank sums over its share of every list of examples
            (:meth:`chunks`) and :meth:`reduce` adds the shares up.
        curvature: What :meth:`data_product` multiplies by: "hessian" (``data_hvp``) or
            "gauss_newton" (``data_gauss_newton``; ``loss_fn`` must offer ``outputs`` and
            ``loss_of_outputs``, see :class:`eraserlib.losses.OutputLoss`).
        gauss_newton_method: How the Gauss–Newton product forms J v: "auto", "double_vjp" or
            "forward" (:class:`eraserlib.curvature.GaussNewtonProduct`).

    Attributes:
        hvp_count: Curvature products (Hessian or Gauss–Newton), one per chunk of ≤ batch_size
            examples; ``gauss_newton_count`` counts the Gauss–Newton ones among them.
        hvp_examples: Examples seen by those products.
        gradient_count: Backward passes for gradients.
        forward_count: Forward-only passes (loss evaluations, :meth:`loss_sum`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_data: Sequence[Any],
        *,
        weight_decay: float = 0.0,
        batch_size: int = 16,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int = 0,
        compute_dtype: torch.dtype | None = torch.float32,
        process_group: Any = None,
        curvature: str = "hessian",
        gauss_newton_method: str = "auto",
    ):
        if curvature not in CURVATURES:
            raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        if weight_decay < 0 or not math.isfinite(weight_decay):
            raise ValueError(f"weight_decay must be a finite number ≥ 0, got {weight_decay}.")
        self.model = model
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.n = len(train_data)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        self.compute_dtype = compute_dtype
        self.names, self.params = trainable_parameters(model)
        self.group = resolve_group(process_group).for_model(model, compute_dtype)
        self.num_parameters = sum(p.numel() for p in self.params)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.hvp_count = 0  # curvature products (Hessian or Gauss–Newton), one per chunk of ≤ batch_size examples
        self.hvp_examples = 0  # examples seen by those passes
        self.gradient_count = 0
        self.gauss_newton_count = 0
        self.forward_count = 0
        self._graph_checked = False  # whether an HVP has checked the graph for once-differentiable ops
        self.curvature = curvature
        self.gauss_newton = None
        if curvature == "gauss_newton":
            from eraserlib.curvature import GaussNewtonProduct  # imports this module

            self.gauss_newton = GaussNewtonProduct(model, loss_fn, self.names, self.params, gauss_newton_method)
        # Vectors in parameter space: float32, or float64 when the model is float64.
        self.vector_dtype = torch.float64 if any(p.dtype == torch.float64 for p in self.params) else torch.float32

    def on(self, examples: Sequence[Any]) -> TrainingObjective:
        """The same objective (model, loss, wd, batch size, seed, dtype, ranks, curvature) over other ``examples``.

        Used for the corrected objective R' over the data a request leaves; its counters start at 0.
        """
        method = self.gauss_newton.method if self.gauss_newton is not None else "auto"
        return TrainingObjective(self.model, self.loss_fn, examples, weight_decay=self.weight_decay,
                                 batch_size=self.batch_size, collate_fn=self.collate_fn, seed=self.seed,
                                 compute_dtype=self.compute_dtype, process_group=self.group,
                                 curvature=self.curvature, gauss_newton_method=method)

    # -- context -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def evaluation(self):
        """Eval mode (no dropout: HVPs must be deterministic), float32, twice-differentiable SDPA."""
        was_training = self.model.training
        self.model.eval()
        try:
            with _computation_dtype(self.model, self.compute_dtype), _twice_differentiable_attention():
                yield
        finally:
            self.model.train(was_training)

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def parameters_vector(self) -> torch.Tensor:
        """θ̂ as a flat vector (p,)."""
        return flatten([p.detach() for p in self.params], self.vector_dtype)

    # -- data --------------------------------------------------------------------------------
    def chunks(self, examples: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield (number of examples, collated batch) over this rank's share of ``examples``, in order.

        In one process that is all of them. On W ranks it is the examples at positions rank,
        rank + W, … (:meth:`eraserlib.distributed.Group.chunks`): a method that sums over
        ``examples`` adds its chunks up and passes the partial sum to :meth:`reduce`
        (:meth:`sum_over` does both).
        """
        for positions, batch in self.group.chunks(examples, self.batch_size, self.collate_fn):
            yield len(positions), batch

    def reduce(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Σ over ranks of ``compute()``, this rank's partial sum over its :meth:`chunks` (one process: its value).

        The one place where ranks combine their work; if ``compute`` raises on any rank, every
        rank raises (the others :class:`~eraserlib.distributed.RankFailedError`), so none waits.
        """
        return self.group.sum(compute)

    def sum_over(self, examples: Sequence[Any], per_chunk: Callable[[int, Any], torch.Tensor],
                 zero: torch.Tensor) -> torch.Tensor:
        """Σ over the chunks of ``examples`` (on every rank) of ``per_chunk(count, batch)``; ``zero`` is the empty sum."""
        def partial() -> torch.Tensor:
            total = zero.clone()
            for count, batch in self.chunks(examples):
                total += per_chunk(count, batch)
            return total

        return self.reduce(partial)

    def sample_batch(self) -> Sequence[Any]:
        """A uniformly random mini-batch of ``batch_size`` distinct training examples (seeded; read lazily)."""
        size = min(self.batch_size, self.n)
        indices = torch.randperm(self.n, generator=self.generator)[:size].tolist()
        return Selection(self.train_data, indices)

    def subsample(self, size: int | None) -> Sequence[Any]:
        """A random subset of ``size`` training examples, or all of them if ``size`` is None.

        The subset depends only on the seed and the size, so the spectrum estimate and CG on a
        Hessian subsample of the same size see the same examples.
        """
        if size is None or size >= self.n:
            return self.train_data
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + size)
        indices = sorted(torch.randperm(self.n, generator=generator)[:size].tolist())
        return Selection(self.train_data, indices)

    # -- oracles -----------------------------------------------------------------------------
    def loss(self, batch: Any) -> torch.Tensor:
        """``loss_fn(model, batch)``, checked to be a scalar tensor."""
        loss = self.loss_fn(self.model, batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(
                "loss_fn(model, batch) must return a scalar tensor (the mean loss over the batch), "
                f"got {type(loss).__name__} with shape {getattr(loss, 'shape', None)}."
            )
        return loss

    def loss_sum_gradient(self, examples: Sequence[Any]) -> torch.Tensor:
        """Σ_{z ∈ examples} ∇ℓ(z; θ̂) as a flat float32 vector (p,), data loss only."""
        def gradient(count: int, batch: Any) -> torch.Tensor:
            grads = torch.autograd.grad(self.loss(batch), self.params, allow_unused=True)
            flat = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)])
            self.gradient_count += 1
            return count * flat.to(self.vector_dtype)

        zero = torch.zeros(self.num_parameters, dtype=self.vector_dtype, device=self.device)
        return _check_finite(self.sum_over(examples, gradient, zero), "gradient of the loss")

    def loss_sum(self, examples: Sequence[Any]) -> float:
        """Σ_{z ∈ examples} ℓ(z; θ) by forward passes only (no graph): what line searches evaluate."""
        def value(count: int, batch: Any) -> torch.Tensor:
            self.forward_count += 1
            return count * self.loss(batch).detach().to(torch.float64).reshape(1)

        with torch.no_grad():
            total = float(self.sum_over(examples, value, torch.zeros(1, dtype=torch.float64, device=self.device)))
        if not math.isfinite(total):
            raise NonFiniteError("The loss is non-finite (NaN or Inf) on these examples at these parameters: check "
                                 "the examples and the loss (e.g. an infinite input, log(0)); inside a line search "
                                 "or after an update, the step was too long.")
        return total

    def per_example_losses(self, examples: Sequence[Any]) -> list[float]:
        """ℓ(z; θ) for each example (forward passes of one example each, no graph)."""
        def values() -> torch.Tensor:
            losses = torch.zeros(len(examples), dtype=torch.float64, device=self.device)
            for positions, batch in self.group.chunks(examples, 1, self.collate_fn):
                loss = self.loss(batch)
                self.forward_count += 1
                if positions:  # an empty chunk only keeps an FSDP rank in step
                    losses[positions[0]] = float(loss)
            return losses

        with torch.no_grad():
            return self.reduce(values).tolist()

    def loss_sum_and_gradient(self, examples: Sequence[Any]) -> tuple[float, torch.Tensor]:
        """(Σ ℓ(z; θ), Σ ∇ℓ(z; θ)) over ``examples`` from the same passes (the loss comes free with the gradient)."""
        def both(count: int, batch: Any) -> torch.Tensor:
            loss = self.loss(batch)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
            flat = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)])
            self.gradient_count += 1
            # float64 for the sum, so the loss keeps its digits beside the gradient (one reduction for both)
            return count * torch.cat([flat.to(torch.float64), loss.detach().to(torch.float64).reshape(1)])

        zero = torch.zeros(self.num_parameters + 1, dtype=torch.float64, device=self.device)
        total = self.sum_over(examples, both, zero)
        return float(total[-1]), _check_finite(total[:-1].to(self.vector_dtype), "gradient of the loss")

    def data_hvp(self, examples: Sequence[Any], vector: torch.Tensor) -> torch.Tensor:
        """(1/|examples|) Σ ∇²ℓ(z; θ̂) v: the data Hessian of ``examples`` times v, flat (p,)."""
        def product(count: int, batch: Any) -> torch.Tensor:
            self.hvp_count += 1
            self.hvp_examples += count
            hv = hessian_vector_product(self.loss(batch), self.params, vector, check=not self._graph_checked)
            self._graph_checked = True
            return count * hv.to(self.vector_dtype)

        total = self.sum_over(examples, product, torch.zeros_like(vector, dtype=self.vector_dtype))
        return _check_finite(total / len(examples), "Hessian-vector product")

    def hvp(self, vector: torch.Tensor, examples: Sequence[Any] | None = None) -> torch.Tensor:
        """∇²R v = H_data v + wd·v, with H_data over ``examples`` (default: all n; exact but one epoch)."""
        examples = self.train_data if examples is None else examples
        return self.data_hvp(examples, vector) + self.weight_decay * vector

    # -- the curvature the solvers use -------------------------------------------------------
    def data_gauss_newton(self, examples: Sequence[Any], vector: torch.Tensor) -> torch.Tensor:
        """(1/|examples|) Σ J_zᵀ H_out J_z v: the data Gauss–Newton matrix of ``examples`` times v, flat (p,)."""
        if self.gauss_newton is None:
            from eraserlib.curvature import GaussNewtonProduct  # imports this module

            self.gauss_newton = GaussNewtonProduct(self.model, self.loss_fn, self.names, self.params)

        def product(count: int, batch: Any) -> torch.Tensor:
            self.hvp_count += 1
            self.gauss_newton_count += 1
            self.hvp_examples += count
            return count * self.gauss_newton(batch, vector).to(self.vector_dtype)

        total = self.sum_over(examples, product, torch.zeros_like(vector, dtype=self.vector_dtype))
        return _check_finite(total / len(examples), "Gauss–Newton product")

    def data_product(self, examples: Sequence[Any], vector: torch.Tensor) -> torch.Tensor:
        """The data curvature of ``examples`` times v (flat (p,)): the Hessian (``curvature="hessian"``) or the
        Gauss–Newton matrix (``curvature="gauss_newton"``)."""
        if self.curvature == "gauss_newton":
            return self.data_gauss_newton(examples, vector)
        return self.data_hvp(examples, vector)

    def add_counts(self, other: TrainingObjective) -> None:
        """Add another objective's pass counters to this one's (work done on the data after a request)."""
        for name in ("hvp_count", "hvp_examples", "gradient_count", "gauss_newton_count", "forward_count"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def counts(self) -> dict[str, int]:
        """The pass counters, for diagnostics."""
        return {"hvp_count": self.hvp_count, "hvp_examples": self.hvp_examples, "gradient_count": self.gradient_count,
                "gauss_newton_count": self.gauss_newton_count, "forward_count": self.forward_count}

    def curvature_info(self) -> dict[str, Any]:
        """The curvature and, for Gauss–Newton, how J v was formed (and why "auto" switched, if it did)."""
        info: dict[str, Any] = {"curvature": self.curvature}
        if self.gauss_newton is not None:
            info.update(gauss_newton_method=self.gauss_newton.method, gauss_newton_fallback=self.gauss_newton.fallback)
        return info

    def set_parameters(self, vector: torch.Tensor) -> None:
        """Write the flat θ (p,) into the model's trainable parameters, in place."""
        with torch.no_grad():
            for p, piece in zip(self.params, unflatten(vector, self.params)):
                p.copy_(piece.to(device=p.device, dtype=p.dtype))


    def product(self, vector: torch.Tensor, examples: Sequence[Any] | None = None) -> torch.Tensor:
        """(curvature of the objective) v = data curvature · v + wd·v, over ``examples`` (default: all n)."""
        examples = self.train_data if examples is None else examples
        return self.data_product(examples, vector) + self.weight_decay * vector

    def per_example_gradients(self, examples: Sequence[Any]) -> torch.Tensor:
        """∇ℓ(zᵢ; θ̂) for each example, stacked: shape (len(examples), p). One backward each.

        On W ranks each computes the rows of its share and :meth:`reduce` fills in the others
        (each row is one rank's, the others add zeros: exact).
        """
        def rows() -> torch.Tensor:
            stacked = torch.zeros(len(examples), self.num_parameters, dtype=self.vector_dtype, device=self.device)
            for positions, batch in self.group.chunks(examples, 1, self.collate_fn):
                grads = torch.autograd.grad(self.loss(batch), self.params, allow_unused=True)
                self.gradient_count += 1
                if positions:  # an empty chunk only keeps an FSDP rank in step
                    flat = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)])
                    stacked[positions[0]] = flat.to(self.vector_dtype)
            return stacked

        return _check_finite(self.reduce(rows), "per-example gradient")


# The vector helpers and the Hessian-vector product live in eraserlib.parameters and eraserlib.hessian;
# the objective is where callers meet them, so they are importable from here too.
__all__ = ["CURVATURES", "LossFn", "TrainingObjective", "flatten", "hessian_vector_product", "trainable_parameters",
           "unflatten"]
