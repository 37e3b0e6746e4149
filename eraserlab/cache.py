"""Caches of trained bases shared between processes: a lock per entry, and where caches live."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: The repository's cache folder (``<repo>/.cache``), where the small bases are pre-trained once.
REPOSITORY_CACHE = Path(__file__).resolve().parent.parent / ".cache"


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
