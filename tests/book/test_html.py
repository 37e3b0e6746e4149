"""The built book, as a reader's browser shows it (headless Chromium).

First the checker itself is shown to catch what it claims to catch, on hand-made pages; then it
reads every page of the fixture book and of the real smoke book and saves screenshots to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import zlib
from pathlib import Path

import html_check
import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size, written without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


SOUND_PAGE = """<!doctype html><html><body>
<h1 id="top">A sound page</h1>
<img src="figure.png" alt="a figure">
<a href="other.html">other page</a> <a href="other.html#here">an anchor</a> <a href="#top">top</a>
<a href="https://example.org/">external, not checked</a>
<pre>{glue:text}`shown as code on purpose:.2f`</pre>
<div class="cell_output"><pre>mean error 0.12</pre></div>
<table><tr><th>method</th><td style="white-space: nowrap">0.512 ± 0.013</td></tr></table>
</body></html>"""

WIDE_CODE = "x = [" + ", ".join(str(i) for i in range(120)) + "]"
WIDE_TABLE = "<tr>" + "".join(f'<td style="white-space: nowrap">0.{i:03d} ± 0.001</td>' for i in range(30)) + "</tr>"
BROKEN_PAGE = f"""<!doctype html><html><body>
<img src="missing.png" alt="a figure that is not there">
<img src="empty.png" alt="a file that is not an image">
<img src="figure.png">
<img src="figure.png" alt="../_images/figure.png">
<a href="nowhere.html">a page that is not there</a>
<a href="other.html#not-an-anchor">an anchor that is not there</a>
<a href="../notes.md">a source file beside the book</a>
<p>The mean is {{glue:text}}`mean:.3f` and the file {{download}}`x.csv`.</p>
<div class="cell_output docutils container"><div class="output traceback highlight-ipythontb">
<pre>Traceback (most recent call last):
ValueError: boom</pre></div></div>
<div class="cell_output docutils container"><div class="output stderr highlight-myst-ansi">
<pre>UserWarning: careful</pre></div></div>
<details><summary>folded code</summary><pre>{WIDE_CODE}</pre></details>
<table>{WIDE_TABLE}</table>
</body></html>"""


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    """A folder of pages (the "book"), and a source file beside it that no page may link to."""
    book = tmp_path / "html"
    book.mkdir()
    (tmp_path / "notes.md").write_text("# not part of the book\n")
    (book / "figure.png").write_bytes(_png(12, 8))
    (book / "empty.png").write_bytes(b"")
    (book / "other.html").write_text('<html><body><p id="here">here</p></body></html>')
    (book / "sound.html").write_text(SOUND_PAGE)
    (book / "broken.html").write_text(BROKEN_PAGE)
    return book


def test_checker_passes_a_sound_page(chromium, hand_made):
    report = html_check.check_page(chromium, hand_made / "sound.html")
    assert report.problems == []
    assert report.images == 1
    assert report.local_links == 3  # other.html, other.html#here, #top; not the external one
    assert report.blocks == 3  # two code blocks and a table were measured, and fit


def test_checker_flags_every_kind_of_breakage(chromium, hand_made):
    problems = "\n".join(html_check.check_page(chromium, hand_made / "broken.html").problems)
    assert "image does not load: missing.png" in problems
    assert "image does not load: empty.png" in problems
    assert "broken link (a[href]): nowhere.html" in problems
    assert "broken anchor: other.html#not-an-anchor" in problems
    assert "unrendered MyST role in the text: {glue:text}`" in problems
    assert "unrendered MyST role in the text: {download}`" in problems
    assert "error output: output traceback" in problems
    assert "error output: output stderr" in problems
    assert "a Python error in a cell's output: Traceback" in problems
    assert "image without alt text: figure.png (alt '')" in problems
    assert "image without alt text: figure.png (alt '../_images/figure.png')" in problems
    assert "link to a file outside the book (a[href]): ../notes.md" in problems
    assert "code block wider than the text column" in problems  # even inside a folded <details>
    assert "table wider than the text column" in problems


def _check_all_pages(chromium, book) -> list[html_check.PageReport]:
    reports = html_check.check_book(chromium, book.html, book.documents)
    broken = [str(r) for r in reports if r.problems]
    assert not broken, "pages with problems:\n" + "\n".join(broken)
    return reports


@pytest.mark.slow
def test_fixture_book_renders_figures_glue_and_downloads(chromium, fixture_book):
    reports = {r.page.stem: r for r in _check_all_pages(chromium, fixture_book)}
    assert reports["demo_glue"].images >= 1  # the glued seaborn figure
    assert reports["intro"].math >= 1  # MathJax typeset the page's math, offline

    # The number in the MyST page's prose is the one the notebook computed from its results.
    results = fixture_book.root / "_build/profiles/smoke/book/results/demo_glue/points.csv"
    with results.open() as handle:
        ys = [float(row["y"]) for row in csv.DictReader(handle)]
    assert len(ys) == 50  # the smoke profile's n_points, not the notebook's default
    chromium.get(fixture_book.page("book/intro").as_uri())
    prose = chromium.execute_script("return document.body.innerText")
    assert f"is {sum(ys) / len(ys):.3f}, over 50 points" in prose

    # The page offers the results for download, and the download is the file itself.
    chromium.get(fixture_book.page("book/demo_glue").as_uri())
    links = chromium.execute_script(
        "return Array.from(document.querySelectorAll('a.download')).map(a => a.href)"
    )
    assert any(link.endswith("/points.csv") for link in links), links
    downloaded = Path(next(link for link in links if link.endswith("/points.csv"))[len("file://"):])
    assert downloaded.read_bytes() == results.read_bytes()

    html_check.screenshot(chromium, fixture_book.page("book/demo_glue"), SCREENSHOTS / "fixture-chapter.png")


@pytest.mark.slow
def test_smoke_book_renders_and_screenshots(chromium, smoke_book):
    # The smoke build's wall-clock goes to build.json below, a measurement, not a timed assertion: it
    # depends on what else the machine runs, and a correct build must not fail for that.
    shots = SCREENSHOTS / "smoke"
    shutil.rmtree(shots, ignore_errors=True)
    reports = html_check.check_book(chromium, smoke_book.html, smoke_book.documents, shots)
    broken = [str(r) for r in reports if r.problems]
    assert not broken, "pages with problems:\n" + "\n".join(broken)
    assert sum(r.images for r in reports) >= len(smoke_book.notebooks)  # the checks saw the figures
    for document in smoke_book.documents:  # a screenshot of every page
        assert (shots / f"{Path(document).name}.png").stat().st_size > 10_000, document
    home = html_check.screenshot(chromium, smoke_book.html / "index.html", shots / "home.png")
    assert home.stat().st_size > 10_000
    summary = {"profile": "smoke", "build_seconds": round(smoke_book.seconds, 1), "pages": smoke_book.documents}
    (shots / "build.json").write_text(json.dumps(summary, indent=2))
