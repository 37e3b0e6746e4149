"""The experiment protocol both arms share (grows into the one method loop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from eraserlib.baselines import SISA
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlab.profiling import Usage, measure


def timed_sisa(sisa: SISA, train_data: Sequence[Any],
               request: InstanceRemoval | QueryModification | ResponseCorrection,
               device: torch.device | str | None = None) -> tuple[Usage, dict[str, Any]]:
    """SISA as the experiments run it: fit on ``train_data``, then unlearn ``request``, each timed.

    Returns:
        The :class:`~eraserlab.profiling.Usage` of the unlearning step (the method's cost) and a
        record: :meth:`SISA.unlearn`'s report plus ``shards``, ``fit_time_s`` (the initial
        training of all shards) and ``train_count`` (how often each shard was trained).
    """
    with measure(device) as setup:
        sisa.fit(train_data)
    with measure(device) as usage:
        info = sisa.unlearn(request)
    return usage, {**info, "shards": sisa.num_shards, "fit_time_s": setup.wall_time_s,
                   "train_count": list(sisa.train_count)}
