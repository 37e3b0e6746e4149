"""One experiment on several processes: its run seeds shared out over the ranks, their retrains shared between them.

An experiment — one request, judged over several run seeds — is a set of independent trainings:
per seed a Corrupted adapter, the baselines and the erases that start from it, and K retrains that
the seeds share (:class:`~eraserlab.protocol.RetrainPool`: seed s trains the retrain of seed s, every
other seed compares with it). Training dominates its cost, so the natural way to spread it over W
processes is over the seeds, not inside one erase (:mod:`eraserlib.distributed` does that for a
single erase): launched with ``torchrun --nproc_per_node W``, rank r runs the seeds at positions
r, r + W, r + 2W, … of ``seeds``, and trains the retrains of those seeds; a seed that needs another
rank's retrain waits for it and loads what that rank trained. Every seed runs from start to end on
one rank, with its own seeded training, erases and evaluation, so the numbers are those of one
process (with the same thread count per process, bit for bit: ``tests/lab/test_parallel.py``);
only the wall-clock columns change.

The ranks exchange the retrains through files in the output's staging folder (the ranks must share
a filesystem: one machine under ``torchrun --standalone``, or a shared folder), and their frames
through ``torch.distributed``'s ``all_gather_object`` at the end. Nothing of a run that fails is left
as a result: the runs write into a hidden staging folder beside ``out``, which becomes ``out``
(one rename) only when every rank finished; a rank that fails marks the exchange, the ranks waiting
for its retrains stop with :class:`~eraserlib.distributed.RankFailedError` naming it, and every rank
exits with an error.

Each erase inside the experiment runs in its own process (``process_group=False``): the ranks run
different seeds, so they never share one erase.

    torchrun --standalone --nproc_per_node 3 -m eraserlab run rec movielens rc 0.1 --seeds 0 1 2 --out results/
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from eraserlab.protocol.pool import PooledRetrain, RetrainPool
from eraserlib.distributed import RankFailedError, join_launcher, leave_launcher, resolve_group
from eraserlib.storage import current_umask, write_atomically

#: Seconds between two looks for another rank's retrain.
POLL_S = 0.5
#: The exchange's subfolder of the staging folder, and the mark a failing rank leaves there.
EXCHANGE = ".pool"
FAILED = "failed-rank-{rank}.txt"
DONE = "done-rank-{rank}"


def world() -> tuple[int, int]:
    """(this rank, the number of ranks): (0, 1) unless ``torch.distributed`` is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def launched() -> Iterator[tuple[int, int]]:
    """Join ``torchrun``'s process group when the environment has one (WORLD_SIZE > 1) and leave it on exit.

    gloo on CPUs; with CUDA, NCCL and one GPU per rank (``LOCAL_RANK``). Yields (rank, world size).
    """
    _, started = join_launcher()
    try:
        yield world()
    finally:
        if started:
            leave_launcher()


def _mark_failed(exchange_dir: Path, rank: int, message: str) -> None:
    """Tell the other ranks that this one failed (they stop waiting for its retrains)."""
    with contextlib.suppress(OSError):
        exchange_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(exchange_dir / FAILED.format(rank=rank), message)


class SharedRetrainPool(RetrainPool):
    """A :class:`RetrainPool` whose retrains are shared between the ranks of one experiment.

    The retrain of pool seed s belongs to the rank that runs seed s (position of s in ``seeds``, mod W):
    that rank trains it when one of its seeds first needs it and leaves it in ``exchange_dir``; a
    rank that needs another's retrain waits until it is there. No rank can wait on a rank that waits
    on it: each run asks for its own seed's retrain first and for the others in ``seeds`` order, so a
    rank waits only for a retrain whose owner needs nothing from it first (the argument is in
    ``tests/lab/test_parallel.py``'s docstring). Corrupted and retrains of seeds outside ``seeds``
    (K > len(seeds)) stay with the rank that trained them, as in one process.

    Args:
        seeds: The experiment's run seeds, in the order every rank got them.
        exchange_dir: A folder every rank can read and write.
        rank, world_size: This rank and the number of ranks.
    """

    def __init__(self, seeds: Sequence[int], exchange_dir: str | os.PathLike, rank: int = 0, world_size: int = 1):
        super().__init__(seeds)
        self.exchange_dir = Path(exchange_dir)
        self.rank, self.world_size = int(rank), int(world_size)

    def owner(self, seed: int, method: str = "retrain") -> int:
        """The rank that trains the retrain of ``seed`` (this rank for anything not shared)."""
        if method != "retrain" or int(seed) not in self.seeds:
            return self.rank
        return self.seeds.index(int(seed)) % self.world_size

    def lookup(self, key: str, *, seed: int, method: str = "retrain") -> PooledRetrain | None:
        found = self.get(key)
        if found is not None or self.owner(seed, method) == self.rank:
            return found
        entry = self._receive(key, self.owner(seed, method), seed)
        self.entries[key] = entry
        self.reused += 1
        return entry

    def put(self, key: str, model: torch.nn.Module, evaluation: Any, eval_time_s: float, cost: dict[str, Any],
            record: dict[str, Any], *, seed: int | None = None, method: str = "retrain") -> None:
        super().put(key, model, evaluation, eval_time_s, cost, record, seed=seed, method=method)
        if self.world_size > 1 and seed is not None and method == "retrain" and int(seed) in self.seeds:
            self.exchange_dir.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(self.entries[key], buffer)
            write_atomically(self.exchange_dir / f"{key}.pt", buffer.getvalue())

    def _receive(self, key: str, owner: int, seed: int) -> PooledRetrain:
        path = self.exchange_dir / f"{key}.pt"
        while not path.exists():
            failed = sorted(self.exchange_dir.glob(FAILED.format(rank="*")))
            if failed:
                raise RankFailedError(f"rank {failed[0].stem.rsplit('-', 1)[1]} failed: {failed[0].read_text()} "
                                      f"(rank {self.rank} was waiting for the retrain of seed {seed}, rank {owner}'s)")
            time.sleep(POLL_S)
        # our own ranks' pickle (a PooledRetrain: tensors, the evaluation's arrays, dicts), not a user's file
        return torch.load(path, map_location="cpu", weights_only=False)


def _mark_finished(exchange_dir: Path, rank: int, world_size: int, failed: bool) -> None:
    """Say that this rank's seeds are done (or failed) and wait, polling, until every rank has said so.

    The ranks' runs take different times (W = 2 ranks and 3 seeds: one rank runs two), and a
    collective that waits longer than the process group's timeout (30 minutes by default) kills
    the run; the file poll has no such limit. A rank that died without a word is torchrun's to stop.
    """
    if world_size == 1:
        return
    exchange_dir.mkdir(parents=True, exist_ok=True)
    if not failed:  # a failed rank has left its FAILED mark already
        (exchange_dir / DONE.format(rank=rank)).touch()
    while True:
        said = {p.name for p in exchange_dir.iterdir()}
        if all(DONE.format(rank=r) in said or FAILED.format(rank=r) in said for r in range(world_size)):
            return
        time.sleep(POLL_S)


def _staging_dir(out: Path, rank: int, world_size: int) -> Path:
    """A new hidden folder beside ``out``, made by rank 0 and known to every rank."""
    made = [None]
    if rank == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        made = [tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)]
        os.chmod(made[0], 0o777 & ~current_umask())  # mkdtemp's is 0700; the results are an ordinary folder
    if world_size > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(made, src=0)
    return Path(made[0])


def check_out(out: str | os.PathLike) -> Path:
    """``out`` as a Path; an error when it exists and is not an empty folder (a result is never overwritten)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: an experiment writes only into a new one.")
    return out


def run_seeds(experiment: Callable[..., pd.DataFrame], *arguments: Any, seeds: Sequence[int], out: str | os.PathLike,
              request_seed: int | None = 0, **options: Any) -> pd.DataFrame:
    """``experiment(*arguments, seed=s, ...)`` for every seed of one request, on every rank of the process group.

    Call it on every rank with the same arguments (in one process it runs every seed). Writes
    ``out/runs/`` (each run's frame, comparison and record) and ``out/all_runs.csv`` (one row per
    method and seed, in ``seeds`` order), and returns that frame on every rank.

    Args:
        experiment: ``eraserlab.rec.experiment.run_experiment`` or ``eraserlab.mllm.experiment.run_experiment``.
        *arguments: Its positional arguments (data set or benchmark, task).
        seeds: The run seeds.
        out: A new (or empty) folder for the results.
        request_seed: The request every seed answers (None: each seed draws its own; then no
            retrain is shared).
        **options: Passed to every call (``ratio``, ``methods``, ``leave_out``, the preset...).

    Raises:
        FileExistsError: ``out`` holds something (checked before any work).
        RankFailedError: on the other ranks, when one rank failed (that rank raises its own error).
    """
    group = resolve_group(None)
    rank, world_size = group.rank, group.world_size
    with group.together():  # a bad argument on one rank stops every rank
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {seeds}.")
        out = check_out(out)
    staging = _staging_dir(out, rank, world_size)
    pool = SharedRetrainPool(seeds, staging / EXCHANGE, rank, world_size) if request_seed is not None else None
    frames: dict[int, pd.DataFrame] = {}
    error: Exception | None = None
    try:
        for seed in seeds[rank::world_size]:
            frames[seed] = experiment(*arguments, seed=seed, request_seed=request_seed, retrain_pool=pool,
                                      results_dir=staging / "runs", **options)
    except Exception as caught:  # noqa: BLE001 - every rank must hear of it before any raises
        error = caught
        _mark_failed(staging / EXCHANGE, rank, f"{type(caught).__name__}: {caught}")
    _mark_finished(staging / EXCHANGE, rank, world_size, failed=error is not None)
    try:
        group.check(error)  # this rank's own error, or RankFailedError naming the ranks that failed
    except Exception:
        if rank == 0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    gathered = [frames]
    if world_size > 1:
        import torch.distributed as dist

        gathered = [None] * world_size
        dist.all_gather_object(gathered, frames)
    every = {seed: frame for part in gathered for seed, frame in part.items()}
    frame = pd.concat([every[seed] for seed in seeds], ignore_index=True)

    def finish() -> None:
        try:
            shutil.rmtree(staging / EXCHANGE, ignore_errors=True)
            frame.to_csv(staging / "all_runs.csv", index=False)
            if out.exists():
                out.rmdir()  # empty (checked above): the staging folder takes its place
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    group.once(finish)  # rank 0 writes; no rank returns before it is done (or failed, on every rank)
    return frame


__all__ = ["SharedRetrainPool", "check_out", "launched", "run_seeds", "world"]
