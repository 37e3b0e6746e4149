"""The recommender's language model: a small Llama built from a config, or any local checkpoint.

One parameter chooses the base: ``base_model=None`` builds a small ``LlamaForCausalLM`` (which
:mod:`~eraserlab.rec.pretrain` then pre-trains and caches); a path loads any local Hugging Face
causal-LM folder (e.g. LLaMA2-7B) with its tokenizer. Either way attention is eager, because
the Hessian-vector products of the eraser need a second derivative that the fused SDPA kernels
do not have, and the task is learnt by a peft LoRA adapter on a frozen base.

Models that share a base: :func:`eraserlib.adapters.clone_adapter_model` copies a LoRA model but *shares* its frozen
weights, so Corrupted, Retrain, LLMEraser and every SISA shard cost one base plus their adapters.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from eraserlib.objective import trainable_parameters


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the small Llama (0.34M parameters with MovieLens' 3.7k tokens, 70% of them embeddings).

    Attributes:
        hidden_size: Model width.
        layers: Transformer blocks.
        heads: Attention heads.
        intermediate_size: MLP width.
        max_positions: Longest sequence (RoPE: costs no parameters).
    """

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 176
    max_positions: int = 1024

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoraSettings:
    """The adapter the task is learnt by.

    Attributes:
        rank: LoRA rank r.
        alpha: LoRA scale numerator (the update is (alpha / r)·B A).
        target_modules: Module names to adapt (every linear layer, as LLaRA does).
        init_scale: Standard deviation of the Gaussian that initialises *both* A and B. peft
            zeroes B, which makes the first steps' gradients of A zero and the trained adapter
            a special point (B small); a random start is a generic one.
    """

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    init_scale: float = 0.02

    def to_dict(self) -> dict:
        return asdict(self)


def build_small_llama(config: ModelConfig, tokenizer, seed: int = 0) -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` with eager attention, sized by ``config``.

    Args:
        config: Sizes.
        tokenizer: Sets the vocabulary and the pad / BOS / EOS ids.
        seed: Initialisation seed (the global RNG is restored afterwards).

    Returns:
        The model in eval mode on the CPU.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,  # halves the parameters; the output layer reads names back
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM._from_config(llama, attn_implementation="eager")
    return model.eval()


def load_local_model(path: str | os.PathLike, device: torch.device, dtype: torch.dtype | None = None):
    """Load a local Hugging Face causal LM and its tokenizer (nothing is downloaded).

    Args:
        path: A folder with ``config.json``, weights and tokenizer files.
        device: Where to put the model.
        dtype: Weights' dtype (default: bfloat16 on CUDA, float32 on CPU).

    Returns:
        ``(model, tokenizer)``; the model is frozen, in eval mode, with eager attention.
    """
    from transformers import AutoModelForCausalLM

    from eraserlab.rec.tokenizer import load_tokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"base_model={os.fspath(path)!r} is not a local folder. Pass the directory of a Hugging Face "
            "checkpoint (config.json + weights + tokenizer); hub names are not fetched."
        )
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(
        os.fspath(path), dtype=dtype, attn_implementation="eager", local_files_only=True
    )
    tokenizer = load_tokenizer(path)
    model.config.pad_token_id = tokenizer.pad_token_id
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval(), tokenizer


def add_lora(base: nn.Module, settings: LoraSettings, seed: int) -> nn.Module:
    """Wrap a frozen base with a LoRA adapter, both matrices Gaussian-initialised from ``seed``.

    Args:
        base: The base model (peft modifies it in place: use a copy if it is shared).
        settings: The adapter's rank, scale, targets and init.
        seed: Seeds the adapter's initial values.

    Returns:
        The ``PeftModel`` in eval mode; only the adapter requires gradients.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                        target_modules=list(settings.target_modules), bias="none")
    model = get_peft_model(base, config)
    reset_adapter(model, settings.init_scale, seed)
    return model.eval()


def reset_adapter(model: nn.Module, init_scale: float, seed: int) -> None:
    """Set every trainable parameter to N(0, init_scale²) draws from a generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in zip(*trainable_parameters(model)):
            p.copy_(init_scale * torch.randn(p.shape, generator=generator))


@dataclass
class Recommender:
    """A base model with what it needs to be used: its tokenizer and where it came from.

    Attributes:
        model: The frozen base (no adapter yet).
        tokenizer: Its tokenizer.
        info: Provenance: config, cache path, pretraining time and losses, held-out users.
    """

    model: nn.Module
    tokenizer: object
    info: dict = field(default_factory=dict)
