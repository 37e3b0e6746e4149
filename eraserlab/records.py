"""Experiment records: the machine's state beside the numbers, and a method's cost as columns.

Files are written with :func:`eraserlib.storage.write_atomically` / :func:`eraserlib.storage.write_json`
(strict JSON: NaN → null), the one policy of the project.
"""

from __future__ import annotations

import math
import os
from typing import Any


def machine_load() -> float:
    """The one-minute load average (timings on a shared machine are inflated by it); NaN where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return math.nan


def cost_columns(usage, what: str) -> dict[str, Any]:
    """A method's cost as frame columns, from :func:`eraserlab.profiling.measure`'s result.

    Args:
        usage: The :class:`~eraserlab.profiling.Usage` of the method's own step.
        what: What the time covers (e.g. ``"training"``, ``"retrain 2 shards"``).
    """
    return {"time_s": usage.wall_time_s, "peak_memory_mb": usage.peak_memory_mb, "memory_kind": usage.memory_kind,
            "time_what": what}
