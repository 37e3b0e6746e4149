"""The book machinery: profiles, parameters, skipping, atomic outputs, failures, the build.

A tiny book (one MyST page, one notebook that records what it was given) is built in a temporary
folder; the command-line tests run ``python -m eraserbook`` as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from book_settings import copy_settings
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from eraserbook import jobs
from eraserbook.errors import RunnerError
from eraserbook.jobs import input_stamp, is_up_to_date, make_jobs
from eraserbook.layout import Layout, prune, toc_documents, toc_notebooks
from eraserbook.profiles import parse_value

TINY_SOURCE = """\
import json, os, sys
from pathlib import Path

if fail:
    raise ValueError("asked to fail")
if noise:
    print("a warning on stderr", file=sys.stderr)
Path(results_dir).mkdir(parents=True, exist_ok=True)
names = ["OMP_WAIT_POLICY", "HF_HUB_OFFLINE", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM"]
record = {"profile": profile, "scale": scale, "cwd": os.getcwd(),
          "env": {name: os.environ.get(name) for name in names}}
(Path(results_dir) / "run.json").write_text(json.dumps(record))
print("scale", scale)
"""

PROFILES_YML = """\
profiles: {smoke: tiny, default: laptop, full: big, paper: gpu}
notebooks:
  tiny:
    smoke: {scale: 2}
"""

TOC_YML = "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/tiny\n"


def write_notebook(path: Path, parameters: str, body: str = TINY_SOURCE) -> None:
    cells = [
        new_markdown_cell("# Tiny chapter"),
        new_code_cell(parameters, metadata={"tags": ["parameters"]}),
        new_code_cell(body),
    ]
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, path)


def make_tiny_book(root: Path) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    copy_settings(root)
    (root / "_toc.yml").write_text(TOC_YML)
    (root / "book" / "intro.md").write_text("# Tiny book\n\nA page.\n")
    (root / "notebooks" / "profiles.yml").write_text(PROFILES_YML)
    write_notebook(
        root / "notebooks" / "tiny.ipynb",
        'profile = "default"\nresults_dir = "results/tiny"\nscale = 1\nfail = False\nnoise = False',
    )
    return root


def cli(root: Path, *args: str, clean_env: bool = False):
    """Runs the runner's command line; ``clean_env`` drops the variables the runner must set."""
    import subprocess

    env = dict(os.environ)
    if clean_env:
        for name in ("OMP_WAIT_POLICY", "HF_HUB_OFFLINE", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "eraserbook", *args, "--root", str(root)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )


def read_record(layout: Layout) -> dict:
    return json.loads((layout.results("tiny") / "run.json").read_text())


@pytest.fixture(scope="module")
def ran_book(tmp_path_factory) -> Path:
    """The tiny book after one ``run`` under the default profile, with one thread."""
    root = make_tiny_book(tmp_path_factory.mktemp("ran") / "book_root")
    result = cli(root, "run", "--threads", "1", clean_env=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[1/1] tiny (default) ran in" in result.stdout
    return root


@pytest.fixture
def book(ran_book: Path, tmp_path: Path) -> Path:
    """A private copy of ``ran_book`` (executed notebook and stamp included) to change at will."""
    return Path(shutil.copytree(ran_book, tmp_path / "book_root"))


# ---------------------------------------------------------------------------------------------
# Set-up errors, found before any kernel starts


def test_profiles_must_name_known_profiles_notebooks_and_parameters(tmp_path):
    root = make_tiny_book(tmp_path)
    profiles = root / "notebooks" / "profiles.yml"
    profiles.write_text(PROFILES_YML.replace("smoke: {scale", "quick: {scale"))
    with pytest.raises(RunnerError, match="unknown profile 'quick'"):
        make_jobs(root, "smoke", ["tiny"], {}, explicit=False)
    profiles.write_text(PROFILES_YML.replace("scale: 2", "scael: 2"))
    with pytest.raises(RunnerError, match="sets scael, which notebooks/tiny.ipynb does not declare"):
        make_jobs(root, "smoke", ["tiny"], {}, explicit=False)
    profiles.write_text(PROFILES_YML.replace("  tiny:", "  tinny:"))
    with pytest.raises(RunnerError, match="no notebook named tinny"):
        make_jobs(root, "smoke", ["tiny"], {}, explicit=False)
    profiles.write_text(PROFILES_YML.replace("paper: gpu", ""))
    with pytest.raises(RunnerError, match="must describe exactly"):
        make_jobs(root, "smoke", ["tiny"], {}, explicit=False)


def test_parameters_resolve_defaults_then_profile_then_command_line(tmp_path):
    root = make_tiny_book(tmp_path)
    (job,) = make_jobs(root, "default", ["tiny"], {}, explicit=True)
    assert job.parameters == {"profile": "default", "results_dir": "results/tiny"}
    (job,) = make_jobs(root, "smoke", ["tiny"], {}, explicit=True)
    assert job.parameters["scale"] == 2
    (job,) = make_jobs(root, "smoke", ["tiny"], {"scale": parse_value("0.5")}, explicit=True)
    assert job.parameters["scale"] == 0.5
    with pytest.raises(RunnerError, match="declares no parameter 'ratio'"):
        make_jobs(root, "smoke", ["tiny"], {"ratio": 0.1}, explicit=True)
    with pytest.raises(RunnerError, match="set by the runner"):
        make_jobs(root, "smoke", ["tiny"], {"results_dir": "x"}, explicit=True)
    assert parse_value("[1, 2]") == [1, 2] and parse_value("true") is True
    assert parse_value("1e-3") == 0.001 and parse_value("abc") == "abc"


def test_notebooks_must_declare_the_runner_parameters(tmp_path):
    root = make_tiny_book(tmp_path)
    write_notebook(root / "notebooks" / "tiny.ipynb", "scale = 1\nfail = False")
    with pytest.raises(RunnerError, match="must define profile, results_dir"):
        make_jobs(root, "default", ["tiny"], {}, explicit=True)
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), root / "notebooks" / "tiny.ipynb")
    with pytest.raises(RunnerError, match="no cell is tagged 'parameters'"):
        make_jobs(root, "default", ["tiny"], {}, explicit=True)


def test_toc_and_notebooks_must_agree(tmp_path):
    root = make_tiny_book(tmp_path)
    assert toc_documents(root) == ["book/intro", "book/tiny"]
    assert toc_notebooks(root) == ["tiny"]
    (root / "_toc.yml").write_text(TOC_YML + "  - file: book/missing\n")
    with pytest.raises(RunnerError, match="lists 'book/missing'"):
        toc_notebooks(root)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    with pytest.raises(RunnerError, match="notebooks not in _toc.yml: tiny"):
        toc_notebooks(root)


def test_stamp_changes_with_the_notebook_and_the_parameters(tmp_path):
    root = make_tiny_book(tmp_path)
    (job,) = make_jobs(root, "default", ["tiny"], {}, explicit=True)
    stamp = input_stamp(job)
    assert input_stamp(job) == stamp  # deterministic
    job.parameters["scale"] = 2
    assert input_stamp(job) != stamp
    del job.parameters["scale"]
    write_notebook(root / "notebooks" / "tiny.ipynb", 'profile = "default"\nresults_dir = "r"\nscale = 1\nfail = 0')
    assert input_stamp(job) != stamp


def test_stamp_includes_the_results_of_chapters_a_notebook_reads(tmp_path):
    """A chapter that quotes another's results reruns when those results change."""
    root = make_tiny_book(tmp_path)
    source = root / "notebooks" / "tiny.ipynb"
    notebook = nbformat.read(source, as_version=4)
    notebook.metadata["eraser_book"] = {"reads_results_of": ["experiment"]}
    nbformat.write(notebook, source)
    (job,) = make_jobs(root, "default", ["tiny"], {}, explicit=True)
    before = input_stamp(job)
    results = job.layout.results("experiment")
    results.mkdir(parents=True)
    (results / "runs.csv").write_text("method,score\nretrain,0.5\n")
    with_results = input_stamp(job)
    assert with_results != before
    (results / "runs.csv").write_text("method,score\nretrain,0.6\n")
    assert input_stamp(job) not in (before, with_results)


def _copy_of_the_code(target: Path) -> Path:
    """The three packages, copied to ``target`` so that a test can edit them."""
    repository = Path(__file__).resolve().parents[2]
    for package in ("eraserlib", "eraserlab", "eraserbook"):
        shutil.copytree(repository / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_editing_the_book_machinery_marks_no_chapter_stale_but_editing_the_library_does(
        book, tmp_path, monkeypatch):
    """The stamp hashes eraserlib/ and eraserlab/, not eraserbook/ (the palette, the CLI, ...)."""
    code = _copy_of_the_code(tmp_path / "code")
    monkeypatch.setattr(jobs, "REPOSITORY_ROOT", code)
    repository = Path(__file__).resolve().parents[2]
    (tiny,) = make_jobs(book, "default", ["tiny"], {}, explicit=False)
    chapters = make_jobs(repository, "smoke", toc_notebooks(repository), {}, explicit=False)
    assert len(chapters) >= 9
    before = [input_stamp(job) for job in chapters]
    assert is_up_to_date(tiny, input_stamp(tiny))  # the copy hashes as the code the tiny book ran with

    for machinery in ("palette.py", "cli.py", "report.py", "execute.py"):
        _edit(code / "eraserbook" / machinery)
    assert is_up_to_date(tiny, input_stamp(tiny))
    assert [input_stamp(job) for job in chapters] == before

    _edit(code / "eraserlib" / "metrics.py")
    assert not is_up_to_date(tiny, input_stamp(tiny))
    after_library = [input_stamp(job) for job in chapters]
    assert all(a != b for a, b in zip(after_library, before))
    _edit(code / "eraserlab" / "records.py")
    assert all(a != b for a, b in zip([input_stamp(job) for job in chapters], after_library))


def test_unknown_profile_and_missing_notebook_are_usage_errors(tmp_path):
    root = make_tiny_book(tmp_path)
    result = cli(root, "run", "notebooks/nope.ipynb")
    assert result.returncode == 2 and "nope.ipynb: no such notebook" in result.stderr
    result = cli(root, "build", "--profile", "huge")
    assert result.returncode == 2 and "invalid choice: 'huge'" in result.stderr


# ---------------------------------------------------------------------------------------------
# Running notebooks


def test_run_sets_kernel_environment_parameters_and_working_directory(ran_book):
    layout = Layout(ran_book, "default")
    record = read_record(layout)
    assert record["profile"] == "default" and record["scale"] == 1
    assert record["env"] == {
        "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    assert Path(record["cwd"]) == layout.book_dir  # results_dir is relative to the executed page


def test_executed_page_hides_parameters_and_ends_with_the_run_box(ran_book):
    executed = nbformat.read(Layout(ran_book, "default").executed("tiny"), as_version=4)
    tagged = [c for c in executed.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert len(tagged) == 2 and all("remove-cell" in c.metadata.tags for c in tagged)
    about = executed.cells[-1].source
    assert about.startswith(":::{admonition} About this run")
    assert "{download}`run.json <results/tiny/run.json>`" in about
    assert "python -m eraserbook run notebooks/tiny.ipynb --profile default" in about
    assert executed.metadata["eraser_book"]["results"] == ["results/tiny/run.json"]


def test_unchanged_inputs_are_skipped_and_changed_ones_rerun(book):
    layout = Layout(book, "default")
    before = layout.executed("tiny").read_bytes()
    result = cli(book, "run")
    assert result.returncode == 0 and "up to date, skipped" in result.stdout
    assert layout.executed("tiny").read_bytes() == before
    result = cli(book, "run", "notebooks/tiny.ipynb", "-p", "scale", "3")
    assert result.returncode == 0 and "ran in" in result.stdout, result.stderr
    assert read_record(layout)["scale"] == 3
    about = nbformat.read(layout.executed("tiny"), as_version=4).cells[-1].source
    assert "`scale = 3`" in about and "--profile default -p scale 3`" in about


def test_a_failed_run_keeps_the_previous_page_and_names_the_cell(book):
    layout = Layout(book, "default")
    page, record = layout.executed("tiny").read_bytes(), read_record(layout)
    result = cli(book, "run", "notebooks/tiny.ipynb", "-p", "fail", "true")
    assert result.returncode == 1
    assert "FAILED after" in result.stdout
    assert "notebooks/tiny.ipynb (profile default) failed in cell In [" in result.stderr
    assert '|     raise ValueError("asked to fail")' in result.stderr
    assert "ValueError: asked to fail" in result.stderr
    assert layout.executed("tiny").read_bytes() == page
    assert read_record(layout) == record
    assert layout.failed("tiny").is_file()
    assert not [p for p in layout.book_dir.iterdir() if p.name.startswith(".")]  # no scratch left


def test_profiles_write_separate_books(book):
    default_page = Layout(book, "default").executed("tiny").read_bytes()
    result = cli(book, "run", "--profile", "smoke")
    assert result.returncode == 0, result.stderr
    smoke = Layout(book, "smoke")
    assert smoke.tree == book / "_build" / "profiles" / "smoke"
    assert read_record(smoke)["scale"] == 2
    assert (smoke.tree / "_toc.yml").is_file() and (smoke.book_dir / "intro.md").is_file()
    assert Layout(book, "default").executed("tiny").read_bytes() == default_page


def test_build_treats_a_warning_as_an_error_and_keeps_the_previous_book(book):
    result = cli(book, "build")
    assert result.returncode == 0, result.stdout + result.stderr
    intro = Layout(book, "default").html_dir / "book" / "intro.html"
    before = intro.read_bytes()
    (book / "book" / "intro.md").write_text("# Tiny book\n\n{glue:text}`tiny.ipynb::no_such_key:.2f`\n")
    result = cli(book, "build")
    assert result.returncode == 1
    assert "no_such_key" in result.stderr
    assert intro.read_bytes() == before


def test_build_rejects_a_page_with_stderr_output(book):
    profiles = book / "notebooks" / "profiles.yml"
    profiles.write_text(profiles.read_text() + "    default: {noise: true}\n")
    result = cli(book, "build")
    assert result.returncode == 1
    assert "stderr output in cell(s) In [" in result.stdout  # the runner says so at once
    assert "stderr" in result.stderr and "book/tiny" in result.stderr  # and the build fails on it


def test_build_removes_pages_whose_notebook_is_gone(book):
    layout = Layout(book, "default")
    shutil.copy(layout.executed("tiny"), layout.book_dir / "old.ipynb")
    (layout.results("old")).mkdir(parents=True)
    prune(book, "default", keep=["tiny"])
    assert not (layout.book_dir / "old.ipynb").exists() and not layout.results("old").exists()
    assert layout.executed("tiny").is_file()


# ---------------------------------------------------------------------------------------------
# Several notebooks at once

TIMED_SOURCE = """\
import json, os, time
from pathlib import Path

started = time.time()
if reads:
    read = json.loads(Path("results", reads, "run.json").read_text())  # the chapter it reads
else:
    read = None
if fail:
    raise ValueError("asked to fail")
time.sleep(pause)
Path(results_dir).mkdir(parents=True, exist_ok=True)
record = {"started": started, "ended": time.time(), "read": read, "threads": os.environ.get("OMP_NUM_THREADS")}
(Path(results_dir) / "run.json").write_text(json.dumps(record))
"""


def make_parallel_book(root: Path) -> Path:
    """Three chapters: `slow` and `other` are independent; `reader` reads `slow`'s results."""
    make_tiny_book(root)
    (root / "notebooks" / "tiny.ipynb").unlink()
    (root / "notebooks" / "profiles.yml").write_text("profiles: {smoke: tiny, default: laptop, full: big, paper: gpu}\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/slow\n  - file: book/reader\n  - file: book/other\n")
    for name, reads, pause in (("slow", "", 4), ("reader", "slow", 0), ("other", "", 0)):
        write_notebook(root / "notebooks" / f"{name}.ipynb",
                       f'profile = "default"\nresults_dir = "results/{name}"\nreads = "{reads}"\n'
                       f"pause = {pause}\nfail = False", TIMED_SOURCE)
    reader = root / "notebooks" / "reader.ipynb"
    notebook = nbformat.read(reader, as_version=4)
    notebook.metadata["eraser_book"] = {"reads_results_of": ["slow"]}
    nbformat.write(notebook, reader)
    return root


def test_parallel_jobs_overlap_but_a_reader_waits_for_what_it_reads(tmp_path):
    root = make_parallel_book(tmp_path / "book_root")
    result = cli(root, "run", "--jobs", "2", clean_env=True)
    assert result.returncode == 0, result.stdout + result.stderr
    layout = Layout(root, "default")
    runs = {name: json.loads((layout.results(name) / "run.json").read_text()) for name in ("slow", "reader", "other")}
    assert runs["other"]["started"] < runs["slow"]["ended"]  # ran beside the slow one
    assert runs["reader"]["started"] >= runs["slow"]["ended"]  # waited for the results it reads
    assert runs["reader"]["read"] == runs["slow"]
    assert {r["threads"] for r in runs.values()} == {str(max(1, min(4, len(os.sched_getaffinity(0)) // 2)))}
    for index, name in enumerate(("slow", "reader", "other"), start=1):
        assert f"[{index}/3] {name:<6} (default) ran in" in result.stdout
    again = cli(root, "run", "--jobs", "2")
    assert again.returncode == 0 and again.stdout.count("up to date, skipped") == 3


def test_a_parallel_build_starts_the_notebooks_listed_under_start_first_before_the_others(tmp_path):
    root = make_parallel_book(tmp_path / "book_root")
    reader = root / "notebooks" / "reader.ipynb"  # made independent: three chapters, none reads another
    notebook = nbformat.read(reader, as_version=4)
    notebook.metadata.pop("eraser_book")
    nbformat.write(notebook, reader)
    profiles = root / "notebooks" / "profiles.yml"
    profiles.write_text(profiles.read_text() + "start_first: [other]\n")
    result = cli(root, "run", "--jobs", "2", "-p", "reads", "", clean_env=True)
    assert result.returncode == 0, result.stdout + result.stderr
    layout = Layout(root, "default")
    runs = {name: json.loads((layout.results(name) / "run.json").read_text()) for name in ("slow", "reader", "other")}
    # toc order would start slow and reader, and other only once reader ended
    assert runs["other"]["started"] < runs["slow"]["ended"]
    assert runs["reader"]["started"] >= runs["other"]["ended"]
    profiles.write_text(profiles.read_text() + "start_first: [nowhere]\n")
    unknown = cli(root, "run", "--jobs", "2")
    assert unknown.returncode != 0 and "no notebook named nowhere" in unknown.stderr


def test_parallel_jobs_do_not_run_a_reader_of_a_failed_chapter(tmp_path):
    root = make_parallel_book(tmp_path / "book_root")
    result = cli(root, "run", "--jobs", "2", "--keep-going", "-p", "fail", "true",
                 "notebooks/slow.ipynb", "notebooks/reader.ipynb")
    assert result.returncode == 1
    assert "slow   (default) FAILED after" in result.stdout
    assert "reader (default) not run: slow failed" in result.stdout
    assert not Layout(root, "default").results("reader").exists()
