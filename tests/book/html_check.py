"""Open built HTML pages in headless Chromium and list what a reader would see broken.

Used by ``test_html.py``. The checks, per page:

* every image loads with a non-zero natural size and has alt text (not its file name, which is
  what Sphinx writes when a figure has none);
* every local link (``a[href]``), stylesheet and script resolves to an existing file inside the
  book (not to a source file or a repository path beside it), and every ``#fragment`` to an
  element with that id in the target page;
* no table or code block is wider than the text column at the 1280 px window (with every
  folded cell opened): the reader would have to scroll it sideways;
* no unrendered MyST (literal ``{glue:...}``, ``{download}``, ``{numref}``... in the text);
* no error output from a notebook (traceback or stderr cells, a Python exception line);
* math typeset by MathJax (which loads from the book itself, not from a CDN).

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver``; selenium drives them
through the given paths, so nothing is downloaded.

On a built book (the default profile's, after ``make book``)::

    python tests/book/html_check.py [--profile default]   # screenshots: artifacts/screenshots/default
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
UNRENDERED = re.compile(r"\{(glue(:\w+)?|download|numref|ref|doc|eq|math|cite)\}`")
ERROR_SELECTORS = ", ".join(
    [".output.traceback", ".output.stderr", ".cell_output .stderr", ".system-message"]
)
IMAGE_FILE = re.compile(r"\.(png|jpe?g|gif|svg|webp)$", re.I)
PYTHON_ERROR = re.compile(r"Traceback \(most recent call last\)|^[A-Z]\w+(Error|Exception): ", re.M)


def find_chromium() -> tuple[str, str] | None:
    """Paths of ``chromium`` and ``chromedriver``, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def open_chromium(browser: str, driver: str, profile_dir: Path):
    """Starts headless Chromium under selenium with the flags that work offline in a container.

    Args:
        browser: path of the chromium binary.
        driver: path of chromedriver (same Debian version as the browser).
        profile_dir: an empty directory for the browser's user data.

    Returns:
        A ``selenium.webdriver.Chrome``; the caller quits it.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    # Given both paths, selenium does not look for (or download) a driver or a browser.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@dataclass
class PageReport:
    """What one page showed: the problems found, and counts that prove the checks looked."""

    page: Path
    problems: list[str] = field(default_factory=list)
    images: int = 0
    local_links: int = 0
    math: int = 0
    blocks: int = 0  # tables and code blocks whose width was measured

    def __str__(self) -> str:
        return f"{self.page}:\n  " + "\n  ".join(self.problems)


def check_page(driver, page: Path, *, root: Path | None = None, timeout: float = 15.0) -> PageReport:
    """Loads ``page`` and checks it (see the module docstring).

    Args:
        driver: a selenium driver from :func:`open_chromium`.
        page: an HTML file on disk.
        root: the book's HTML folder; a local link must stay inside it (default: the page's folder).
        timeout: seconds to wait for images and math.

    Returns:
        The page's report; ``report.problems`` is empty when the page is sound.
    """
    report = PageReport(page)
    driver.get(page.resolve().as_uri())
    _wait_until_loaded(driver, timeout)
    _check_images(driver, report)
    _check_local_references(driver, (root or page.parent).resolve(), report)
    # Code blocks may show MyST syntax on purpose; only prose must not.
    text = driver.execute_script(
        "const body = document.body.cloneNode(true);"
        "body.querySelectorAll('pre, code, script, style').forEach(e => e.remove());"
        "return body.textContent"
    )
    for match in UNRENDERED.finditer(text):
        report.problems.append(f"unrendered MyST role in the text: {match.group(0)}...")
    for element in driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(e => e.className + ': ' + e.innerText.slice(0, 200))",
        ERROR_SELECTORS,
    ):
        report.problems.append(f"error output: {element}")
    outputs = driver.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output, .output')).map(e => e.innerText)"
    )
    for output in outputs:
        match = PYTHON_ERROR.search(output)
        if match:
            report.problems.append(f"a Python error in a cell's output: {match.group(0)}")
    _check_math(driver, report)
    _check_widths(driver, report)  # last: it opens the folded cells
    return report


def _wait_until_loaded(driver, timeout: float) -> None:
    # A headless window never scrolls, so images marked lazy below the fold would never load.
    driver.execute_script(
        "document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; });"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = driver.execute_script(
            "return document.readyState !== 'complete' || "
            "Array.from(document.images).some(i => !i.complete) || "
            "(window.MathJax && MathJax.startup && MathJax.startup.document && "
            " document.querySelectorAll('mjx-container').length === 0 && "
            " document.querySelectorAll('.math').length > 0)"
        )
        if not pending:
            return
        time.sleep(0.1)


def _check_images(driver, report: PageReport) -> None:
    images = driver.execute_script(
        "return Array.from(document.images).map(i => "
        "[i.getAttribute('src'), i.naturalWidth, i.naturalHeight, i.complete, i.getAttribute('alt') || ''])"
    )
    report.images = len(images)
    for src, width, height, complete, alt in images:
        if not complete or not width or not height:
            report.problems.append(f"image does not load: {src} ({width}x{height})")
        if not alt.strip() or alt == src or IMAGE_FILE.search(alt):
            report.problems.append(f"image without alt text: {src} (alt {alt!r})")


def _check_local_references(driver, root: Path, report: PageReport) -> None:
    references = driver.execute_script(
        "const pick = (selector, attribute, property) => "
        "  Array.from(document.querySelectorAll(selector))"
        "    .map(e => [e.getAttribute(attribute), e[property], selector]);"
        "return pick('a[href]', 'href', 'href')"
        "  .concat(pick('link[rel=stylesheet][href]', 'href', 'href'))"
        "  .concat(pick('script[src]', 'src', 'src'));"
    )
    ids_cache: dict[Path, set[str]] = {}
    for raw, resolved, selector in references:
        parts = urlsplit(resolved or "")
        if parts.scheme != "file":
            continue  # external links are not this book's to check (and there is no network)
        report.local_links += 1
        target = Path(unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if root not in target.parents:
            report.problems.append(f"link to a file outside the book ({selector}): {raw} -> {target}")
            continue
        if not target.is_file():
            report.problems.append(f"broken link ({selector}): {raw} -> {target} does not exist")
            continue
        fragment = unquote(parts.fragment)
        if fragment and target.suffix == ".html":
            ids = ids_cache.setdefault(target, _element_ids(target))
            if fragment not in ids:
                report.problems.append(f"broken anchor: {raw} -> no id '{fragment}' in {target.name}")


def _check_math(driver, report: PageReport) -> None:
    counts = driver.execute_script(
        "return [document.querySelectorAll('.math').length,"
        " document.querySelectorAll('mjx-container').length]"
    )
    report.math = counts[1]
    if counts[0] and not counts[1]:
        report.problems.append(f"{counts[0]} math element(s) not typeset by MathJax")


def _check_widths(driver, report: PageReport) -> None:
    """Tables and code blocks that do not fit the text column (or their own box, for code)."""
    wide = driver.execute_script(
        "document.querySelectorAll('details').forEach(d => { d.open = true; });"
        "document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));"
        "const column = document.querySelector('article.bd-article') || document.querySelector('main')"
        "  || document.body;"
        "const limit = column.clientWidth;"
        "return Array.from(column.querySelectorAll('table, pre')).map(e => {"
        "  const box = e.tagName === 'PRE' ? Math.min(e.clientWidth, limit) : limit;"
        "  return [e.tagName.toLowerCase(), e.scrollWidth, box, (e.innerText || '').trim().slice(0, 70)];"
        "}).filter(([tag, need, box]) => box > 0);"
    )
    report.blocks = len(wide)
    for tag, need, box, text in wide:
        if need <= box + 1:
            continue
        kind = "table" if tag == "table" else "code block"
        first = text.splitlines()[0] if text else ""
        report.problems.append(f"{kind} wider than the text column ({need} px > {box} px): {first!r}")


class _IdCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


def _element_ids(page: Path) -> set[str]:
    collector = _IdCollector()
    collector.feed(page.read_text(errors="replace"))
    return collector.ids


def screenshot(driver, page: Path, target: Path, max_height: int = 6000) -> Path:
    """Saves a full-page PNG of ``page`` (cut at ``max_height`` pixels) to ``target``.

    The viewport is made as tall as the page for the shot, so fixed sidebars render in full.
    """
    driver.get(page.resolve().as_uri())
    _wait_until_loaded(driver, 15.0)
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": width, "height": min(height, max_height), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot["data"]))
    return target


def temporary_profile() -> Path:
    """A fresh, empty user-data directory (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix="chromium-profile-"))


def check_book(driver, html: Path, documents: list[str], screenshots: Path | None = None) -> list[PageReport]:
    """Checks every page of a built book, and saves a screenshot of each when asked.

    Args:
        driver: a selenium driver from :func:`open_chromium`.
        html: the book's HTML folder (``<tree>/_build/html``).
        documents: the toc's documents, e.g. ``["book/intro", ...]``.
        screenshots: a folder for one ``<page>.png`` per document, or None.

    Returns:
        One report per document, in toc order.
    """
    reports = []
    for document in documents:
        page = html / f"{document}.html"
        reports.append(check_page(driver, page, root=html))
        if screenshots is not None:
            screenshot(driver, page, screenshots / f"{Path(document).name}.png")
    return reports


def main(argv: list[str] | None = None) -> int:
    """Checks a built book in headless Chromium; exit status 1 when a page has a problem."""
    import argparse
    import sys

    repository = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repository))
    from eraserbook.layout import Layout, toc_documents

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="whose build to check (default: default)")
    parser.add_argument("--root", type=Path, default=repository, help="book root (default: the repository)")
    parser.add_argument("--screenshots", type=Path,
                        help="one PNG per page goes here (default: artifacts/screenshots/<profile>)")
    args = parser.parse_args(argv)
    screenshots = args.screenshots or repository / "artifacts" / "screenshots" / args.profile
    html = Layout(args.root.resolve(), args.profile).html_dir
    if not (html / "index.html").is_file():
        print(f"no built book at {html}: run `python -m eraserbook build --profile {args.profile}`")
        return 2
    found = find_chromium()
    if found is None:
        print("chromium and chromedriver not found: apt-get install chromium chromium-driver")
        return 2
    profile_dir = temporary_profile()
    driver = open_chromium(*found, profile_dir)
    try:
        reports = check_book(driver, html, toc_documents(args.root.resolve()), screenshots)
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)
    broken = [report for report in reports if report.problems]
    for report in broken:
        print(report)
    print(f"{len(reports)} pages checked, {len(broken)} with problems; screenshots in {screenshots}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
