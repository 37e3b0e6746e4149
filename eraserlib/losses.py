"""Ready-made losses: the causal-LM loss of Hugging Face models, in the form ``erase`` needs.

``erase`` takes any ``loss_fn(model, batch) -> scalar`` whose value is the *mean per-example*
loss of the batch (so that a batch of k examples weighs k/n in the training objective). For
Gauss–Newton curvature it also needs the loss split into the model's *outputs* and the *loss
of the outputs*; a loss object offers that split with two methods (see :class:`OutputLoss`).

Hugging Face's own ``model(..., labels=labels).loss`` is the mean over all predicted tokens
of the batch (a token mean): a long example then weighs more than a short one, and the value
of a batch depends on which examples share it. :func:`causal_lm_loss` is the per-example mean
instead: each example's loss is the mean over its own predicted tokens, the batch loss the
mean over examples. On batches whose examples predict the same number of tokens the two agree
(``tests/test_losses.py``). Train with the loss you erase with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

#: Label value of positions that are not predicted (Hugging Face's convention).
IGNORE_INDEX = -100


@runtime_checkable
class OutputLoss(Protocol):
    """A loss split for Gauss–Newton curvature: ``loss(model, batch) = loss_of_outputs(outputs(model, batch), batch)``.

    ``outputs`` returns the tensor the Gauss–Newton matrix G = Jᵀ H_out J linearises the model at
    (the logits); ``loss_of_outputs`` must be convex in it (cross-entropy is), so that G is
    positive semi-definite.
    """

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def outputs(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def loss_of_outputs(self, outputs: torch.Tensor, batch: Any) -> torch.Tensor: ...


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class CausalLMLoss:
    """Per-example mean token cross-entropy of a Hugging Face causal LM (see the module docstring).

    The batch is a dict with ``input_ids`` (B, T), optional ``attention_mask`` (B, T) and
    ``labels`` (B, T; ``-100`` = not predicted), unshifted as Hugging Face takes them: the logits
    at position t predict ``labels[:, t + 1]``. Tensors are moved to the model's device.
    """

    def _inputs(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping) or "input_ids" not in batch or "labels" not in batch:
            raise TypeError("causal_lm_loss needs a batch dict with 'input_ids' and 'labels' (and optionally "
                            "'attention_mask'); use eraserlib.losses.CausalLMCollator to build one from examples.")
        device = _model_device(model)
        return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels") if k in batch}

    def outputs(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The logits, (B, T, V)."""
        inputs = self._inputs(model, batch)
        return model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")).logits

    def loss_of_outputs(self, outputs: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean over examples of each example's mean cross-entropy over its predicted tokens."""
        labels = batch["labels"].to(outputs.device)[:, 1:]  # (B, T-1): what position t predicts
        logits = outputs[:, :-1]  # (B, T-1, V)
        mask = labels != IGNORE_INDEX
        counts = mask.sum(1)  # (B,)
        if bool((counts == 0).any()):
            raise ValueError(f"{int((counts == 0).sum())} example(s) of the batch predict no token (every label is "
                             f"{IGNORE_INDEX} after the shift): their mean loss is undefined; drop them.")
        tokens = nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels.masked_fill(~mask, 0),
                                             reduction="none")  # (B, T-1)
        return ((tokens * mask).sum(1) / counts).mean()

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), self._inputs(model, batch))


#: ``loss_fn`` for Hugging Face causal LMs (see :class:`CausalLMLoss`); supports both curvatures.
causal_lm_loss = CausalLMLoss()


class CausalLMCollator:
    """Examples → a padded causal-LM batch for :data:`causal_lm_loss`.

    An example is a dict with ``input_ids`` (a list or 1-D tensor of token ids) and optionally
    ``labels`` (same length; ``-100`` for tokens not to predict, e.g. the prompt; default: every
    token) and ``attention_mask``. Sequences are right-padded with ``pad_token_id`` (labels with
    ``-100``, mask with 0), so padding never changes an example's loss.

    Args:
        pad_token_id: The tokenizer's pad id (any id works: padded positions are masked).
    """

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = []
        for i, example in enumerate(examples):
            if not isinstance(example, Mapping) or "input_ids" not in example:
                raise TypeError(f"example {i} is not a dict with 'input_ids' (got {type(example).__name__}).")
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long).reshape(-1)
            labels = torch.as_tensor(example.get("labels", ids), dtype=torch.long).reshape(-1)
            mask = torch.as_tensor(example.get("attention_mask", torch.ones_like(ids)), dtype=torch.long).reshape(-1)
            if not len(ids) == len(labels) == len(mask):
                raise ValueError(f"example {i}: input_ids, labels and attention_mask differ in length "
                                 f"({len(ids)}, {len(labels)}, {len(mask)}).")
            rows.append((ids, labels, mask))
        width = max(len(ids) for ids, _, _ in rows)

        def pad(values: torch.Tensor, fill: int) -> torch.Tensor:
            return torch.cat([values, values.new_full((width - len(values),), fill)])

        return {"input_ids": torch.stack([pad(ids, self.pad_token_id) for ids, _, _ in rows]),
                "labels": torch.stack([pad(labels, IGNORE_INDEX) for _, labels, _ in rows]),
                "attention_mask": torch.stack([pad(mask, 0) for _, _, mask in rows])}
