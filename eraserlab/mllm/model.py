"""A tiny LLaVA built from configs alone: CLIP vision tower, projector, small Llama, word tokenizer.

Same classes as LLaVA-1.5 (``LlavaForConditionalGeneration``, ``LlavaProcessor``), so everything
downstream (collation, the loss, generation, peft LoRA, influence maths) runs unchanged on a real
checkpoint. Nothing is downloaded.

Attention is eager everywhere: the SDPA kernels have no double backward, and the eraser's
Hessian-vector products need one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
# Every linear layer of the language model, as in LLaVA-1.5's LoRA recipe. The pattern keeps the
# vision tower's q/k/v projections (same names) out of the adapter.
LANGUAGE_MODEL_LINEAR = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class TinyLlavaConfig:
    """Sizes of the tiny LLaVA (about 0.8M parameters at the defaults).

    Attributes:
        image_size: side of the (square) input image in pixels.
        patch_size: vision patch side; (image_size / patch_size)² image tokens (16 by default).
        vision_hidden_size: width of the CLIP vision tower.
        vision_intermediate_size: MLP width of the vision tower.
        vision_layers: transformer layers of the vision tower.
        vision_heads: attention heads of the vision tower.
        hidden_size: width of the Llama language model.
        intermediate_size: MLP width of the language model.
        layers: transformer layers of the language model.
        heads: attention heads of the language model.
        max_positions: longest sequence, image tokens included.
    """

    image_size: int = 32
    patch_size: int = 8
    vision_hidden_size: int = 96
    vision_intermediate_size: int = 192
    vision_layers: int = 3
    vision_heads: int = 4
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 3
    heads: int = 4
    max_positions: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def build_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a closed vocabulary, ``<image>`` a special token.

    Words are split on whitespace and punctuation (``"box?"`` -> ``"box"``, ``"?"``); a word
    outside the vocabulary becomes ``<unk>``.

    Args:
        words: the vocabulary (duplicates and order do not matter: it is sorted).

    Returns:
        A fast tokenizer with pad, unk, bos, eos and image tokens.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words) - set(SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", extra_special_tokens={"image_token": "<image>"},
    )


def build_processor(tokenizer: PreTrainedTokenizerFast, config: TinyLlavaConfig) -> LlavaProcessor:
    """LLaVA's processor with a PIL/numpy CLIP image processor (no torchvision).

    Images are already ``image_size`` square; they are only rescaled to [-1, 1].
    """
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": config.image_size},
        crop_size={"height": config.image_size, "width": config.image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=config.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,  # CLS, dropped
    )


def build_model(
    config: TinyLlavaConfig, tokenizer: PreTrainedTokenizerFast, seed: int = 0
) -> LlavaForConditionalGeneration:
    """A randomly initialised tiny LLaVA with eager attention.

    Args:
        config: sizes.
        tokenizer: from :func:`build_tokenizer` (sets vocabulary size and special ids).
        seed: initialisation seed.
    """
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden_size, intermediate_size=config.vision_intermediate_size,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        image_size=config.image_size, patch_size=config.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    n_patches = (config.image_size // config.patch_size) ** 2
    llava = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=n_patches,
        # LLaVA reads the penultimate vision layer; a 3-layer tower would waste its last one.
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration._from_config(llava, attn_implementation="eager")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def add_lora(model, r: int = 8, alpha: int = 16, target_modules: str = LANGUAGE_MODEL_LINEAR,
             seed: int = 0):
    """Freeze the model and wrap it with a peft LoRA adapter (dropout 0: deterministic gradients).

    Args:
        model: the base model (modified in place by peft).
        r: LoRA rank.
        alpha: LoRA scaling numerator (scale = alpha / r).
        target_modules: regular expression of the module names to adapt.
        seed: initialisation seed of the A matrices (B starts at zero, so the adapted model starts
            equal to the base).

    Returns:
        The ``PeftModel``; only LoRA weights require gradients.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=target_modules,
                        bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def count_parameters(model) -> dict[str, int]:
    """``{"total": ..., "trainable": ...}`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
