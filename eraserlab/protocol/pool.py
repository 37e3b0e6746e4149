"""Retrains shared by the seeds of one request: K retrains for the price of one per seed.

(The pool keeps each seed's Corrupted too, so that a second run of the same request and seed — a
study of one method's settings — trains nothing again.)

When every run seed of a setting makes the *same* request (``request_seed`` fixed), the retrain
that seed s trains for its own Retrain row is also one of the "other" retrains every other seed
compares with. A :class:`RetrainPool` keeps each retrain once — its adapter's values, its
evaluation and its cost — so a setting run with seeds (0, 1, 2) and K = 3 trains three retrains
in all, the same as without the protocol, instead of nine.

A retrain is reused only when everything that decides it is the same: its seed, the data it is
trained on, the examples it is evaluated on and the training config (compared by digest,
:func:`eraserlib.adapters.data_digest`); anything else (the base, the adapter's shape) is the
caller's to keep fixed — use one pool per setting and preset, as the book's chapters do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from eraserlib.adapters import adapter_state, data_digest


@dataclass
class PooledRetrain:
    """One retrain kept by the pool: its trainable parameters (CPU), evaluation, cost and record."""

    state: dict[str, torch.Tensor]
    evaluation: Any
    eval_time_s: float
    cost: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


class RetrainPool:
    """Retrains of one request, shared by the run seeds that compare with them.

    Args:
        seeds: The run seeds of the setting; a run with seed s uses s and then the others as its
            retrain seeds (more, if K asks for more, from :func:`~eraserlab.protocol.runner.retrain_seeds`).
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        self.entries: dict[str, PooledRetrain] = {}
        self.trained = 0  # adapters this pool trained (the rest were reused)
        self.reused = 0

    def seeds_for(self, seed: int, count: int, extra: Callable[[int, int], list[int]]) -> list[int]:
        """K retrain seeds for run ``seed``: its own first, then the pool's others, then ``extra``'s."""
        chosen = [seed] + [s for s in self.seeds if s != seed]
        if len(chosen) < count:
            chosen += [s for s in extra(seed, count + len(chosen)) if s not in chosen]
        return chosen[:count]

    @staticmethod
    def key(seed: int, retrain_data: Sequence[Any], evaluated_on: Sequence[Sequence[Any]], train_config,
            method: str = "retrain") -> str:
        """What decides a trained adapter (a retrain, or Corrupted) and its evaluation, as one digest."""
        digest = hashlib.sha256(f"method={method};seed={seed};config={train_config!r};".encode())
        digest.update(data_digest(retrain_data).encode())
        for examples in evaluated_on:
            digest.update(data_digest(examples).encode())
        return digest.hexdigest()

    def lookup(self, key: str, *, seed: int, method: str = "retrain") -> PooledRetrain | None:
        """What the runner asks before training Corrupted or the retrain of ``seed``: the pooled entry, or None
        (train it, then :meth:`put`). A pool shared between processes answers from another rank here."""
        return self.get(key)

    def get(self, key: str) -> PooledRetrain | None:
        found = self.entries.get(key)
        if found is not None:
            self.reused += 1
        return found

    def put(self, key: str, model: torch.nn.Module, evaluation: Any, eval_time_s: float, cost: dict[str, Any],
            record: dict[str, Any], *, seed: int | None = None, method: str = "retrain") -> None:
        """Keep what was trained for ``key`` (``seed`` and ``method`` say what it is, for a shared pool)."""
        self.entries[key] = PooledRetrain({k: v.cpu() for k, v in adapter_state(model).items()}, evaluation,
                                          eval_time_s, dict(cost), dict(record))
        self.trained += 1
