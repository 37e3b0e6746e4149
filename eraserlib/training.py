"""One training loop for every arm: fine-tune the trainable parameters on a list of examples.

The objective is the one :func:`eraserlib.erase` assumes,

    R(θ) = (1/n) Σ ℓ(zᵢ; θ) + (wd/2) ‖θ‖²,

with weight decay as an L2 term in the loss (coupled), not AdamW's decoupled decay: the
influence update is a Newton step on R, so R must be what training minimised. Shuffling
uses its own seeded generator, so the same config and data give the same adapter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from eraserlib.objective import LossFn, trainable_parameters
from eraserlib.progress import progress_bar


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tuning run.

    Attributes:
        epochs: Passes over the data.
        lr: Peak learning rate.
        batch_size: Examples per step.
        weight_decay: wd of the L2 term (wd/2)‖θ‖² in the objective.
        seed: Seeds the shuffling (and nothing else; seed the model's init yourself).
        optimizer: "adam" or "sgd" (with momentum 0.9).
        max_grad_norm: Clip the gradient norm to this (None: no clipping).
        warmup_steps: Linear warm-up steps, then constant (a one-cycle decay is optional).
        decay_to: Final learning rate as a fraction of ``lr`` (linear decay after warm-up); 1.0 = constant.
        max_steps: Stop after this many steps if set (overrides epochs).
    """

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 16
    weight_decay: float = 0.0
    seed: int = 0
    optimizer: str = "adam"
    max_grad_norm: float | None = 1.0
    warmup_steps: int = 0
    decay_to: float = 1.0
    max_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(step: int, total: int, config: TrainConfig) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.decay_to == 1.0 or total <= config.warmup_steps:
        return 1.0
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 1.0 + (config.decay_to - 1.0) * progress


def train(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: Sequence[Any],
    config: TrainConfig,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    progress: bool | None = None,
    description: str = "train",
) -> dict[str, Any]:
    """Minimise (1/n) Σ ℓ + (wd/2)‖θ‖² over the parameters with ``requires_grad=True``, in place.

    Args:
        model: The model; its trainable parameters are updated.
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean loss over the batch.
        train_data: The examples.
        config: Hyper-parameters.
        collate_fn: List of examples → batch (default ``default_collate``).
        progress: Show a progress bar (None: only on a terminal, see eraserlib.progress).
        description: Label of the bar.

    Returns:
        ``{"losses": [...], "steps": int, "wall_time_s": float, "config": {...}}``.
    """
    if len(train_data) == 0:
        raise ValueError("train() got no training examples.")
    collate_fn = collate_fn or torch.utils.data.default_collate
    _, params = trainable_parameters(model)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9)
    else:
        raise ValueError(f"Unknown optimizer {config.optimizer!r}; use 'adam' or 'sgd'.")
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total = config.max_steps or config.epochs * steps_per_epoch
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    bar = progress_bar(total=total, desc=description, progress=progress)
    step = 0
    while step < total:
        order = torch.randperm(len(train_data), generator=generator).tolist()
        for begin in range(0, len(order), config.batch_size):
            if step >= total:
                break
            batch = collate_fn([train_data[i] for i in order[begin:begin + config.batch_size]])
            loss = loss_fn(model, batch)
            objective = loss
            if config.weight_decay:
                objective = loss + 0.5 * config.weight_decay * sum((p * p).sum() for p in params)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _schedule(step, total, config)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            bar.update()
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.4f}")
    bar.close()
    model.eval()
    return {"losses": losses, "steps": step, "wall_time_s": time.perf_counter() - start, "config": config.to_dict()}
