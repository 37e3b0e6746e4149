"""A tiny LoRA language model on a synthetic task: the smallest real "adapter" problem.

Used where the solvers must be compared with an exact dense solve (tests, the book's
chapter 3, the solver benchmark): a ``LlamaForCausalLM`` built from a config (eager
attention, so HVPs work), frozen, with a peft LoRA adapter trained to model sequences drawn
from a sparse random Markov chain. With the default sizes the adapter has a few hundred
parameters, so its p×p Hessian is cheap to form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TinyLoraConfig:
    """Sizes of the tiny model and its data.

    Attributes:
        vocab_size: Tokens.
        hidden_size: Model width.
        layers: Transformer blocks.
        heads: Attention heads.
        rank: LoRA rank r (on q_proj and v_proj).
        sequence_length: Tokens per example.
        num_examples: Training examples.
        branching: Successors per token in the Markov chain (lower = more learnable).
        seed: Seeds the model, the chain and the data.
    """

    vocab_size: int = 24
    hidden_size: int = 16
    layers: int = 2
    heads: int = 2
    rank: int = 2
    sequence_length: int = 10
    num_examples: int = 256
    branching: int = 3
    seed: int = 0


def build_base_model(config: TinyLoraConfig) -> nn.Module:
    """The frozen base: a random Llama (seeded, so every call gives the same weights), eager attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=2 * config.hidden_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=4 * config.sequence_length, attn_implementation="eager",
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    ))


def build_model(config: TinyLoraConfig) -> nn.Module:
    """The base model with a trainable LoRA adapter on q_proj and v_proj (randomly initialised, seeded)."""
    from peft import LoraConfig, get_peft_model

    base = build_base_model(config)
    lora = LoraConfig(r=config.rank, lora_alpha=2 * config.rank, target_modules=["q_proj", "v_proj"],
                      lora_dropout=0.0, init_lora_weights="gaussian")
    model = get_peft_model(base, lora)
    # Gaussian init for both A and B (peft zeroes B): a random start makes the trained adapter
    # a generic point rather than a special one with B ≈ small.
    generator = torch.Generator().manual_seed(config.seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def make_sequences(config: TinyLoraConfig, num_examples: int | None = None, seed_offset: int = 0) -> list[torch.Tensor]:
    """Token sequences (each of shape (T,)) from a sparse random Markov chain (seeded)."""
    generator = torch.Generator().manual_seed(config.seed + 1000)
    successors = torch.stack([torch.randperm(config.vocab_size - 3, generator=generator)[:config.branching] + 3
                              for _ in range(config.vocab_size)])  # (V, branching); ids 0-2 are special
    sampler = torch.Generator().manual_seed(config.seed + 2000 + seed_offset)
    sequences = []
    for _ in range(num_examples or config.num_examples):
        token = int(torch.randint(3, config.vocab_size, (1,), generator=sampler))
        tokens = [token]
        for _ in range(config.sequence_length - 1):
            token = int(successors[token, torch.randint(config.branching, (1,), generator=sampler)])
            tokens.append(token)
        sequences.append(torch.tensor(tokens))
    return sequences


class LanguageModelLoss:
    """Mean next-token cross-entropy of a batch of equal-length sequences (B, T), split for Gauss–Newton.

    Every example has the same number of predicted tokens, so the mean over all tokens is the
    mean over examples of their per-example mean: the ``loss_fn`` contract of ``erase``. The
    split (:class:`eraserlib.losses.OutputLoss`): ``outputs`` are the logits that predict tokens
    1…T−1, ``loss_of_outputs`` their cross-entropy; ``__call__`` is the two composed.
    """

    def outputs(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Logits of positions 0…T−2, (B, T−1, V)."""
        return model(input_ids=batch).logits[:, :-1]

    def loss_of_outputs(self, outputs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``outputs`` against the tokens 1…T−1 of ``batch``."""
        logits = outputs.to(torch.promote_types(outputs.dtype, torch.float32))  # bf16 → fp32, fp64 stays
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    def __call__(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), batch)


#: The tiny model's ``loss_fn`` (supports curvature="hessian" and "gauss_newton").
language_model_loss = LanguageModelLoss()
