"""APA (Hu et al., TKDE 2025, "Exact and Efficient Unlearning for Large Language Model-based
Recommendation", arXiv 2404.10327): adapter partition and aggregation.

APA trains one LoRA adapter per shard of a balanced, semantic partition of the training samples,
retrains only the adapters whose shard holds an example of an unlearning request (exact
unlearning, as SISA), and — unlike SISA's and RecEraser's output-level ensembles, which run the
LLM once per shard — aggregates the adapters *in parameter space, per test sample*: each sample x
gets attention weights wᵢ(x) over the k adapters from its semantic similarity to the shards, and
is answered by one forward pass of the base with the merged update

    ΔW(x) = Σᵢ wᵢ(x) · sᵢ Bᵢ Aᵢ,    Σᵢ wᵢ(x) = 1,

in every adapted layer (sᵢ the LoRA scale). Since W₀h + ΔW(x)h = W₀h + Σᵢ wᵢ(x) sᵢ Bᵢ(Aᵢh), the
merge is computed exactly and batched, without materialising a d×d matrix per sample:
:class:`SampleAdaptiveLoRA` adds the k low-rank branches, weighted per row of the batch, to one
pass of the base.

**Here**:

* the partition is shared with RecEraser (:mod:`eraserlib.baselines.receraser`): a balanced
  k-means (:func:`eraserlib.baselines.partition.balanced_kmeans`) on the frozen base's
  mean-pooled hidden states, of users rather than single samples, so that a user's examples
  (which share most of their prompt) stay in one shard; APA's partition of samples by their
  text embedding and RecEraser's user-based one then differ only by that grouping, and both
  methods use the same k trained shard adapters (trained, and retrained, once per run);
* the attention: wᵢ(x) = softmax_i(cos(e(x) − ē, cᵢ − ē) / τ), with e(x) the frozen base's
  mean-pooled hidden state of x's prompt, cᵢ the mean of shard i's current examples' embeddings
  (recomputed from the data a request leaves), ē the mean of all training embeddings (centring
  spreads the cosines, which are all close to 1 for mean-pooled states) and τ chosen on the
  validation split. The paper's attention is also computed from the sample's semantic
  similarity to the shards and needs no training; its exact form (what it compares x with,
  and how similarities become weights) may differ from this one;
* only LoRA layers are merged; a model with other trainable parameters is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from eraserlib.adapters import clone_adapter_model


def centred_cosine_weights(embeddings: torch.Tensor, centroids: torch.Tensor, centre: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """wᵢ(x) = softmax_i(cos(e(x) − ē, cᵢ − ē) / τ): ``(n, k)`` rows that sum to one."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    x = nn.functional.normalize(embeddings.double() - centre.double(), dim=-1)
    c = nn.functional.normalize(centroids.double() - centre.double(), dim=-1)
    return ((x @ c.T) / temperature).softmax(-1).float()


def _lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """peft's LoRA layers of a model (modules with a ``lora_A`` dict holding the ``"default"`` adapter)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(getattr(m, "lora_A", None), nn.ModuleDict) and "default" in m.lora_A}


class SampleAdaptiveLoRA(nn.Module):
    """One causal LM whose LoRA update is Σᵢ wᵢ(x) sᵢ BᵢAᵢ for each sample x of a batch (module docstring).

    Args:
        shard_models: k peft LoRA models of one base and one adapter layout.
        weight_fn: ``weight_fn(examples) -> (n, k)`` attention weights, each row summing to one.

    Call :meth:`condition` with a batch's examples before running it: their weights are then
    used for that prompt pass and for the cached continuations that follow it (a batch repeated
    ``c`` times, e.g. once per candidate answer, repeats each sample's weights ``c`` times).
    """

    def __init__(self, shard_models: Sequence[nn.Module], weight_fn: Callable[[Sequence[Any]], torch.Tensor]):
        super().__init__()
        if not shard_models:
            raise ValueError("SampleAdaptiveLoRA needs at least one shard model.")
        self.weight_fn = weight_fn
        self.model = clone_adapter_model(shard_models[0])
        layers = _lora_layers(self.model)
        if not layers:
            raise ValueError("APA merges LoRA adapters: the shard models have no peft LoRA layer.")
        lora_names = {f"{name}.{part}.default.weight" for name in layers for part in ("lora_A", "lora_B")}
        other = [n for n, p in self.model.named_parameters() if p.requires_grad and n not in lora_names]
        if other:
            raise ValueError(f"APA merges LoRA layers only, but the model also trains {other[:3]}: "
                             "freeze them or use an ensemble (SISA).")
        self.weights: torch.Tensor | None = None
        self._current: torch.Tensor | None = None
        self._hooks = []
        for name, layer in layers.items():
            shards = [_lora_layers(m)[name] for m in shard_models]
            a = torch.stack([s.lora_A["default"].weight.detach() for s in shards])  # (k, r, in)
            b = torch.stack([s.lora_B["default"].weight.detach() * s.scaling["default"] for s in shards])  # (k, out, r)
            self.register_buffer(f"a_{len(self._hooks)}", a, persistent=False)
            self.register_buffer(f"b_{len(self._hooks)}", b, persistent=False)
            layer.enable_adapters(False)  # the base weight alone; the k branches are added by the hook
            self._hooks.append(layer.register_forward_hook(self._hook(len(self._hooks))))
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _hook(self, index: int):
        def add_branches(module, inputs, output):
            x = inputs[0]
            a, b = getattr(self, f"a_{index}"), getattr(self, f"b_{index}")
            low = torch.einsum("...i,kri->...kr", x.to(a.dtype), a)  # (B, T, k, r)
            high = torch.einsum("...kr,kor->...ko", low, b)  # (B, T, k, out)
            w = self._current.to(high.dtype).view(x.shape[0], *([1] * (x.dim() - 2)), -1, 1)
            return output + (w * high).sum(-2).to(output.dtype)

        return add_branches

    @property
    def num_shards(self) -> int:
        return self.a_0.shape[0]

    def condition(self, examples: Sequence[Any]) -> torch.Tensor:
        """Set the weights of the next batch from its examples; returns them ``(n, k)``."""
        weights = torch.as_tensor(self.weight_fn(examples), dtype=torch.float32)
        if weights.shape != (len(examples), self.num_shards):
            raise ValueError(f"weight_fn gave {tuple(weights.shape)} weights for {len(examples)} examples and "
                             f"{self.num_shards} adapters.")
        self.weights = weights.to(self.a_0.device)
        return weights

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def forward(self, input_ids=None, **kwargs):
        if self.weights is None:
            raise RuntimeError("SampleAdaptiveLoRA needs its batch's examples first: call condition(examples) "
                               "before each batch (the rec arm's evaluate functions do).")
        rows, known = input_ids.shape[0], self.weights.shape[0]
        if rows % known:
            raise RuntimeError(f"A batch of {rows} rows does not repeat the {known} conditioned examples.")
        self._current = self.weights.repeat_interleave(rows // known, 0)
        return self.model(input_ids=input_ids, **kwargs)
