"""Writing experiment records: atomically, as JSON, with the machine's state beside the numbers.

Shared by the recommendation and multimodal experiments (:mod:`eraserlib.rec.experiment`,
:mod:`eraserlib.mllm.experiment`) and the SASRec cache.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def write_atomically(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A reader sees the old file or the new one, never half of one; an interrupted write leaves
    the old file as it was. The file gets the usual permissions (``0o666`` less the umask), not
    ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb" if isinstance(data, bytes) else "w") as stream:
            stream.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def jsonable(value):
    """Make configs and diagnostics JSON-serialisable (tuples → lists, sets → sorted lists,
    tensors and arrays → lists, numpy scalars → numbers, dtypes → names)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.dtype):
        return str(value)
    return value


def machine_load() -> float:
    """The one-minute load average (timings on a shared machine are inflated by it); NaN where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return math.nan


def cost_columns(usage, what: str) -> dict[str, Any]:
    """A method's cost as frame columns, from :func:`eraserlib.profiling.measure`'s result.

    Args:
        usage: The :class:`~eraserlib.profiling.Usage` of the method's own step.
        what: What the time covers (e.g. ``"training"``, ``"retrain 2 shards"``).
    """
    return {"time_s": usage.wall_time_s, "peak_memory_mb": usage.peak_memory_mb, "memory_kind": usage.memory_kind,
            "time_what": what}


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike):
    """Hold an exclusive lock on the cache entry ``path`` while checking for it and making it.

    Two processes that need the same cached base (two notebooks of a parallel book build, two
    users of one cache folder) would otherwise both pre-train it; with the lock the second waits
    and then loads what the first saved. The lock is an ``flock`` on the hidden file
    ``.<name>.lock`` beside the entry (released when the process dies); where ``fcntl`` is
    missing (Windows) it is a no-op.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
