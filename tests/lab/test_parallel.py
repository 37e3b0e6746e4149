"""An experiment's seeds on 2 processes (torchrun, gloo): the one-process results, every retrain trained once, a
failing rank stopping every rank with nothing written.

The ranks run ``parallel_worker.py``'s stand-in experiment (it uses the pool as the protocol's runner
does, without training a model), so these tests check the sharing itself in seconds;
``tests/lab/rec/test_parallel_experiment.py`` runs a real (tiny) experiment both ways.

Why no rank waits forever (``SharedRetrainPool``): a run asks for its own seed's retrain first, then
for the pool's other seeds in ``seeds`` order, and the retrain of seed s is trained by the rank that
runs s. Say rank A waits for x (B's) while B waits for y (A's). A's asks are in ``seeds`` order except
its own seed first, which is A's; x is B's, so A asks for y after x only if x comes before y in
``seeds`` or y is A's current seed — and y's place as "own" makes A train y before asking for x. So
A is waiting on x only if x < y (in ``seeds`` order) and y is not A's current seed. Symmetrically B
waits on y only if y < x. Both cannot hold.
"""

from pathlib import Path

import pandas as pd
import pytest
import torch.distributed as dist
from launching import run_to_end

from eraserlab.parallel import SharedRetrainPool, check_out

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

WORKER = Path(__file__).with_name("parallel_worker.py")
TIMEOUT = 600


def launch(out: Path, world_size: int, *extra: str):
    return run_to_end([str(WORKER), str(out), *extra], world_size, TIMEOUT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    done = {}
    for world_size in (1, 2):
        result = launch(root / f"w{world_size}", world_size)
        assert result.returncode == 0, result.stdout[-4000:]
        done[world_size] = pd.read_csv(root / f"w{world_size}" / "all_runs.csv")
    return root, done


def test_two_processes_give_the_one_process_results_and_train_every_retrain_once(runs):
    root, frames = runs
    one, two = frames[1], frames[2]
    # the same rows, in seeds order: every seed compared with the same retrains, of the same values
    pd.testing.assert_frame_equal(one.drop(columns="trained_here"), two.drop(columns="trained_here"))
    assert list(two["seed"].unique()) == [0, 1, 2]
    # three retrains in all, whatever the number of processes (rank 0 runs seeds 0 and 2, rank 1 seed 1)
    for frame in (one, two):
        trained = frame[frame.trained_here]
        assert sorted(trained["retrain_seed"]) == [0, 1, 2]
    assert set(two[two.trained_here].apply(lambda row: (row.seed, row.retrain_seed), axis=1)) == {(0, 0), (1, 1), (0, 2)}
    # each seed's own files, and nothing of the exchange or the staging left behind
    assert sorted(p.name for p in (root / "w2" / "runs").iterdir()) == ["seed0.csv", "seed1.csv", "seed2.csv"]
    assert sorted(p.name for p in root.iterdir()) == ["w1", "w2"]


def test_a_failing_rank_stops_every_rank_and_leaves_no_output(tmp_path):
    # seed 1 (rank 1) fails to train its retrain; rank 0 waits for it while running seed 0
    result = launch(tmp_path / "out", 2, "1")
    assert result.returncode != 0
    assert "ValueError: the retrain of seed 1 cannot be trained" in result.stdout
    assert "RankFailedError" in result.stdout and "rank 1 failed" in result.stdout
    assert list(tmp_path.iterdir()) == []  # neither the results nor the staging folder


def test_the_retrain_of_a_seed_belongs_to_the_rank_that_runs_it(tmp_path):
    pool = SharedRetrainPool([5, 3, 9], tmp_path, rank=1, world_size=2)
    assert [pool.owner(s) for s in (5, 3, 9)] == [0, 1, 0]
    assert pool.owner(7) == 1 and pool.owner(5, method="corrupted") == 1  # not shared: this rank's own


def test_an_experiment_never_writes_into_a_folder_that_holds_something(tmp_path):
    (tmp_path / "kept.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        check_out(tmp_path)
    assert (tmp_path / "kept.txt").read_text() == "a user's file"
    assert check_out(tmp_path / "new") == tmp_path / "new"
