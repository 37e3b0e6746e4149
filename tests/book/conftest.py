"""Fixtures for the book tests: a headless Chromium, the fixture book and the real smoke book."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# The browser checks live beside these tests; make them importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).parent))

import html_check  # noqa: E402
from book_settings import copy_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURE_BOOK = Path(__file__).parent / "fixtures" / "demo_book"


@dataclass
class BuiltBook:
    """A book built by the runner: where its pages are and how long the build took."""

    root: Path
    profile: str
    html: Path
    documents: list[str]  # toc documents, e.g. "book/intro"
    notebooks: list[str]  # the toc's chapter notebooks, in reading order
    seconds: float

    def page(self, document: str) -> Path:
        return self.html / f"{document}.html"


def run_runner(*args: str, root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m eraserbook`` in a subprocess (it sets the kernels' environment)."""
    return subprocess.run(
        [sys.executable, "-m", "eraserbook", *args, "--root", str(root)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def build_book(root: Path, profile: str) -> BuiltBook:
    """Builds ``root`` under ``profile`` with the runner; fails the test with its output if it fails."""
    from eraserbook.layout import Layout, toc_documents, toc_notebooks

    start = time.perf_counter()
    result = run_runner("build", "--profile", profile, root=root)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        pytest.fail(f"the {profile} book did not build:\n{result.stdout}\n{result.stderr}")
    print(result.stdout)
    return BuiltBook(
        root=root, profile=profile, html=Layout(root, profile).html_dir,
        documents=toc_documents(root), notebooks=toc_notebooks(root), seconds=seconds,
    )


@pytest.fixture(scope="session")
def chromium():
    """A selenium-driven headless Chromium; skipped without one, except where it is required.

    ``make test`` and CI require it (``ERASER_REQUIRE_CHROMIUM=1`` or ``CI``), so a missing
    browser fails there instead of passing silently.
    """
    found = html_check.find_chromium()
    if found is None:
        message = "chromium and chromedriver not found: apt-get install chromium chromium-driver"
        if os.environ.get("ERASER_REQUIRE_CHROMIUM") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    profile_dir = html_check.temporary_profile()
    driver = html_check.open_chromium(*found, profile_dir)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def fixture_book(tmp_path_factory) -> BuiltBook:
    """The fixture book (one MyST page, one glue notebook) with the real ``_config.yml``, smoke profile."""
    root = tmp_path_factory.mktemp("fixture") / "demo_book"
    shutil.copytree(FIXTURE_BOOK, root)
    copy_settings(root)
    return build_book(root, "smoke")


@pytest.fixture(scope="session")
def smoke_book() -> BuiltBook:
    """The real book under the smoke profile, built in ``_build/profiles/smoke`` of the repository."""
    return build_book(REPO, "smoke")
