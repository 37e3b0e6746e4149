"""The unlearning baselines LLMEraser is compared with, for any model and loss.

* **Retrain** (the gold standard) is not a function here: it is
  ``train(make_model(), loss_fn, corrected_data, config)`` with the same config, seed and
  initial adapter as the model being corrected (:func:`eraserlib.training.train`).
* :func:`gradient_ascent` (instance removal): ascend the loss of the examples to forget.
* :func:`finetune_on_corrected` (query modification, response correction): keep training the
  corrupted model on the corrected examples only.
* :class:`SISA` (Bourtoule et al. 2021, "Machine Unlearning"): the training data is split into
  k disjoint shards, one model per shard; a request retrains only the shards that hold one of
  its examples, from scratch. Predictions aggregate the shard models (the arm does that, e.g.
  by averaging their predicted distributions). No slicing/checkpointing within a shard.

All of them modify or create models in place and return what they did and how long it took.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from eraserlib.errors import InvalidRequestError
from eraserlib.hvp import LossFn, trainable_parameters
from eraserlib.profiling import Usage, measure
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.training import TrainConfig, train


def gradient_ascent(
    model: nn.Module,
    loss_fn: LossFn,
    forget_examples: Sequence[Any],
    steps: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 16,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    max_grad_norm: float | None = 1.0,
    progress: bool = False,
) -> dict[str, Any]:
    """Gradient ascent on the examples to forget: Adam steps that *increase* their mean loss.

    The usual instance-removal baseline. Nothing stops it from also destroying what the model
    knows about everything else, which is why its utility is reported next to its forgetting.

    Args:
        model: The trained model; its trainable parameters are updated in place.
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean loss (the training loss).
        forget_examples: The examples to forget.
        steps: Ascent steps (default: one pass over ``forget_examples``).
        lr: Adam learning rate.
        batch_size: Examples per step.
        collate_fn: List of examples → batch (default ``default_collate``).
        seed: Seeds the order of the examples.
        max_grad_norm: Gradient-norm clip (None: none).
        progress: Show a tqdm bar.

    Returns:
        ``{"losses": [...], "steps": int, "wall_time_s": float}`` (losses before each step).
    """
    if len(forget_examples) == 0:
        raise InvalidRequestError("gradient_ascent got no examples to forget.")
    collate_fn = collate_fn or torch.utils.data.default_collate
    _, params = trainable_parameters(model)
    steps = steps if steps is not None else -(-len(forget_examples) // batch_size)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    losses: list[float] = []
    order: list[int] = []
    for _ in tqdm(range(steps), desc="gradient ascent", disable=not progress, leave=False):
        if len(order) < min(batch_size, len(forget_examples)):
            order = torch.randperm(len(forget_examples), generator=generator).tolist()
        chosen, order = order[:batch_size], order[batch_size:]
        loss = loss_fn(model, collate_fn([forget_examples[i] for i in chosen]))
        optimizer.zero_grad(set_to_none=True)
        (-loss).backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"losses": losses, "steps": steps, "wall_time_s": time.perf_counter() - start}


def finetune_on_corrected(
    model: nn.Module,
    loss_fn: LossFn,
    new_examples: Sequence[Any],
    config: TrainConfig,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Continue training the corrupted model on the corrected examples only.

    The cheap fix for query modification and response correction: it teaches the right
    answers but never tells the model to drop the wrong ones it learnt, and it over-weights
    the k corrected examples against the n the model was trained on.

    Args:
        model: The corrupted model; updated in place.
        loss_fn: The training loss.
        new_examples: The corrected versions (the request's ``new``).
        config: Hyper-parameters of this fine-tuning (usually fewer epochs than training).
        collate_fn: List of examples → batch.
        progress: Show a tqdm bar.

    Returns:
        What :func:`eraserlib.training.train` returns.
    """
    if len(new_examples) == 0:
        raise InvalidRequestError("finetune_on_corrected got no corrected examples.")
    return train(model, loss_fn, list(new_examples), config, collate_fn=collate_fn, progress=progress,
                 description="fine-tune on corrected")


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
        progress: Show progress bars.

    Examples are found in the shards by hash and equality (frozen dataclasses, tuples), or by
    identity for objects hashed by identity (tensors): the request must then hold the very
    objects of ``train_data``.
    """

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        loss_fn: LossFn,
        num_shards: int,
        config: TrainConfig,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int = 0,
        progress: bool = False,
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

    def fit(self, train_data: Sequence[Any]) -> SISA:
        """Split ``train_data`` into k shards at random (seeded, balanced) and train one model on each."""
        if len(train_data) < self.num_shards:
            raise ValueError(f"{len(train_data)} examples cannot fill {self.num_shards} shards.")
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(self.seed)).tolist()
        self.shards = [[train_data[i] for i in sorted(order[s::self.num_shards])] for s in range(self.num_shards)]
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
        """(shard, position) of each example, each occurrence used at most once."""
        where: dict[Hashable, list[tuple[int, int]]] = {}
        for s, shard in enumerate(self.shards):
            for i, example in enumerate(shard):
                where.setdefault(example, []).append((s, i))
        found = []
        for example in examples:
            places = where.get(example)
            if not places:
                raise InvalidRequestError(
                    "A request example is not in any SISA shard: requests must name examples of the "
                    "training data (the same objects, for examples hashed by identity such as tensors)."
                )
            found.append(places.pop())
        return found

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


def timed_sisa(sisa: SISA, train_data: Sequence[Any],
               request: InstanceRemoval | QueryModification | ResponseCorrection,
               device: torch.device | str | None = None) -> tuple[Usage, dict[str, Any]]:
    """SISA as the experiments run it: fit on ``train_data``, then unlearn ``request``, each timed.

    Returns:
        The :class:`~eraserlib.profiling.Usage` of the unlearning step (the method's cost) and a
        record: :meth:`SISA.unlearn`'s report plus ``shards``, ``fit_time_s`` (the initial
        training of all shards) and ``train_count`` (how often each shard was trained).
    """
    with measure(device) as setup:
        sisa.fit(train_data)
    with measure(device) as usage:
        info = sisa.unlearn(request)
    return usage, {**info, "shards": sisa.num_shards, "fit_time_s": setup.wall_time_s,
                   "train_count": list(sisa.train_count)}
