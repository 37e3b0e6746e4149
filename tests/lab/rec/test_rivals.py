"""The paper's rivals (RecEraser, APA, E2URec) in the recommendation experiment at the tiny preset:
every task they apply to, their bookkeeping in the record, determinism, and the validation split."""

import json

import numpy as np
import pytest

from eraserlab.rec.experiment import PRESETS, run_experiment
from eraserlab.rec.pretrain import load_task_data
from eraserlab.rec.scenarios import build_scenario, select_test

RIVALS = ["receraser", "apa", "e2urec"]
TIMING_COLUMNS = ["time_s", "peak_memory_mb", "setup_time_s", "eval_time_s", "certificate_time_s",
                  "retrains_extra_time_s", "load_1min"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rec-rivals-cache")


def run(data_root, cache_dir, task, **kwargs):
    kwargs = {"ratio": 0.1, "seed": 0, "retrains": 2, "methods": ["retrain", *RIVALS], **kwargs}
    return run_experiment("movielens", task, model_size="tiny", device="cpu", data_dir=data_root, cache_dir=cache_dir,
                          progress=False, **kwargs)


@pytest.mark.parametrize("task", ["rc", "qm_removal", "ir"])
def test_every_rival_runs_with_its_bookkeeping(data_root, cache_dir, tmp_path, task):
    frame = run(data_root, cache_dir, task, results_dir=tmp_path).set_index("method")
    assert list(frame.index) == ["corrupted", "retrain", *RIVALS]
    assert np.isfinite(frame.loc[RIVALS, ["r/jsd_test", "r/jsd_corrected", "r/forget_loss", "test_loss"]]
                       .to_numpy(float)).all()
    assert (frame.loc[RIVALS, "time_s"] > 0).all()
    # the shards are built once and shared: the same set-up on both rows, none for E2URec
    assert frame.loc["receraser", "setup_time_s"] == frame.loc["apa", "setup_time_s"] > 0
    assert np.isnan(frame.loc["e2urec", "setup_time_s"])
    # ensembles have no single ΔΘ; E2URec is one adapter of Corrupted's shape
    assert frame.loc[["receraser", "apa"], "delta_cosine"].isna().all()
    assert np.isfinite(frame.loc["e2urec", "delta_cosine"])
    record = json.loads((tmp_path / f"movielens-{task}-0.1-seed0.json").read_text())
    shards = record["receraser"]
    assert record["apa"]["affected_shards"] == shards["affected_shards"] and record["apa"]["shards_built_by"] == "receraser"
    assert shards["shards"] == PRESETS["tiny"].settings.sisa_shards == len(shards["train_count"])
    # only the shards that hold a request example were retrained (trained twice), the others once
    assert shards["affected_shards"] and shards["train_count"] == [
        2 if s in shards["affected_shards"] else 1 for s in range(shards["shards"])]
    # a balanced partition of the users (RecEraser's UBP), covering every training example
    assert sum(shards["shard_sizes"]) == frame["n_train"].iloc[0] and sum(shards["shard_groups"]) == shards["groups"]
    assert max(shards["shard_groups"]) <= -(-shards["groups"] // shards["shards"]) and min(shards["shard_groups"]) > 0
    assert sum(record["apa"]["test_weight_mean"]) == pytest.approx(1.0)
    e2urec = record["e2urec"]
    n_request = frame["n_request"].iloc[0]
    assert e2urec["learnt"] == (0 if task == "ir" else n_request)
    assert e2urec["retained"] == frame["n_train"].iloc[0] - n_request


def test_the_rivals_give_the_same_numbers_for_the_same_seed(data_root, cache_dir):
    first = run(data_root, cache_dir, "rc", seed=1).drop(columns=TIMING_COLUMNS, errors="ignore")
    again = run(data_root, cache_dir, "rc", seed=1).drop(columns=TIMING_COLUMNS, errors="ignore")
    assert first.equals(again)


def test_the_validation_split_replaces_the_test_split(data_root, cache_dir, tmp_path):
    config = PRESETS["tiny"]
    data = load_task_data("movielens", data_root, config.max_train_per_user, config.data_seed,
                          tasks=("next_item",))["next_item"]
    val = build_scenario("rc", data, 0.1, 0, max_test=config.max_test, eval_split="val")
    test = build_scenario("rc", data, 0.1, 0, max_test=config.max_test)
    assert val.test == select_test(data.validation, config.max_test, 0) and val.test != test.test
    assert val.train == test.train and val.request == test.request
    with pytest.raises(ValueError, match="eval_split"):
        build_scenario("rc", data, 0.1, 0, eval_split="dev")
    frame = run(data_root, cache_dir, "rc", methods=["retrain", "apa"], eval_split="val", results_dir=tmp_path)
    assert set(frame["eval_split"]) == {"val"} and (tmp_path / "movielens-rc-0.1-seed0-val.json").is_file()


def test_the_selection_benchmark_chooses_on_validation_and_leaves_the_preset_alone(data_root, tmp_path):
    from benchmarks import rec_rivals_selection as selection

    before = selection.SETTINGS_MODULE.read_text()
    out = tmp_path / "selection.json"
    result = selection.main(["--size", "tiny", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert selection.SETTINGS_MODULE.read_text() == before  # only --size default rewrites the preset's choice
    record = json.loads(out.read_text())
    for name, candidates in selection.CANDIDATES.items():
        entry = record["selection"][name]
        assert entry["request"]["eval_split"] == "val" and entry["chosen"] in candidates
        assert [c["value"] for c in entry["candidates"]] == candidates
        best = max(entry["candidates"], key=lambda row: selection.score(name, row))
        assert entry["chosen"] == best["value"] == result["chosen"][name]


def test_the_hybrid_prompt_refuses_the_text_partition_methods(data_root):
    import dataclasses

    with pytest.raises(ValueError, match="text-only prompt"):
        run_experiment("movielens", "rc", methods=["retrain", "apa"], data_dir=data_root,
                       config=dataclasses.replace(PRESETS["tiny"], hybrid=True))
