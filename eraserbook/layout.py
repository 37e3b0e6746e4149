"""Where a profile's book lives, what the table of contents lists, and the files of a profile's tree.

``<tree>`` is the repository root for the ``default`` profile and ``_build/profiles/<profile>``
for every other one, so that building one profile never touches another:

* executed notebook: ``<tree>/book/<name>.ipynb`` (the page the book shows);
* its results:       ``<tree>/book/results/<name>/`` (the notebook's ``results_dir``);
* the HTML book:     ``<tree>/_build/html/index.html`` (replaced only by a successful build);
* a failed run:      ``<tree>/_build/failed/<name>.ipynb``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eraserbook.errors import RunnerError
from eraserbook.profiles import DEFAULT_PROFILE

NOTEBOOKS_DIR = Path("notebooks")
BOOK_DIR = Path("book")
RESULTS_SUBDIR = "results"
#: Pages the build writes into ``<tree>/book/`` (``book/<name>.md``), listed in the toc like any
#: other page: the environment the chapters were executed in (:mod:`eraserbook.environment`).
GENERATED_PAGES = ("environment",)


@dataclass(frozen=True)
class Layout:
    """Where one profile's book lives.

    The ``default`` profile is the repository root itself (so ``jupyter-book build .`` works);
    every other profile gets a copy of the book's pages under ``_build/profiles/<profile>``.

    Attributes:
        root: the repository (book) root, with ``_config.yml``, ``_toc.yml``, ``notebooks/``.
        profile: the profile name.
    """

    root: Path
    profile: str

    @property
    def tree(self) -> Path:
        """The book root for this profile (holds ``_config.yml``, ``_toc.yml``, ``book/``)."""
        if self.profile == DEFAULT_PROFILE:
            return self.root
        return self.root / "_build" / "profiles" / self.profile

    @property
    def book_dir(self) -> Path:
        return self.tree / BOOK_DIR

    @property
    def html_dir(self) -> Path:
        return self.tree / "_build" / "html"

    def executed(self, name: str) -> Path:
        return self.book_dir / f"{name}.ipynb"

    def results(self, name: str) -> Path:
        return self.book_dir / RESULTS_SUBDIR / name

    def failed(self, name: str) -> Path:
        return self.tree / "_build" / "failed" / f"{name}.ipynb"

    def source(self, name: str) -> Path:
        return self.root / NOTEBOOKS_DIR / f"{name}.ipynb"

    def page(self, name: str) -> Path:
        """A MyST page ``<tree>/book/<name>.md`` (hand-written and staged, or generated)."""
        return self.book_dir / f"{name}.md"


# --------------------------------------------------------------------------------------------
# The table of contents


def notebook_names(root: Path) -> list[str]:
    """Names (file stems) of the chapter notebooks in ``notebooks/``, sorted."""
    return sorted(p.stem for p in (root / NOTEBOOKS_DIR).glob("*.ipynb"))


def toc_documents(root: Path) -> list[str]:
    """Document paths listed in ``_toc.yml`` (suffix removed), in reading order.

    Raises:
        RunnerError: when ``_toc.yml`` is missing or has no root.
    """
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise RunnerError(f"{toc_path}: not found")
    toc = yaml.safe_load(toc_path.read_text()) or {}
    if "root" not in toc:
        raise RunnerError(f"{toc_path}: no 'root' entry")
    documents: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                documents.append(_strip_suffix(node["file"]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    documents.append(_strip_suffix(toc["root"]))
    visit({k: v for k, v in toc.items() if k != "root"})
    return documents


def _strip_suffix(document: str) -> str:
    return re.sub(r"\.(md|ipynb)$", "", str(document))


def _book_name(document: str) -> str:
    return document.removeprefix(f"{BOOK_DIR.as_posix()}/")


def toc_notebooks(root: Path) -> list[str]:
    """Chapter notebooks in reading order, after checking that toc and ``notebooks/`` agree.

    A toc entry ``book/<name>`` is a chapter notebook when ``notebooks/<name>.ipynb`` exists,
    otherwise it must be a page ``book/<name>.md`` (or one the build writes, ``GENERATED_PAGES``).

    Raises:
        RunnerError: a toc entry with no source, or a notebook that is not in the toc.
    """
    sources = set(notebook_names(root))
    ordered = []
    for document in toc_documents(root):
        name = _book_name(document)
        if name in sources and document == f"{BOOK_DIR.as_posix()}/{name}":
            ordered.append(name)
        elif document in generated_documents():
            continue
        elif not (root / f"{document}.md").is_file():
            raise RunnerError(
                f"_toc.yml lists '{document}', but neither notebooks/{name}.ipynb "
                f"nor {document}.md exists"
            )
    missing = sorted(sources - set(ordered))
    if missing:
        entries = ", ".join(f"'- file: book/{name}'" for name in missing)
        raise RunnerError(
            f"notebooks not in _toc.yml: {', '.join(missing)}; every notebook is a chapter, add {entries}"
        )
    return ordered


def generated_documents() -> list[str]:
    """The toc documents of the pages the build writes, e.g. ``book/environment``."""
    return [f"{BOOK_DIR.as_posix()}/{name}" for name in GENERATED_PAGES]


def reading_order(root: Path) -> list[str]:
    """Every notebook: those in the toc in its order first, then any others (run allows those)."""
    sources = notebook_names(root)
    in_toc = [_book_name(d) for d in toc_documents(root) if _book_name(d) in sources]
    return in_toc + [name for name in sources if name not in in_toc]


# --------------------------------------------------------------------------------------------
# The files of a profile's tree


def is_generated(relative: Path) -> bool:
    """Files in ``book/`` that the runner writes: executed notebooks, results, generated pages, scratch."""
    parts = relative.parts
    return (
        (len(parts) == 1 and relative.suffix == ".ipynb")
        or (len(parts) == 1 and relative.suffix == ".md" and relative.stem in GENERATED_PAGES)
        or parts[0] == RESULTS_SUBDIR
        or any(part.startswith(".") for part in parts)
    )


def stage(root: Path, profile: str) -> None:
    """Mirrors the book's hand-written files into a non-default profile's tree.

    Copies ``_config.yml``, ``_toc.yml`` and everything in ``book/`` except generated files,
    and removes staged copies whose source is gone. Unchanged files keep their time stamps, so
    Sphinx's incremental build sees no change.
    """
    layout = Layout(root, profile)
    layout.book_dir.mkdir(parents=True, exist_ok=True)
    if layout.tree == root:
        return
    wanted = {Path(name) for name in ("_config.yml", "_toc.yml")}
    wanted |= {
        BOOK_DIR / p.relative_to(root / BOOK_DIR)
        for p in (root / BOOK_DIR).rglob("*")
        if p.is_file() and not is_generated(p.relative_to(root / BOOK_DIR))
    }
    for relative in wanted:
        source, target = root / relative, layout.tree / relative
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for target in layout.book_dir.rglob("*"):
        relative = target.relative_to(layout.book_dir)
        if target.is_file() and not is_generated(relative) and BOOK_DIR / relative not in wanted:
            target.unlink()


def prune(root: Path, profile: str, keep: list[str]) -> None:
    """Removes executed notebooks and results whose source notebook no longer exists."""
    layout = Layout(root, profile)
    for executed in layout.book_dir.glob("*.ipynb"):
        if executed.stem not in keep:
            print(f"removing {executed.relative_to(root)}: notebooks/{executed.name} is gone")
            executed.unlink()
            shutil.rmtree(layout.results(executed.stem), ignore_errors=True)
