"""Gradient ascent on the examples to forget: the usual instance-removal baseline."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.errors import InvalidRequestError
from eraserlib.objective import LossFn, trainable_parameters
from eraserlib.progress import progress_bar


def gradient_ascent(
    model: nn.Module,
    loss_fn: LossFn,
    forget_examples: Sequence[Any],
    *,
    steps: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 16,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    max_grad_norm: float | None = 1.0,
    progress: bool | None = None,
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
        progress: Show a progress bar (None: only on a terminal, see eraserlib.progress).

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
    for _ in progress_bar(range(steps), desc="gradient ascent", progress=progress):
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


