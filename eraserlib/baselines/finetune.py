"""Fine-tuning on the corrected examples: the cheap fix for query modification and response correction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from eraserlib.errors import InvalidRequestError
from eraserlib.objective import LossFn
from eraserlib.training import TrainConfig, train


def finetune_on_corrected(
    model: nn.Module,
    loss_fn: LossFn,
    new_examples: Sequence[Any],
    config: TrainConfig,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    progress: bool | None = None,
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
        progress: Show a progress bar (None: only on a terminal, see eraserlib.progress).

    Returns:
        What :func:`eraserlib.training.train` returns.
    """
    if len(new_examples) == 0:
        raise InvalidRequestError("finetune_on_corrected got no corrected examples.")
    return train(model, loss_fn, list(new_examples), config, collate_fn=collate_fn, progress=progress,
                 description="fine-tune on corrected")


