"""The balanced user partition and shard adapters that RecEraser and APA share within one run.

Both methods train one adapter per shard of a balanced partition by similarity
(:func:`eraserlib.baselines.balanced_kmeans` on the arm's embeddings, of the groups the arm names,
e.g. users), and both unlearn by retraining the shards that hold a request's examples, with the
new versions in place for QM/RC (:meth:`eraserlib.baselines.SISA.unlearn`). The partition, the k
shard adapters and their retraining are therefore computed once per run
(``context.shared["user_shards"]``) and read by both; each method's row reports the shared cost in
full (the set-up in ``setup_time_s``, the retraining in ``time_s``), as it would cost that method
alone, and its record names the method that built them (``shards_built_by``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eraserlab.profiling import Usage, measure
from eraserlib.baselines import (
    SISA,
    balanced_kmeans,
    group_assignment,
    group_embeddings,
)

KEY = "user_shards"


@dataclass
class SharedShards:
    """A fitted and unlearnt sharded ensemble with its partition and costs.

    Attributes:
        ensemble: The shards (data and adapters) after the request.
        assignment: Each training example's shard (before the request).
        setup_time_s: Embedding, partition and the first training of every shard.
        unlearn: The retraining of the affected shards (the methods' own cost).
        record: What the run's record keeps (partition and retraining bookkeeping).
        users: Which methods read it (the first one built it).
    """

    ensemble: SISA
    assignment: list[int]
    setup_time_s: float
    unlearn: Usage
    record: dict[str, Any]
    users: list[str] = field(default_factory=list)


def shared_shards(context, method: str) -> SharedShards:
    """The run's user shards (built on first use, see the module docstring).

    Raises:
        ValueError: the arm gives no ``embed`` / ``group_of`` (the partition needs them).
    """
    found = context.shared.get(KEY)
    if found is None:
        found = _build(context)
        context.shared[KEY] = found
    found.users.append(method)
    return found


def _build(context) -> SharedShards:
    if context.embed is None or context.group_of is None:
        raise ValueError("RecEraser and APA partition the training data by similarity: the arm's Context must "
                         "give embed(examples) and group_of(example) (the recommendation arm does).")
    settings, train_data = context.settings, context.scenario.train
    start = time.perf_counter()
    groups = [context.group_of(e) for e in train_data]
    keys, means = group_embeddings(groups, context.embed(train_data))
    shard_of = balanced_kmeans(means, settings.sisa_shards, iterations=settings.partition_iterations,
                               seed=context.seed)
    assignment = group_assignment(groups, dict(zip(keys, shard_of)))
    partition_time_s = time.perf_counter() - start
    ensemble = SISA(context.fresh, context.loss_fn, settings.sisa_shards, context.train_config,
                    collate_fn=context.collate_fn, seed=context.seed, progress=context.progress)
    with measure(context.device) as fit:
        ensemble.fit(train_data, assignment)
    with measure(context.device) as unlearn:
        info = ensemble.unlearn(context.scenario.request)
    record = {**info, "shards": ensemble.num_shards, "partition": "balanced k-means of groups (users)",
              "groups": len(keys), "shard_groups": [shard_of.count(s) for s in range(ensemble.num_shards)],
              "shard_sizes": [assignment.count(s) for s in range(ensemble.num_shards)],
              "partition_time_s": partition_time_s, "fit_time_s": fit.wall_time_s,
              "train_count": list(ensemble.train_count)}
    return SharedShards(ensemble, assignment, partition_time_s + fit.wall_time_s, unlearn, record)


def combined(*usages: Usage) -> Usage:
    """Steps run one after the other: their times add, the peak is the highest."""
    return Usage(sum(u.wall_time_s for u in usages), max(u.peak_memory_bytes for u in usages),
                 usages[0].memory_kind, sum(u.samples for u in usages))
