"""Where an erased adapter goes: checked before the erase, written so that a failure leaves nothing.

:func:`check_output_dir` runs before any (possibly hour-long) computation, so a bad path fails
at once with an :class:`~eraserlib.errors.AdapterError` instead of a raw ``FileNotFoundError``
after the erase, with its result lost. It expands ``~``, refuses the source adapter's directory
(or a path inside it), a non-empty directory and a regular file, and *tries* to create a
directory where the output will go (then removes it) — the only test that a read-only
filesystem, a path under a regular file, or missing permissions cannot fool.

:func:`publish` moves a complete staging directory into place: renamed when the target does not
exist; when the target is an existing empty directory, the files are moved *into* it (its
owner, mode and inode stay what the user made). Files and directories get the umask's mode,
not ``mkdtemp``'s 0700.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from eraserlib.errors import AdapterError
from eraserlib.storage import current_umask


def expand(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded (as a shell would)."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise AdapterError(f"an output directory is needed, got {path!r}.")
    return Path(os.path.expanduser(os.fspath(path)))


def check_output_dir(target: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Raise :class:`AdapterError` unless ``target`` can be created (or is empty) and written, outside ``source``.

    Returns:
        The expanded target path.
    """
    target = expand(target)
    if source is not None:
        source_resolved = expand(source).resolve()
        resolved = target.resolve()
        if resolved == source_resolved or source_resolved in resolved.parents:
            raise AdapterError(
                f"Refusing to write the erased adapter into the source adapter's directory ({source_resolved}): "
                "choose a new output directory; the source stays as it is.")
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise AdapterError(f"Refusing to write the erased adapter to {target}: it exists and is not a directory.")
        if any(target.iterdir()):
            raise AdapterError(f"Refusing to overwrite {target}: it exists and is not an empty directory.")
        probe_in = target
    else:
        probe_in = target.parent
        while not probe_in.exists():
            if probe_in.is_symlink():
                raise AdapterError(f"Cannot create {target}: {probe_in} is a broken symbolic link.")
            probe_in = probe_in.parent
        if not probe_in.is_dir():
            raise AdapterError(f"Cannot create {target}: {probe_in} is a file, not a directory.")
    try:
        probe = tempfile.mkdtemp(prefix=".eraser-write-test-", dir=probe_in)
        os.rmdir(probe)
    except OSError as error:
        raise AdapterError(f"Cannot write the erased adapter to {target}: creating a directory in {probe_in} "
                           f"failed ({error.strerror or error}). Choose a writable output directory.") from None
    return target


def make_staging(target: Path) -> Path:
    """A new hidden directory beside ``target`` (parents created), with the umask's mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging


def publish(staging: Path, target: Path) -> None:
    """Move the complete ``staging`` directory to ``target`` (see the module docstring); files keep the umask's mode."""
    file_mode, dir_mode = 0o666 & ~current_umask(), 0o777 & ~current_umask()
    for path in staging.rglob("*"):
        os.chmod(path, dir_mode if path.is_dir() else file_mode)
    if not target.exists():
        os.replace(staging, target)
        return
    if any(target.iterdir()):
        raise AdapterError(f"Refusing to overwrite {target}: it was filled while the adapter was being written.")
    moved = []
    try:
        for path in sorted(staging.iterdir(), key=lambda p: (p.name.endswith("manifest.json"), p.name)):  # manifest last
            os.replace(path, target / path.name)
            moved.append(target / path.name)
    except BaseException:
        for path in moved:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise
    staging.rmdir()
