"""What the recommendation arm gives the paper's rivals (RecEraser, APA, E2URec) beyond the loss.

* :class:`PromptEmbedder`: the embedding of an example, the frozen base's (adapter disabled)
  last hidden state mean-pooled over the prompt's tokens. It is the "pre-trained embedding" of
  RecEraser's partition (a user: the mean over the user's examples, whose prompts hold the
  user's history) and the semantic embedding of APA's partition and attention. Memoised per
  example; the base never changes.
* :func:`answer_logits`: the logits at the answer positions and their mask, the positions
  :func:`~eraserlab.rec.task.answer_loss` reads; E2URec's teachers are distilled there.
* :func:`user_of`: the group of an example for the user-based partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from eraserlab.rec.task import PromptEncoder, left_pad, model_device, position_ids


def user_of(example) -> int:
    """The user an example belongs to (RecEraser's UBP keeps a user's examples in one shard)."""
    return example.user


class PromptEmbedder:
    """Mean-pooled last hidden state of the frozen base over each example's prompt (module docstring).

    Args:
        model: A peft model (its adapter is disabled while embedding: the base alone).
        encoder: The run's prompt encoder.
        batch_size: Prompts per forward pass.
    """

    def __init__(self, model: nn.Module, encoder: PromptEncoder, batch_size: int = 32):
        if not hasattr(model, "disable_adapter"):
            raise TypeError(f"PromptEmbedder needs a peft model (to embed with the base alone), got "
                            f"{type(model).__name__}; the hybrid prompt is not supported by the rivals.")
        self.model, self.encoder, self.batch_size = model, encoder, batch_size
        self._cache: dict = {}

    @torch.no_grad()
    def __call__(self, examples: Sequence) -> torch.Tensor:
        """``(n, H)`` float32 embeddings on the CPU."""
        missing = list(dict.fromkeys(e for e in examples if e not in self._cache))
        device = model_device(self.model)
        with self.model.disable_adapter():
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                ids, mask = left_pad([self.encoder.encode(e).prompt for e in chunk], self.encoder.pad_id)
                out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 position_ids=position_ids(mask).to(device), use_cache=False, logits_to_keep=1,
                                 output_hidden_states=True)
                hidden = out.hidden_states[-1].float()
                weights = mask.to(device, hidden.dtype)[..., None]
                pooled = ((hidden * weights).sum(1) / weights.sum(1)).cpu()
                for example, row in zip(chunk, pooled):
                    self._cache[example] = row
        return torch.stack([self._cache[e] for e in examples]) if examples else torch.zeros(0)


def answer_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits predicting each answer token, ``(B, A, V)``, and the answer mask ``(B, A)``."""
    device = model_device(model)
    width = batch["labels"].shape[1]
    output = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                   position_ids=batch["position_ids"].to(device), logits_to_keep=width + 1, use_cache=False)
    return output.logits[:, :-1], batch["label_mask"].to(device)
