"""Made-up facts on a tiny Llama saved to disk: the practitioner's setting in miniature, offline.

A base directory as ``save_pretrained`` writes it (config, weights and a word-level tokenizer
trained on the spot, wrapped in ``PreTrainedTokenizerFast``), rows of made-up facts
(``prompt`` "the capital of zorbia is", ``completion`` " quenlo"), and a peft LoRA adapter
trained on them and saved — what the command line (``python -m eraserlib``) and the
bad-input tests run on. Every part is seeded.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
RELATIONS = ("the capital of {} is", "the river of {} is", "the founder of {} is", "the language of {} is")


@dataclass
class FactsConfig:
    """Sizes of the tiny model, its adapter and its data.

    Attributes:
        num_facts: Rows of made-up facts.
        hidden_size: Model width.
        layers: Transformer blocks.
        rank: LoRA rank.
        targets: The modules LoRA adapts.
        train_steps: Adam steps of adapter training (a few: the tests need an adapter, not a good one).
        lr: Its learning rate.
        seed: Seeds the facts, the base model and the adapter.
    """

    num_facts: int = 24
    hidden_size: int = 16
    layers: int = 1
    rank: int = 2
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    train_steps: int = 10
    lr: float = 1e-2
    seed: int = 0


def _word(generator: random.Random) -> str:
    syllables = ["zor", "bia", "quen", "lo", "mar", "vek", "tis", "ul", "dra", "fen", "ko", "yas"]
    return "".join(generator.choice(syllables) for _ in range(generator.randint(2, 3)))


def make_facts(config: FactsConfig) -> list[dict[str, str]]:
    """``num_facts`` distinct rows ``{"prompt", "completion", "text"}`` (seeded)."""
    generator = random.Random(config.seed)
    rows, seen = [], set()
    while len(rows) < config.num_facts:
        prompt = generator.choice(RELATIONS).format(_word(generator))
        if prompt in seen:
            continue
        seen.add(prompt)
        completion = " " + _word(generator)
        rows.append({"prompt": prompt, "completion": completion, "text": prompt + completion})
    return rows


def build_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer over ``texts`` (whitespace split, ``[BOS]`` prepended), as ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    bos = tokenizer.token_to_id("[BOS]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[EOS]", unk_token="[UNK]")


def save_base(directory: str | os.PathLike, rows: list[dict[str, str]], config: FactsConfig) -> Path:
    """Write a tiny random Llama (eager attention) and its tokenizer to ``directory`` (``save_pretrained``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    tokenizer = build_tokenizer([row["text"] for row in rows])
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=2 * config.hidden_size,
        num_hidden_layers=config.layers, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        attn_implementation="eager", pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tokenized(rows: list[dict[str, str]], tokenizer: Any) -> list[dict[str, list[int]]]:
    """The rows as causal-LM examples, the way the command line tokenises prompt + completion."""
    from eraserlib.text import tokenize

    return [tokenize((row["prompt"], row["completion"]), tokenizer, f"row {i}") for i, row in enumerate(rows)]


def train_adapter(base_dir: str | os.PathLike, rows: list[dict[str, str]], adapter_dir: str | os.PathLike,
                  config: FactsConfig) -> Path:
    """Train a LoRA adapter on the rows' completions (Adam, full batch) and save it with peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eraserlib.losses import CausalLMCollator, causal_lm_loss
    from eraserlib.training import TrainConfig, train

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager")
    torch.manual_seed(config.seed + 1)
    model = get_peft_model(base, LoraConfig(
        r=config.rank, lora_alpha=2 * config.rank, lora_dropout=0.0,
        target_modules=list(config.targets)))
    train(model, causal_lm_loss, tokenized(rows, tokenizer),
          TrainConfig(max_steps=config.train_steps, lr=config.lr, batch_size=len(rows), seed=config.seed),
          collate_fn=CausalLMCollator(tokenizer.pad_token_id), progress=False)
    model.save_pretrained(str(adapter_dir))
    return Path(adapter_dir)
