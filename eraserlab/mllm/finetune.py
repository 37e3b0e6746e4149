"""Fresh LoRA adapters on the frozen base, and the laptop defaults for fine-tuning them.

Every method of an experiment (Corrupted, Retrain, SISA's shards, ...) starts from
:func:`new_adapter` with the same seed, so adapters differ only by the data they saw.
"""

from __future__ import annotations

import copy

from eraserlab.mllm.model import LANGUAGE_MODEL_LINEAR, add_lora
from eraserlab.mllm.pretrain import TinyLlava
from eraserlib.training import TrainConfig

LORA_RANK = 8
LORA_ALPHA = 16


def new_adapter(base: TinyLlava, seed: int = 0, r: int = LORA_RANK, alpha: int = LORA_ALPHA,
                target_modules: str = LANGUAGE_MODEL_LINEAR):
    """A copy of the frozen base with a fresh LoRA adapter (B = 0: it starts equal to the base).

    Args:
        base: from ``pretrain.load_or_pretrain``.
        seed: initialisation of the adapter's A matrices.
        r: LoRA rank.
        alpha: LoRA scale numerator.
        target_modules: regular expression of the adapted modules (every linear layer of the
            language model by default, as LLaVA-1.5's LoRA recipe).

    Returns:
        A peft model; only the LoRA weights require gradients.
    """
    return add_lora(copy.deepcopy(base.model), r=r, alpha=alpha, target_modules=target_modules,
                    seed=seed)


def finetune_config(seed: int = 0, **overrides) -> TrainConfig:
    """The laptop defaults: 152 Adam steps on 600 examples (about 8-10 s on one CPU thread).

    Args:
        seed: shuffling seed.
        **overrides: any ``TrainConfig`` field.
    """
    settings = dict(epochs=4, lr=2e-3, batch_size=16, weight_decay=0.0, seed=seed,
                    optimizer="adam", max_grad_norm=1.0, warmup_steps=10)
    settings.update(overrides)
    return TrainConfig(**settings)
