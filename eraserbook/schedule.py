"""Running several notebooks: in turn or a few at once, each after the chapters whose results it reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from eraserbook.errors import RunnerError
from eraserbook.execute import Outcome, execute, kernel_environment
from eraserbook.jobs import Job, input_stamp, is_up_to_date, make_jobs, results_read_by
from eraserbook.layout import reading_order, stage
from eraserbook.profiles import PROFILES_FILE, Profiles, check_profile


def run(
    root: Path,
    profile: str,
    names: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    force: bool = False,
    keep_going: bool = False,
    threads: int | None = None,
    cell_timeout: int | None = None,
    jobs: int | None = None,
) -> bool:
    """Executes notebooks under a profile, skipping those whose inputs have not changed.

    With ``jobs`` > 1 up to that many notebooks run at once, each in its own kernel, those the
    profiles file lists under ``start_first`` first, then the others in toc order; a notebook
    that reads another's results (``reads_results_of``) starts only after that one finished.
    Notebooks that need the same cached base model wait for each other instead of training it
    twice (:func:`eraserlab.cache.cache_lock`).

    Args:
        root: the book root.
        profile: one of ``PROFILES``.
        names: notebook names; ``None`` runs every notebook (toc order).
        overrides: ``-p`` parameter overrides.
        force: rerun even when up to date.
        keep_going: go on after a failed notebook (the result is still a failure).
        threads: thread cap per kernel (default: ``OMP_NUM_THREADS``, else the usable cores shared
            among the parallel kernels, at most 4).
        cell_timeout: seconds one cell may take (default: no limit).
        jobs: notebooks run at once (default: :func:`default_jobs`).

    Returns:
        True when every notebook ran or was up to date.
    """
    check_profile(profile)
    if jobs is not None and jobs < 1:
        raise RunnerError(f"--jobs must be at least 1, got {jobs}")
    explicit = names is not None
    if names is None:
        names = reading_order(root)
    todo = make_jobs(root, profile, names, overrides or {}, explicit)
    stage(root, profile)
    jobs = min(jobs or default_jobs(), max(1, len(todo)))
    os.environ.update(kernel_environment(threads or default_threads(jobs)))
    width = max((len(job.name) for job in todo), default=0)
    label = {job.name: f"[{index}/{len(todo)}] {job.name:<{width}} ({profile}) " for index, job in enumerate(todo, 1)}
    if jobs == 1:
        return _run_in_turn(todo, label, force, keep_going, cell_timeout)
    first = Profiles.load(root / PROFILES_FILE).start_first
    todo.sort(key=lambda job: first.index(job.name) if job.name in first else len(first))  # stable: toc order after
    return _run_in_parallel(todo, label, force, keep_going, cell_timeout, jobs)


def _report(label: str, outcome: Outcome) -> bool:
    """Prints how a job ended; True when it ran."""
    if outcome.status == "ran":
        print(f"{label}ran in {outcome.seconds:.1f} s", flush=True)
        if outcome.message:
            print(f"    warning: {outcome.message}", flush=True)
        return True
    print(f"{label}FAILED after {outcome.seconds:.1f} s", flush=True)
    print(outcome.message, file=sys.stderr, flush=True)
    return False


def _run_in_turn(todo: list[Job], label: dict[str, str], force: bool, keep_going: bool,
                 cell_timeout: int | None) -> bool:
    ok = True
    for job in todo:
        print(label[job.name], end="", flush=True)
        stamp = input_stamp(job)
        if not force and is_up_to_date(job, stamp):
            print("up to date, skipped")
            continue
        if not _report("", execute(job, stamp, cell_timeout)):
            ok = False
            if not keep_going:
                break
    return ok


def _run_in_parallel(todo: list[Job], label: dict[str, str], force: bool, keep_going: bool,
                     cell_timeout: int | None, jobs: int) -> bool:
    """Runs up to ``jobs`` notebooks at once in ``todo``'s order, each after the chapters it reads."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    names = {job.name for job in todo}
    needs = {job.name: [n for n in results_read_by(job.layout.source(job.name)) if n in names] for job in todo}
    pending, running, done, ok = list(todo), {}, {}, True
    # spawn, not fork: each worker starts clean (no copied locks or threads of this process)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            stop = not ok and not keep_going
            for job in list(pending):
                if stop or len(running) >= jobs:
                    break
                states = [done.get(n) for n in needs[job.name]]
                if any(state is None for state in states):
                    continue  # a chapter it reads has not finished yet
                pending.remove(job)
                if not all(states):
                    print(f"{label[job.name]}not run: {', '.join(needs[job.name])} failed", flush=True)
                    done[job.name] = ok = False
                    continue
                stamp = input_stamp(job)  # after the chapters it reads finished: their results count
                if not force and is_up_to_date(job, stamp):
                    print(f"{label[job.name]}up to date, skipped", flush=True)
                    done[job.name] = True
                    continue
                print(f"{label[job.name]}started", flush=True)
                running[pool.submit(execute, job, stamp, cell_timeout)] = job
            if stop and not running:
                break
            if not running:
                if pending and not stop:
                    raise RunnerError(f"{', '.join(j.name for j in pending)} read each other's results (a cycle)")
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                done[job.name] = _report(label[job.name], future.result())
                ok = ok and done[job.name]
    return ok


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Notebooks at once: 2 where there are 2 or more cores (every chapter's models are small and
    single-threaded, so two kernels on two cores finish the book in about half the time), else 1."""
    return 2 if _cores() >= 2 else 1


def default_threads(jobs: int = 1) -> int:
    """``OMP_NUM_THREADS`` when set, else the usable cores shared among ``jobs`` kernels, at most 4."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, min(4, _cores() // jobs))
