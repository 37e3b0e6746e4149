"""How eraserlib writes files: atomically, and as strict JSON.

One policy for every record the project writes (adapter manifests, experiment records,
benchmark records): NaN and ±Inf become ``null`` — JSON has no NaN, and "not measured" or
"undefined" reads the same — tensors and arrays become lists, dtypes and other objects their
names. ``json.dumps(..., allow_nan=False)`` then guarantees the file is standard JSON that any
reader accepts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dicts, lists, strings, finite numbers, booleans and None.

    Tuples become lists, sets sorted lists, tensors/arrays (and numpy scalars) their values,
    dataclasses their fields, non-finite floats None, anything else its ``str``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=repr)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and callable(value.tolist):  # torch tensors, numpy arrays and scalars
        return jsonable(value.tolist())
    return str(value)


def dumps(value: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``value`` after :func:`jsonable` (never ``NaN``/``Infinity``)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False, ensure_ascii=False)


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
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json(path: str | os.PathLike, value: Any) -> None:
    """:func:`write_atomically` the strict JSON of ``value`` (see :func:`dumps`)."""
    write_atomically(path, dumps(value) + "\n")


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask
