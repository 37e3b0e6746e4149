"""LLaRA's hybrid prompt: a small SASRec's item embeddings, projected into the language model's input.

LLaRA (Liao et al., 2024) shows the LLM each item as its title followed by one more input
position, whose embedding is the item's embedding from a conventional sequential recommender
(SASRec) mapped to the LLM's hidden size by a trainable projector; the projector is trained
with the LoRA adapter. This module has the three parts, and the experiment turns them on with
``ExperimentConfig(hybrid=True)`` (off by default, see :data:`eraserlab.rec.experiment.PRESETS`):

* :class:`SASRec` (Kang & McAuley, 2018): item and position embeddings, causal self-attention
  blocks, next-item cross-entropy against uniformly sampled items (tied output layer), trained by
  :func:`train_sasrec` in seconds on a CPU and then frozen. Its *input* item embeddings are what
  LLaRA feeds the LLM (``rec_model.item_emb``).
* What it is trained on (:func:`training_sequences`): the **training split of the base's
  held-out users** only. Like the frozen base (:mod:`~eraserlab.rec.pretrain`), the frozen
  SASRec must not hold data that a request can ask to forget, since no method here changes it;
  and it never sees a test target. (LLaRA trains SASRec on every user's training data; with an
  unlearning request that data would stay in the frozen embeddings.)
* :class:`HybridPromptModel` wraps the LoRA model. The encoder
  (``PromptEncoder(item_embedding_offset=V)``) follows every item mention of a prompt by one
  placeholder id ``V + item`` (V = rows of the LLM's embedding matrix; the answer gets none).
  The wrapper builds the token embeddings, overwrites each placeholder position with
  ``projector(sasrec_embedding[item])`` and calls the LLM with ``inputs_embeds``. With the
  small model's item tokens the prompt reads ``<item_5> [e₅] <item_9> [e₉] ...``; with titles
  (a local checkpoint) ``Heat [e₅], Casino [e₉], ...``, exactly LLaRA's. Test prompts carry the
  embeddings too (the official code drops them at test time, a flipped condition).

The projector has ``requires_grad=True``, so training, ``eraserlib.erase`` (its Hessian covers
the adapter *and* the projector: both are fitted to the task data) and every baseline treat it
as part of the adapter; the SASRec table is a frozen parameter that clones share.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from eraserlib.storage import write_atomically

PROJECTORS = ("mlp", "linear")


@dataclass(frozen=True)
class SASRecConfig:
    """Sizes and training of the SASRec whose item embeddings the hybrid prompt projects.

    Attributes:
        dim: Embedding width d.
        layers: Causal self-attention blocks.
        heads: Attention heads.
        max_length: Items per training window (and longest input).
        dropout: Dropout on embeddings, attention and feed-forward outputs (training only).
        epochs: Passes over the training windows.
        batch_size: Windows per step.
        lr: Adam learning rate.
        negatives: Items drawn uniformly per step, shared by the step's positions: the loss is
            the cross-entropy of each next item against them (sampled softmax; a full softmax
            over MovieLens' 1,683 items cost 4× the rest of a step on a CPU). Uniform negatives
            are what the task's candidate lists hold, too.
    """

    dim: int = 32
    layers: int = 2
    heads: int = 1
    max_length: int = 50
    dropout: float = 0.2
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    negatives: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    """Pre-norm causal self-attention and a position-wise feed-forward layer, with residuals."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SASRec dim {dim} is not divisible by heads {heads}.")
        self.heads = heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.feedforward_norm = nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.attention_norm(h)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0)  # (B, heads, T, d/heads)
        h = h + self.drop(self.out(attended.transpose(1, 2).reshape(b, t, d)))
        return h + self.drop(self.feedforward(self.feedforward_norm(h)))


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley, 2018), small.

    Item ids are the dataset's own (row ``i`` of :attr:`item_embedding` is item ``i``; row 0 is
    padding, so ids must be ≥ 1). Inputs are left-padded with 0, so the last column is the
    latest item; positions count from the window's start.

    Args:
        num_items: Rows of the item table (largest item id + 1).
        config: Sizes.
    """

    def __init__(self, num_items: int, config: SASRecConfig):
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(num_items, config.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_length, config.dim)
        self.blocks = nn.ModuleList(_Block(config.dim, config.heads, config.dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.drop = nn.Dropout(config.dropout)
        # unit-norm item vectors: scores (a unit-RMS hidden state · an item vector) start O(1)
        nn.init.normal_(self.item_embedding.weight, std=config.dim ** -0.5)
        nn.init.normal_(self.position_embedding.weight, std=1.0)
        with torch.no_grad():
            self.item_embedding.weight[0] = 0.0

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, T, d)`` of left-padded item windows ``(B, T)`` (T ≤ max_length)."""
        t = items.shape[1]
        real = items != 0  # (B, T)
        h = self.item_embedding(items) * math.sqrt(self.config.dim) + self.position_embedding.weight[:t]
        h = self.drop(h) * real[..., None]
        causal = torch.ones(t, t, dtype=torch.bool, device=items.device).tril()
        # a query sees earlier real items and itself (so that a padding row is never all-masked)
        allowed = (causal & real[:, None, :]) | torch.eye(t, dtype=torch.bool, device=items.device)  # (B, T, T)
        for block in self.blocks:
            h = block(h, allowed[:, None]) * real[..., None]
        return self.norm(h)

    def scores(self, items: torch.Tensor) -> torch.Tensor:
        """Next-item scores after each window ``(B, T)``: ``(B, num_items)`` (tied output layer)."""
        return self(items)[:, -1] @ self.item_embedding.weight.T


def training_sequences(examples: Iterable, users: Collection[int] | None = None) -> list[tuple[int, ...]]:
    """Each user's item sequence as far as their training examples reach, oldest first.

    An example's history and target (next item) or asked-about item (preference) are positions
    ``position − len(history) … position`` of the user's sequence, so the training examples of a
    user cover their sequence up to the last training target (never a validation or test target).

    Args:
        examples: Training examples (:class:`NextItemExample` or :class:`PreferenceExample`).
        users: Keep these users only (None: all).

    Returns:
        One tuple of item ids per user with at least two items, by user id.
    """
    slots: dict[int, dict[int, int]] = {}
    for e in examples:
        if users is not None and e.user not in users:
            continue
        sequence = slots.setdefault(e.user, {})
        for offset, item in enumerate(e.history):
            sequence[e.position - len(e.history) + offset] = item
        sequence[e.position] = e.target if hasattr(e, "target") else e.item
    result = []
    for user in sorted(slots):
        ordered = tuple(slots[user][p] for p in sorted(slots[user]))
        if len(ordered) >= 2:
            result.append(ordered)
    return result


def _windows(sequences: Sequence[Sequence[int]], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut sequences into left-padded (input, next item) windows of ``length``, from the end back."""
    inputs, targets = [], []
    for s in sequences:
        for end in range(len(s), 1, -length):
            window = s[max(0, end - length - 1):end]
            pad = [0] * (length + 1 - len(window))
            inputs.append(pad + list(window[:-1]))
            targets.append(pad + list(window[1:]))
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


def train_sasrec(sequences: Sequence[Sequence[int]], num_items: int, config: SASRecConfig | None = None,
                 seed: int = 0, progress: bool = False) -> tuple[SASRec, dict[str, Any]]:
    """Train a :class:`SASRec` on item sequences: next-item cross-entropy against sampled negatives.

    Deterministic given ``seed`` (initialisation, dropout and batch order; the global RNG is
    restored afterwards).

    Args:
        sequences: Item-id sequences, oldest first (ids in ``1 … num_items − 1``).
        num_items: Largest item id + 1.
        config: Sizes and training.
        seed: Seeds everything random.
        progress: Show a tqdm bar.

    Returns:
        ``(model, info)``: the trained model (eval mode, frozen) and ``{"losses": per-epoch mean
        loss, "windows", "sequences", "time_s"}``.
    """
    config = config or SASRecConfig()
    inputs, targets = _windows(sequences, config.max_length)
    if len(inputs) == 0:
        raise ValueError("train_sasrec got no sequence with two or more items.")
    if int(targets.max()) >= num_items:
        raise ValueError(f"An item id ({int(targets.max())}) is not below num_items={num_items}.")
    start = time.perf_counter()
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SASRec(num_items, config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in tqdm(range(config.epochs), desc="SASRec", disable=not progress, leave=False):
            order = torch.randperm(len(inputs), generator=generator)
            total, count = 0.0, 0
            for begin in range(0, len(order), config.batch_size):
                rows = order[begin:begin + config.batch_size]
                x, y = inputs[rows], targets[rows]  # (B, T)
                real = y != 0
                hidden = model(x)[real]  # (M, d): only positions with a next item
                positive = y[real]  # (M,)
                negative = torch.randint(1, num_items, (config.negatives,), generator=generator)  # (K,) shared
                scores = torch.cat([(model.item_embedding(positive) * hidden).sum(-1, keepdim=True),
                                    hidden @ model.item_embedding(negative).T], dim=1)  # (M, 1 + K); answer: column 0
                scores[:, 1:] = scores[:, 1:].masked_fill(negative[None] == positive[:, None], -torch.inf)
                loss = nn.functional.cross_entropy(scores, torch.zeros_like(positive))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(hidden)
                count += len(hidden)
            losses.append(total / count)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {"losses": losses, "windows": len(inputs), "sequences": len(sequences),
                   "time_s": time.perf_counter() - start}


def item_embeddings(model: SASRec) -> torch.Tensor:
    """SASRec's input item table ``(num_items, d)``, scaled to unit root-mean-square (row 0 stays 0).

    The scale keeps the projector's input O(1) whatever SASRec's training did to the norms.
    """
    table = model.item_embedding.weight.detach().clone()
    table[0] = 0.0
    return table / table[1:].pow(2).mean().sqrt()


def sasrec_item_embeddings(sequences: Sequence[Sequence[int]], num_items: int, config: SASRecConfig | None = None,
                           seed: int = 0, cache_dir: str | os.PathLike | None = None,
                           progress: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train SASRec on ``sequences`` and return its scaled item table, cached in ``cache_dir``.

    The cache file's name hashes everything that determines the table (the sequences, the
    config, ``num_items``, the seed), so a cached table is exactly the one training would give.

    Args:
        sequences: Training sequences (:func:`training_sequences`).
        num_items: Largest item id + 1.
        config: SASRec's sizes and training.
        seed: Seeds the training.
        cache_dir: Folder for ``sasrec-<hash>.pt`` (the experiment uses the base's folder);
            None: train every time.
        progress: Show a tqdm bar.

    Returns:
        ``(table, info)``: ``(num_items, d)`` float32, and the training info with ``cache_hit``.
    """
    config = config or SASRecConfig()
    digest = hashlib.sha256(json.dumps({"config": config.to_dict(), "num_items": num_items, "seed": seed,
                                        "sequences": [list(map(int, s)) for s in sequences]}).encode())
    path = None if cache_dir is None else Path(cache_dir) / f"sasrec-{digest.hexdigest()[:16]}.pt"
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        return saved["table"], {**json.loads(saved["info"]), "cache_hit": True}
    model, info = train_sasrec(sequences, num_items, config, seed, progress)
    table = item_embeddings(model)
    info = {**info, "config": config.to_dict(), "seed": seed}
    if path is not None:
        buffer = io.BytesIO()
        torch.save({"table": table, "info": json.dumps(info)}, buffer)
        write_atomically(path, buffer.getvalue())
    return table, {**info, "cache_hit": False}


def _seeded_linear(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default U(±1/√fan_in) initialisation, drawn from ``generator``."""
    layer = nn.Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound)
    return layer


def build_projector(kind: str, in_dim: int, hidden_size: int, seed: int) -> nn.Module:
    """The trainable map from SASRec's width to the LLM's: LLaRA's ``"mlp"`` (Linear–GELU–Linear) or ``"linear"``."""
    if kind not in PROJECTORS:
        raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}.")
    # a stream of its own, so that the projector's draws are not the adapter's (reset_adapter uses seed)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, 0x5A5)).generate_state(1)[0]))
    if kind == "linear":
        return _seeded_linear(in_dim, hidden_size, generator)
    return nn.Sequential(_seeded_linear(in_dim, hidden_size, generator), nn.GELU(),
                         _seeded_linear(hidden_size, hidden_size, generator))


class HybridPromptModel(nn.Module):
    """A causal LM whose prompts carry projected SASRec item embeddings (LLaRA's hybrid prompt).

    Input ids below :attr:`offset` are tokens; an id ``offset + item`` is a placeholder whose
    input embedding is ``projector(item_embeddings[item])``. Called like the wrapped model
    (``input_ids``, ``attention_mask``, ``position_ids``, ``cache``, ``logits_to_keep``...),
    it passes ``inputs_embeds`` instead of ``input_ids``, so greedy decoding and cached
    candidate scoring work unchanged (generated ids are always tokens).

    Args:
        language_model: The LoRA model (peft) or any causal LM taking ``inputs_embeds``.
        item_embeddings: ``(num_items, d)`` SASRec table (row = item id); frozen, shared by clones.
        projector: ``"mlp"`` or ``"linear"``; trainable.
        seed: Seeds the projector's initialisation.
    """

    def __init__(self, language_model: nn.Module, item_embeddings: torch.Tensor, projector: str = "mlp",
                 seed: int = 0):
        super().__init__()
        embedding = language_model.get_input_embeddings()
        device = embedding.weight.device
        self.language_model = language_model
        self.offset = embedding.num_embeddings
        self.item_embeddings = nn.Parameter(item_embeddings.detach().float().to(device), requires_grad=False)
        self.projector = build_projector(projector, item_embeddings.shape[1], embedding.embedding_dim, seed).to(device)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``(B, T, H)``: token embeddings, placeholders replaced by projected items."""
        is_item = input_ids >= self.offset  # (B, T)
        embeds = self.language_model.get_input_embeddings()(input_ids.masked_fill(is_item, 0))  # (B, T, H)
        rows, columns = is_item.nonzero(as_tuple=True)  # (N,), (N,)
        if len(rows) == 0:
            return embeds
        projected = self.projector(self.item_embeddings[input_ids[rows, columns] - self.offset])  # (N, H)
        return embeds.index_put((rows, columns), projected.to(embeds.dtype))

    def forward(self, input_ids: torch.Tensor, **kwargs):
        return self.language_model(inputs_embeds=self.embed(input_ids), **kwargs)
