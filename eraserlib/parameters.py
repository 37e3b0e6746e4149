"""The trainable parameters as the solvers see them: a list of tensors, and one flat vector of length p."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eraserlib.errors import NoTrainableParametersError


def trainable_parameters(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """The parameters that erasing may change: those with ``requires_grad=True``.

    Args:
        model: Any module; for a ``PeftModel`` these are the adapter's matrices.

    Returns:
        Two lists of equal length: qualified parameter names and the parameters.

    Raises:
        NoTrainableParametersError: if the model has none.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise NoTrainableParametersError(
            "The model has no parameter with requires_grad=True, so there is nothing to erase. "
            "For a LoRA model, pass the PeftModel (peft marks the adapter trainable), or set "
            "requires_grad=True on the parameters the training changed."
        )
    names, params = zip(*named)
    return list(names), list(params)


def flatten(tensors: Sequence[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate tensors into one flat vector (shape (p,))."""
    return torch.cat([t.reshape(-1).to(dtype or t.dtype) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector (p,) into tensors shaped like ``like``."""
    sizes = [t.numel() for t in like]
    return [chunk.view_as(t) for chunk, t in zip(torch.split(vector, sizes), like)]
