"""RecEraser (Chen et al., WWW 2022, "Recommendation Unlearning"), for LoRA adapters of a language model.

RecEraser is SISA with two changes that keep a recommender's collaborative signal:

1. **Balanced partition by similarity.** The users (UBP), items (IBP) or interactions (InBP) are
   split by a balanced k-means on embeddings of a pre-trained model
   (:func:`eraserlib.baselines.partition.balanced_kmeans`), so similar users share a shard.
2. **Attention-based adaptive aggregation.** Each shard model k gives an embedding e_k of the
   user (and of the item); an attention network weighs them per prediction,

       α_k = softmax_k( qᵀ tanh(W e_k + b) ),      e = Σ_k α_k e_k,

   and the aggregated embeddings score the item. The shard models are frozen while the
   attention network (W, b, q) is trained on the training data with the recommender's loss.

An unlearning request retrains, from scratch, the shards that hold one of its examples, and then
the aggregator (it was trained on the removed data too).

**Here** (a LoRA adapter of a causal LM instead of a matrix-factorisation recommender):

* the partition is user-based (UBP) on the embeddings the experiment provides (the frozen
  base's mean-pooled hidden state of each user's prompts: the LLM's counterpart of a
  pre-trained user embedding), every example going to its user's shard
  (:func:`~eraserlib.baselines.partition.group_assignment`);
* one LoRA adapter per shard, trained as the full adapter is (same config, shard s with data
  order ``seed + s``; :class:`~eraserlib.baselines.sisa.SISA` with the partition given);
* the embeddings e_k are the shard models' final (normed) hidden states at each position, and
  the aggregated state is scored by the base's frozen output layer: logits = lm_head(Σ_k α_k h_k).
  That is RecEraser's embedding-level aggregation with the LM head as the item scorer. The
  aggregator is trained with the model's own training loss (the paper uses BPR, the loss of
  its recommenders); it runs k shard passes per prediction, as the paper's does;
* before a request the aggregator need not be trained to measure the method: it is trained
  once, on the data the request leaves, after the affected shards are retrained (its cost is
  the method's, in ``time_s``). A deployed RecEraser would also train it once at set-up.

The partition is computed on the data as first trained on, as in the paper: it is fixed, and an
unlearning request does not re-partition (the anchors saw the removed data; nothing else does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.objective import LossFn
from eraserlib.training import TrainConfig, train


class ShardCaches:
    """The key/value caches of the shard models, moved together (``batch_repeat_interleave``)."""

    def __init__(self, caches: Sequence[Any]):
        self.caches = list(caches)

    def batch_repeat_interleave(self, repeats: int) -> None:
        for cache in self.caches:
            cache.batch_repeat_interleave(repeats)


@dataclasses.dataclass
class AggregateOutput:
    """What a causal LM returns, as far as the experiments read it: ``logits`` and ``cache``."""

    logits: torch.Tensor
    cache: ShardCaches | None = None


class AttentionAggregate(nn.Module):
    """RecEraser's attention over k frozen shard models of one causal LM (module docstring).

    Args:
        shard_models: The shard models (peft models sharing one base); frozen here.
        attention_size: Width of W (the paper's attention dimension).
        seed: Seeds W, b, q.

    Calling it as a causal LM (``input_ids``, ``attention_mask``, ``position_ids``, ``cache``,
    ``use_cache``, ``logits_to_keep``) runs every shard, weighs their final hidden states per
    position and scores the mixture with the (shared, frozen) output layer of the first shard.
    """

    def __init__(self, shard_models: Sequence[nn.Module], attention_size: int = 32, seed: int = 0):
        super().__init__()
        if not shard_models:
            raise ValueError("AttentionAggregate needs at least one shard model.")
        self.shards = nn.ModuleList(shard_models)
        for p in self.shards.parameters():
            p.requires_grad_(False)
        hidden = self.shards[0].get_output_embeddings().weight.shape[1]
        generator = torch.Generator().manual_seed(seed)
        device = self.shards[0].get_output_embeddings().weight.device
        self.project = nn.Linear(hidden, attention_size).to(device)
        with torch.no_grad():
            self.project.weight.copy_(torch.randn(attention_size, hidden, generator=generator) / hidden ** 0.5)
            self.project.bias.zero_()
        self.query = nn.Parameter(torch.randn(attention_size, generator=generator).to(device) / attention_size ** 0.5)

    def attention(self, states: torch.Tensor) -> torch.Tensor:
        """α over the shards, ``(k, B, T)``, from their hidden states ``(k, B, T, H)``; sums to one over k."""
        return (torch.tanh(self.project(states)) @ self.query).softmax(0)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                logits_to_keep=0, **kwargs) -> AggregateOutput:
        caches = cache.caches if cache is not None else [None] * len(self.shards)
        states, new_caches = [], []
        with torch.no_grad():  # the shard models are frozen: only the attention is trained
            for model, shard_cache in zip(self.shards, caches):
                out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            cache=shard_cache, use_cache=use_cache, logits_to_keep=1, output_hidden_states=True,
                            **kwargs)
                hidden = out.hidden_states[-1]
                states.append(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
                new_caches.append(out.cache)
        stacked = torch.stack(states).float()  # (k, B, T, H)
        mixed = (self.attention(stacked)[..., None] * stacked).sum(0)
        head = self.shards[0].get_output_embeddings()
        logits = head(mixed.to(head.weight.dtype))
        return AggregateOutput(logits, ShardCaches(new_caches) if use_cache else None)


def fit_aggregator(
    shard_models: Sequence[nn.Module],
    loss_fn: LossFn,
    train_data: Sequence[Any],
    config: TrainConfig,
    *,
    attention_size: int = 32,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[AttentionAggregate, dict[str, Any]]:
    """Train RecEraser's attention (shards frozen) on ``train_data`` with the model's loss.

    Args:
        shard_models: The trained shard models.
        loss_fn: ``loss_fn(model, batch)``: called with the aggregate as the model.
        train_data: The data the shards were trained on (after a request: the data it leaves).
        config: The aggregator's training (epochs, lr; weight decay applies to W, b, q).
        attention_size: Width of W.
        collate_fn: List of examples → batch.
        seed: Seeds the attention's initialisation (the data order is ``config.seed``'s).
        progress: Show a progress bar.

    Returns:
        The trained :class:`AttentionAggregate` and :func:`~eraserlib.training.train`'s report.
    """
    aggregate = AttentionAggregate(shard_models, attention_size, seed)
    report = train(aggregate, loss_fn, train_data, config, collate_fn=collate_fn, progress=progress,
                   description="RecEraser aggregator")
    return aggregate.eval(), report
