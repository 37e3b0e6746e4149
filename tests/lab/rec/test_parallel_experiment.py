"""``python -m eraserlab run`` on one process and under torchrun on two: the same numbers for every seed.

A tiny MovieLens removal with three seeds (rank 0 of two runs seeds 0 and 2, rank 1 seed 1, and each
reads the other's retrains); only the wall-clock columns and how many retrains a run found
already trained may differ.
"""

from pathlib import Path

import pandas as pd
import pytest
import torch.distributed as dist
from launching import run_to_end

from eraserlab.rec.experiment import PRESETS
from eraserlab.rec.pretrain import pretrain_base

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

TIMEOUT = 900
#: What describes the machine or the sharing, not the result.
NOT_RESULTS = ["time_s", "peak_memory_mb", "eval_time_s", "certificate_time_s",
               "retrains_extra_time_s", "load_1min", "retrains_reused"]


def run_cli(world_size: int, out: Path, data_root: Path, cache: Path) -> str:
    arguments = ["-m", "eraserlab", "run", "rec", "movielens", "ir", "0.1", "--preset", "tiny", "--seeds", "0", "1",
                 "2", "--methods", "corrupted", "retrain", "llmeraser", "llmeraser_gn", "--out", str(out),
                 "--data-dir", str(data_root), "--cache-dir", str(cache), "--device", "cpu"]
    done = run_to_end(arguments, world_size, TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def test_an_experiment_on_two_processes_gives_the_one_process_numbers(data_root, tmp_path):
    cache = tmp_path / "cache"
    tiny = PRESETS["tiny"]
    # the base first, here: otherwise the two launches' first ranks pre-train it (one waits on the other's lock)
    pretrain_base("movielens", data_root, tiny.model, tiny.pretrain, cache_dir=cache, device="cpu", progress=False)
    one_output = run_cli(1, tmp_path / "one", data_root, cache)
    two_output = run_cli(2, tmp_path / "two", data_root, cache)
    assert "1 process)" in one_output and "2 processes)" in two_output
    one, two = (pd.read_csv(tmp_path / name / "all_runs.csv") for name in ("one", "two"))
    assert list(two["seed"]) == [0] * 4 + [1] * 4 + [2] * 4
    pd.testing.assert_frame_equal(one.drop(columns=NOT_RESULTS), two.drop(columns=NOT_RESULTS))
    # every seed's run files; the r summary printed once (rank 0)
    assert len(list((tmp_path / "two" / "runs").glob("*-seed*.json"))) == 3
    assert two_output.count("r jsd_test") == 1


def test_the_command_refuses_a_folder_that_holds_something(tmp_path):
    (tmp_path / "kept.txt").write_text("a user's file")
    from eraserlab.__main__ import main

    assert main(["run", "rec", "movielens", "ir", "0.1", "--out", str(tmp_path)]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]
