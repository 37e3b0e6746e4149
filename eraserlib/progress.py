"""Progress bars: one convention for every loop in the library.

``progress=None`` (the default everywhere: :func:`eraserlib.erase`, the solvers, training, the
baselines) shows a bar only when stderr is a terminal — tqdm's ``disable=None`` — so a job that
writes to a log file gets no bars (one default ``erase_adapter`` call once wrote ~1,000 lines of
them to a log). ``True`` always shows them, ``False`` never.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, *, progress: bool | None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` shown per ``progress`` (see the module docstring); ``leave=False`` by default."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=None if progress is None else not progress, **kwargs)
