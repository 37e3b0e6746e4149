"""The real book's settings, for the small books the tests build: ``_config.yml`` and what it names."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: ``_config.yml`` and the files it refers to (the bibliography, the style sheet).
SETTINGS = ("_config.yml", "book/references.bib", "book/_static/eraser.css")


def copy_settings(root: Path) -> None:
    """Copies :data:`SETTINGS` from the repository into the book at ``root``."""
    for relative in SETTINGS:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, target)
