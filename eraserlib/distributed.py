"""One erase on several processes: data-parallel sums on ``torch.distributed``, the solver replicated.

An erase is data-parallel work. The right-hand side b, every curvature product H v, the
spectrum estimate and the dense Hessian are sums over training examples,

    Σᵢ f(zᵢ) = Σ_r Σ_{i ≡ r (mod W)} f(zᵢ),

while the solver's state is a few vectors of the adapter's size. So every rank runs the *same*
:func:`eraserlib.erase` call (launched by ``torchrun --nproc_per_node W`` or ``accelerate
launch``), each sums over its share of the examples, and the partial sums are all-reduced
(SUM; float32 vectors, or float64 for a float64 model and for the dense Hessian of ``exact``).
Every rank then holds the same reduced vector and runs the same solver iteration on it: the
solver state is replicated, nothing else is communicated.

The sharding rule (no ``DistributedSampler``): **every rank is given the same ``train_data``
sequence** (a lazily loading dataset keeps that cheap: only the examples a rank reads are
loaded) and processes the examples at positions rank, rank + W, rank + 2W, … of every list it
sums over — the training data, the request's examples, a mini-batch, a sample. The example count
n, the mini-batches (drawn by the same seeded generator on every rank) and the samples are
global, so the answer does not depend on W: for ``exact`` and ``cg`` up to floating-point
round-off (the summation order changes), and the stochastic solvers (``llmeraser``, ``lissa``)
see the same mini-batches in any W and agree with one process up to round-off too
(``tests/test_distributed.py`` measures both).

* The ranks must agree: before any work, ``erase`` checks that every rank has the same n, the
  same request positions, options and adapter values (:meth:`Group.agree`), and refuses with
  :class:`DistributedConfigurationError` otherwise (a training set sharded by the user is the
  usual cause).
* A failure on one rank fails every rank, without a hang: every reduction first exchanges a
  failure flag per rank (:meth:`Group.check`); a rank whose share raised (a ``loss_fn`` that
  fails on one example, a non-finite product, an out-of-memory) raises its own error, every
  other rank :class:`RankFailedError` ("rank k failed: …").
* The diagnostics' product and gradient counts are summed over the ranks (the work done in
  all); the residual history's counts are each rank's own. ``world_size`` records W.
* Results are written once: :func:`eraserlib.adapters.save_erased_adapter` writes on rank 0 only,
  atomically, and no rank returns before the write is done (or failed, on every rank).

**A sharded base (FSDP)** is :mod:`eraserlib.sharding`'s: what works through FSDP2, what erase refuses.

Launch, one erase on W processes (each runs the same script; a GPU per process with NCCL)::

    torchrun --nproc_per_node W erase_script.py

    # erase_script.py
    import torch.distributed as dist
    dist.init_process_group()            # "nccl" on GPUs, "gloo" on CPUs (from the launcher's env)
    result = erase_adapter(base, "adapter/", "adapter-erased/", loss_fn, train_data, request)
    dist.destroy_process_group()
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.errors import DistributedConfigurationError, RankFailedError
from eraserlib.sharding import check_model, explain, is_dtensor

#: Bytes of each rank's error message exchanged when a rank fails (longer messages are cut).
MESSAGE_BYTES = 600

#: ``process_group=LOCAL``: this process alone, even where a default process group is initialised.
LOCAL = False


def _failure_message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _fingerprint(value: Any) -> float:
    """A float64 that two ranks compute equal iff (almost surely) ``value`` is equal: numbers as such,
    anything else a 48-bit hash of its ``repr`` (exact in float64)."""
    if isinstance(value, bool) or value is None:
        value = repr(value)
    if isinstance(value, (int, float)):
        return float(value)
    return float(int(hashlib.sha256(repr(value).encode()).hexdigest()[:12], 16))


@dataclasses.dataclass(frozen=True)
class Group:
    """The ranks that share one erase, and the few collective operations erase needs.

    ``Group()`` is this process alone: every method is then a no-op (or raises the local
    error), so the same code serves one process and W.

    Attributes:
        process_group: The ``torch.distributed`` group (None: this process alone).
        rank: This process's rank in it.
        world_size: W, the number of ranks.
        lockstep: Every rank runs the same number of forward passes (a base sharded by FSDP,
            whose forward passes are collectives).
    """

    process_group: Any = None
    rank: int = 0
    world_size: int = 1
    lockstep: bool = False

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes results (rank 0)."""
        return self.rank == 0

    # -- sharding ----------------------------------------------------------------------------
    def shard(self, length: int) -> range:
        """This rank's positions of a list of ``length``: rank, rank + W, rank + 2W, …"""
        return range(self.rank, length, self.world_size)

    def chunks(self, examples: Sequence[Any], size: int,
               collate_fn: Callable[[list[Any]], Any]) -> Iterator[tuple[list[int], Any]]:
        """(positions, collated batch) over this rank's share of ``examples``, ≤ ``size`` examples each.

        In lockstep (FSDP) every rank yields as many chunks as rank 0 (the longest share),
        the missing ones as ``([], batch of examples[0])``: a forward pass that weighs nothing.
        """
        positions = list(self.shard(len(examples)))
        count = 0
        for start in range(0, len(positions), size):
            part = positions[start:start + size]
            count += 1
            yield part, collate_fn([examples[i] for i in part])
        if self.lockstep and len(examples):
            longest = -(-len(range(0, len(examples), self.world_size)) // size)
            for _ in range(count, longest):
                yield [], collate_fn([examples[0]])

    # -- collectives -------------------------------------------------------------------------
    def _device(self, tensor: torch.Tensor | None = None) -> torch.device:
        """Where a collective runs: the tensor's device, or the current GPU for an NCCL group."""
        import torch.distributed as dist

        backend = str(dist.get_backend(self.process_group))
        if "nccl" in backend and (tensor is None or tensor.device.type == "cpu"):
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu") if tensor is None else tensor.device

    def check(self, error: BaseException | None = None) -> None:
        """Exchange one failure flag per rank; if any rank failed, raise on every rank.

        This rank re-raises its own ``error``; the others raise :class:`RankFailedError` with
        the failed ranks' messages. Every rank must call it at the same point (it is the first
        step of every reduction), so it doubles as a barrier.
        """
        if not self.is_distributed:
            if error is not None:
                raise error
            return
        import torch.distributed as dist

        flags = torch.zeros(self.world_size, dtype=torch.float32, device=self._device())
        if error is not None:
            flags[self.rank] = 1.0
        dist.all_reduce(flags, op=dist.ReduceOp.SUM, group=self.process_group)
        failed = [r for r, flag in enumerate(flags.cpu().tolist()) if flag > 0]
        if not failed:
            return
        messages = self._exchange_messages(error)
        report = "; ".join(f"rank {r} failed: {messages[r]}" for r in failed)
        if error is None:
            error = RankFailedError(f"{report} (this is rank {self.rank} of {self.world_size}; every rank stops)")
        elif hasattr(error, "add_note"):
            error.add_note(f"(raised on rank {self.rank} of {self.world_size}; the others raised RankFailedError)")
        error.eraser_reported = True  # the other ranks know: an enclosing `together` must not ask again
        try:
            raise error
        finally:
            # The error's traceback holds this frame, and this frame the error and the Group: a cycle only
            # the garbage collector frees. One that held the process group past destroy_process_group made
            # 2-rank gloo launches abort at interpreter exit (SIGABRT, "terminate called without an active
            # exception") in 9 of 55 runs on a loaded 2-core machine, none of 40 once broken
            # (tests/test_distributed.py::test_failed_erase_leaves_no_cycle).
            del error, self

    def _exchange_messages(self, error: BaseException | None) -> list[str]:
        """Every rank's error message (empty where none), by one all-reduce of byte codes."""
        import torch.distributed as dist

        codes = torch.zeros(self.world_size, MESSAGE_BYTES, dtype=torch.int32, device=self._device())
        if error is not None:
            text = _failure_message(error).encode("utf-8")[:MESSAGE_BYTES]
            codes[self.rank, :len(text)] = torch.tensor(list(text), dtype=torch.int32)
        dist.all_reduce(codes, op=dist.ReduceOp.SUM, group=self.process_group)
        rows = codes.cpu().tolist()
        return [bytes(c for c in row if c).decode("utf-8", errors="replace") for row in rows]

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Σ over ranks of ``tensor`` (a new tensor, same device and dtype), after :meth:`check`."""
        self.check()
        if not self.is_distributed:
            return tensor
        import torch.distributed as dist

        buffer = tensor.detach().to(self._device(tensor)).clone()
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=self.process_group)
        return buffer.to(tensor.device)

    def sum(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Σ over ranks of ``compute()`` (this rank's partial sum), or every rank raises if one failed."""
        try:
            partial = compute()
        except Exception as error:  # every failure must reach the other ranks
            self.check(self._explain(error))
            raise  # pragma: no cover - check() raises
        return self.all_reduce(partial)

    def _explain(self, error: Exception) -> Exception:
        """A curvature failure under FSDP named for what it is (:func:`eraserlib.sharding.explain`)."""
        return explain(error) if self.lockstep else error

    @contextlib.contextmanager
    def together(self):
        """A block every rank runs; if it raises on any rank, it raises on every rank (see :meth:`check`)."""
        try:
            yield
        except Exception as error:
            if not getattr(error, "eraser_reported", False):
                self.check(error)
            raise
        self.check()

    def once(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on rank 0 only (a write); every rank returns after it finished, or raises if it failed.

        Returns:
            ``function()``'s value on rank 0, None on the others.
        """
        with self.together():
            return function() if self.is_writer else None

    def agree(self, values: Mapping[str, Any]) -> None:
        """Check that every rank has the same ``values`` (name → number or anything with a ``repr``).

        Raises:
            DistributedConfigurationError: on every rank, naming the values that differ.
        """
        if not self.is_distributed:
            return
        import torch.distributed as dist

        names = list(values)
        own = torch.tensor([_fingerprint(values[k]) for k in names], dtype=torch.float64, device=self._device())
        extremes = torch.cat([own, -own])
        self.check()
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=self.process_group)
        largest, smallest = extremes[:len(names)], -extremes[len(names):]
        differ = [k for k, hi, lo in zip(names, largest.tolist(), smallest.tolist()) if hi != lo]
        if differ:
            raise DistributedConfigurationError(
                f"The {self.world_size} ranks of the erase disagree on {', '.join(differ)}. Every rank must call "
                "erase with the same model (adapter values), train_data, request and options: each rank picks its "
                "share of the data itself (positions ≡ rank mod W), so do not shard train_data beforehand (e.g. "
                "with a DistributedSampler or accelerate's split_between_processes).")

    # -- the model ---------------------------------------------------------------------------
    def for_model(self, model: nn.Module, compute_dtype: torch.dtype | None = None) -> Group:
        """This group, checked against ``model``: lockstep if its base is sharded by FSDP2.

        Raises:
            DistributedConfigurationError: a ``DistributedDataParallel`` wrapper, FSDP1, a sharded
                adapter, an FSDP2 model without a distributed erase, or a ``compute_dtype`` that
                would convert FSDP's sharded parameters.
        """
        sharded = check_model(model)
        if not sharded:
            return self
        if not self.is_distributed:
            raise DistributedConfigurationError(
                "The model's base is sharded with fully_shard, but the erase runs in one process: call erase on every "
                "rank of the mesh with the default process group (process_group=None).")
        if compute_dtype is not None:
            width = torch.finfo(compute_dtype).bits
            if any(is_dtensor(p) and p.is_floating_point() and torch.finfo(p.dtype).bits < width
                   for p in model.parameters()):
                raise DistributedConfigurationError(
                    f"compute_dtype={compute_dtype} would convert parameters that FSDP shards. Pass compute_dtype=None "
                    "and let FSDP2 compute in float32: fully_shard(..., mp_policy=MixedPrecisionPolicy("
                    "param_dtype=torch.float32)).")
        return dataclasses.replace(self, lockstep=True)


def resolve_group(process_group: Any = None) -> Group:
    """The :class:`Group` of an erase.

    Args:
        process_group: None: the default process group when ``torch.distributed`` is initialised
            (as under ``torchrun`` / ``accelerate launch`` after ``init_process_group``), else this
            process alone; a ``ProcessGroup``: its ranks; ``False`` (:data:`LOCAL`): this process
            alone; a :class:`Group`: itself.
    """
    if isinstance(process_group, Group):
        return process_group
    if process_group is False:
        return Group()
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        if process_group is not None:
            raise DistributedConfigurationError(
                "process_group was given but torch.distributed is not initialised: call "
                "torch.distributed.init_process_group() first (torchrun sets its environment).")
        return Group()
    group = process_group if process_group is not None else dist.group.WORLD
    return Group(process_group=group, rank=dist.get_rank(group), world_size=dist.get_world_size(group))


def problem_fingerprint(objective: Any, positions: Sequence[int], **settings: Any) -> dict[str, Any]:
    """What every rank of one erase must have equal, for :meth:`Group.agree` (cheap: no pass over the data).

    Args:
        objective: The :class:`~eraserlib.objective.TrainingObjective`.
        positions: The request's positions in the training data.
        **settings: Further values to compare (solver name, options, damping), by ``repr``.
    """
    from eraserlib.matching import example_digest

    theta = objective.parameters_vector().double()
    n = objective.n
    return {
        "the number of training examples n": n,
        "the request's positions in train_data": list(positions),
        "training examples 0, n/2 and n-1": [example_digest(objective.train_data[i]) for i in sorted({0, n // 2, n - 1})],
        "the adapter's parameters (names)": objective.names,
        "the adapter's values (sum)": float(theta.sum()),
        "the adapter's values (norm)": float(theta.norm()),
        "batch_size": objective.batch_size,
        "seed": objective.seed,
        "weight_decay": objective.weight_decay,
        **{name: repr(value) for name, value in settings.items()},
    }


class Selection(Sequence):
    """The examples of ``data`` at ``positions``, read only when indexed (a lazy mini-batch or sample).

    Each rank of a distributed erase reads only its share of a mini-batch, so a lazily loading
    dataset loads each example on one rank only.
    """

    def __init__(self, data: Sequence[Any], positions: Sequence[int]):
        self.data, self.positions = data, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.data[i] for i in self.positions[index]]
        return self.data[self.positions[index]]


def join_launcher() -> tuple[int, bool]:
    """Under ``torchrun`` (WORLD_SIZE > 1 in the environment): join its process group — gloo on CPUs, NCCL with
    one GPU per rank (``LOCAL_RANK``) — unless one is initialised; (this rank, whether a group was started here)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), True


def leave_launcher() -> None:
    """Leave the default process group that :func:`join_launcher` started.

    Unreachable cycles are collected first: one that still holds the group (a caught error's traceback
    and its frames, in the caller's code) would otherwise free it only at interpreter exit, after
    ``destroy_process_group``, and gloo then aborts the process (SIGABRT, "terminate called without an
    active exception"; seen in 2-rank launches, ``tests/test_distributed.py``).
    """
    import gc

    import torch.distributed as dist

    gc.collect()
    dist.destroy_process_group()


__all__ = ["LOCAL", "DistributedConfigurationError", "Group", "RankFailedError", "Selection", "check_model",
           "join_launcher", "leave_launcher", "problem_fingerprint", "resolve_group"]
