"""SISA (Bourtoule et al. 2021, "Machine Unlearning"): sharded, isolated training.

The training data is split into k disjoint shards, one model per shard; a request retrains
only the shards that hold one of its examples, from scratch. Predictions aggregate the shard
models (the experiment does that, e.g. by averaging their predicted distributions). No
slicing/checkpointing within a shard.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.errors import InvalidRequestError
from eraserlib.matching import ExampleIndex
from eraserlib.objective import LossFn
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.training import TrainConfig, train


class SISA:
    """Sharded, isolated training: k models on k disjoint shards; unlearning retrains only affected shards.

    Args:
        make_model: Returns a fresh, untrained model (the same initial adapter every call).
        loss_fn: The training loss.
        num_shards: k.
        config: Training hyper-parameters of each shard model (shard i trains with seed
            ``config.seed + i``, the same when it is retrained).
        collate_fn: List of examples → batch.
        seed: Seeds the random assignment of examples to shards.
        progress: Show progress bars (None: only on a terminal, see eraserlib.progress).

    Examples are found in the shards by value (:mod:`eraserlib.matching`).
    """

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        loss_fn: LossFn,
        num_shards: int,
        config: TrainConfig,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ):
        if num_shards < 1:
            raise ValueError(f"num_shards must be ≥ 1, got {num_shards}.")
        self.make_model = make_model
        self.loss_fn = loss_fn
        self.num_shards = num_shards
        self.config = config
        self.collate_fn = collate_fn
        self.seed = seed
        self.progress = progress
        self.shards: list[list[Any]] = []
        self.shard_models: list[nn.Module | None] = []
        self.train_count = [0] * num_shards  # how often each shard was (re)trained

    @property
    def models(self) -> list[nn.Module]:
        """The shard models to aggregate (shards left empty by removals have none)."""
        return [m for m in self.shard_models if m is not None]

    def fit(self, train_data: Sequence[Any], assignment: Sequence[int] | None = None) -> SISA:
        """Split ``train_data`` into k shards and train one model on each.

        Args:
            train_data: The examples.
            assignment: The shard of each example (e.g. RecEraser's balanced partition,
                :mod:`eraserlib.baselines.partition`); None: at random (seeded, balanced), as SISA.
        """
        if len(train_data) < self.num_shards:
            raise ValueError(f"{len(train_data)} examples cannot fill {self.num_shards} shards.")
        if assignment is None:
            order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(self.seed)).tolist()
            self.shards = [[train_data[i] for i in sorted(order[s::self.num_shards])] for s in range(self.num_shards)]
        else:
            if len(assignment) != len(train_data) or not set(assignment) <= set(range(self.num_shards)):
                raise ValueError(f"assignment must give each of the {len(train_data)} examples a shard in "
                                 f"range({self.num_shards}).")
            self.shards = [[e for e, a in zip(train_data, assignment) if a == s] for s in range(self.num_shards)]
        self.shard_models = [None] * self.num_shards
        for s in range(self.num_shards):
            self._train_shard(s)
        return self

    def _train_shard(self, s: int) -> None:
        if not self.shards[s]:
            self.shard_models[s] = None
            return
        model = self.make_model()
        config = dataclasses.replace(self.config, seed=self.config.seed + s)
        train(model, self.loss_fn, self.shards[s], config, collate_fn=self.collate_fn, progress=self.progress,
              description=f"SISA shard {s}")
        self.shard_models[s] = model
        self.train_count[s] += 1

    def _locate(self, examples: Sequence[Any]) -> list[tuple[int, int]]:
        """(shard, position) of each example, by value (:mod:`eraserlib.matching`), each occurrence used once."""
        places = [(s, i) for s, shard in enumerate(self.shards) for i in range(len(shard))]
        index = ExampleIndex([self.shards[s][i] for s, i in places])
        return [places[k] for k in index.locate(examples, "SISA request example")]

    def unlearn(self, request: InstanceRemoval | QueryModification | ResponseCorrection) -> dict[str, Any]:
        """Apply the request to the shards' data and retrain, from scratch, only the shards it touches.

        Args:
            request: Removal (its examples leave their shards) or a substitution (``old[i]`` is
                replaced by ``new[i]`` in its shard).

        Returns:
            ``{"affected_shards": [...], "retrained_examples": int, "wall_time_s": float}``.
        """
        if not self.shards:
            raise RuntimeError("Call SISA.fit(train_data) before unlearn().")
        start = time.perf_counter()
        if isinstance(request, InstanceRemoval):
            places = self._locate(request.examples)
            drop: dict[int, set[int]] = {}
            for s, i in places:
                drop.setdefault(s, set()).add(i)
            for s, positions in drop.items():
                self.shards[s] = [e for i, e in enumerate(self.shards[s]) if i not in positions]
            affected = sorted(drop)
        elif isinstance(request, (QueryModification, ResponseCorrection)):
            places = self._locate(request.old)
            for (s, i), new in zip(places, request.new):
                self.shards[s][i] = new
            affected = sorted({s for s, _ in places})
        else:
            raise InvalidRequestError(f"SISA cannot apply a {type(request).__name__}.")
        for s in affected:
            self._train_shard(s)
        return {
            "affected_shards": affected,
            "retrained_examples": sum(len(self.shards[s]) for s in affected),
            "wall_time_s": time.perf_counter() - start,
        }


