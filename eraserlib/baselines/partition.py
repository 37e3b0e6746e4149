"""Balanced partitions of training data by similarity (RecEraser's, APA's) and shard bookkeeping.

RecEraser (Chen et al., WWW 2022, "Recommendation Unlearning", Alg. 1) splits the users (UBP),
items (IBP) or interactions (InBP) into k shards of at most ⌈n/k⌉ each with a balanced k-means:

1. draw k anchors among the n embeddings at random (seeded);
2. compute every distance ‖xᵢ − aⱼ‖² and sort all n·k (point, anchor) pairs by it;
3. walk the sorted pairs, putting point i into shard j when i has no shard yet and j holds
   fewer than ⌈n/k⌉ points;
4. move every anchor to the mean of its shard and repeat from 2, ``iterations`` times.

Each point lands in the nearest shard that still has room, so the shards are both balanced (none
holds more than ⌈n/k⌉ points) and made of similar points. APA (Hu et al., TKDE 2025) partitions the samples by the semantic embedding
of their text in the same balanced way; :func:`group_assignment` maps a partition of groups
(users) to their examples, so both methods can share one partition (see
:mod:`eraserlib.baselines.receraser`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch


def balanced_kmeans(embeddings: torch.Tensor, num_shards: int, *, iterations: int = 10, seed: int = 0) -> list[int]:
    """RecEraser's balanced k-means (module docstring): the shard of each of the n embeddings.

    Args:
        embeddings: ``(n, d)`` points.
        num_shards: k (≤ n).
        iterations: Rounds of assignment and anchor update.
        seed: Chooses the initial anchors.

    Returns:
        ``n`` shard indices in ``range(k)``; every shard holds at most ⌈n/k⌉ points and none is
        empty.
    """
    points = embeddings.detach().double().cpu()
    n = points.shape[0]
    if not 1 <= num_shards <= n:
        raise ValueError(f"Cannot split {n} points into {num_shards} shards: need 1 ≤ k ≤ n.")
    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations}.")
    capacity = math.ceil(n / num_shards)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num_shards]
    anchors = points[chosen].clone()
    assignment = [0] * n
    for _ in range(iterations):
        distances = torch.cdist(points, anchors).square()  # (n, k)
        order = torch.argsort(distances.reshape(-1), stable=True).tolist()
        assignment, sizes, placed = [-1] * n, [0] * num_shards, 0
        for flat in order:
            i, j = divmod(flat, num_shards)
            if assignment[i] < 0 and sizes[j] < capacity:
                assignment[i], sizes[j], placed = j, sizes[j] + 1, placed + 1
                if placed == n:
                    break
        for j in range(num_shards):
            members = [i for i in range(n) if assignment[i] == j]
            if members:
                anchors[j] = points[members].mean(0)
    _fill_empty(assignment, num_shards)
    return assignment


def _fill_empty(assignment: list[int], num_shards: int) -> None:
    """Give every empty shard one point from the largest shard (only possible when ⌈n/k⌉·(k−1) ≥ n)."""
    for j in range(num_shards):
        if j not in assignment:
            largest = max(range(num_shards), key=assignment.count)
            assignment[assignment.index(largest)] = j


def group_assignment(groups: Sequence[Hashable], group_shard: Mapping[Hashable, int]) -> list[int]:
    """The shard of each example from the shard of its group (e.g. its user), for a partition of groups."""
    missing = sorted({g for g in groups if g not in group_shard}, key=repr)
    if missing:
        raise ValueError(f"{len(missing)} groups have no shard (first: {missing[0]!r}); partition every group.")
    return [int(group_shard[g]) for g in groups]


def group_embeddings(groups: Sequence[Hashable], embeddings: torch.Tensor) -> tuple[list[Hashable], torch.Tensor]:
    """The distinct groups (first-seen order) and the mean embedding of each group's examples."""
    keys = list(dict.fromkeys(groups))
    index = {g: k for k, g in enumerate(keys)}
    rows = torch.tensor([index[g] for g in groups])
    sums = torch.zeros(len(keys), embeddings.shape[1], dtype=embeddings.dtype).index_add_(0, rows, embeddings)
    counts = torch.bincount(rows, minlength=len(keys)).to(embeddings.dtype)
    return keys, sums / counts[:, None]
