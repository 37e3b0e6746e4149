"""A whole multimodal experiment at the smallest sizes: every method through the shared protocol,
every column, K retrains and the comparison, SISA's bookkeeping, determinism per seed, and the
path for the real benchmarks' files."""

import dataclasses
import json

import numpy as np
import pytest

from eraserlab.mllm import formats, spurious
from eraserlab.mllm.experiment import (LEARNT_MARGIN, METHODS, PRESETS, UnlearntTaskWarning, constant_accuracy,
                                      load_base, load_benchmark, run_experiment, task_learnt)
from eraserlab.mllm.tasks import VQAExample
from eraserlab.mllm.pretrain import cache_key

TINY = PRESETS["tiny"]

COMMON_COLUMNS = {
    "benchmark", "task", "ratio", "seed", "method", "eval_split", "test_loss", "conflict_accuracy",
    "worst_group_accuracy", "corrected_accuracy", "corrected_loss", "forget_accuracy", "forget_loss",
    "jsd_test", "jsd_corrected", "jsd_conflict", "delta_cosine", "delta_norm_ratio", "delta_relative_error",
    "time_s", "peak_memory_mb", "memory_kind", "time_what", "n_train", "n_request", "n_test", "n_conflict",
    "threads", "device", "load_1min", "retrains", "retrains_extra_time_s", "effect_resolved", "effect_note",
    "certificate_ratio", "z/forget_loss", "z/forget_accuracy", "constant_accuracy", "retrain_accuracy", "task_learnt",
}
DISTANCES = ("jsd_test", "jsd_corrected", "jsd_conflict", "forget_loss")
COMPARISON_COLUMNS = {f"{stat}/{d}" for d in DISTANCES for stat in ("d_ur", "r", "r_low", "r_high", "d_rr", "d_or",
                                                                      "effect", "effect_low", "effect_high")}
BENCHMARK_COLUMNS = {
    "spurious": {"accuracy/All", "accuracy/Average", *(f"accuracy/{t}" for t in spurious.SPURIOUS_TYPES)},
    "relation": {"accuracy", "precision", "recall", "f1", "yes_ratio", "accuracy/Positive", "accuracy/Opposite"},
}
# Columns that describe the machine, not the result.
COST_COLUMNS = ["time_s", "peak_memory_mb", "setup_time_s", "eval_time_s", "certificate_time_s",
                "retrains_extra_time_s", "load_1min"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mllm-cache")


@pytest.mark.parametrize("benchmark, task", [("spurious", "rc"), ("relation", "rc"), ("spurious", "qm"),
                                             ("relation", "qm")])
def test_tiny_experiment_returns_every_method_and_metric(cache_dir, tmp_path, benchmark, task):
    frame = run_experiment(benchmark, task, ratio=0.4, seed=0, preset="tiny", cache_dir=cache_dir,
                           results_dir=tmp_path, progress=False)
    assert list(frame["method"]) == list(METHODS)
    assert COMMON_COLUMNS | COMPARISON_COLUMNS | BENCHMARK_COLUMNS[benchmark] <= set(frame.columns)
    rows = frame.set_index("method")
    assert (frame["retrains"] == 3).all()
    assert rows.loc["corrupted", [f"r/{d}" for d in DISTANCES]].tolist() == [1.0] * len(DISTANCES)
    assert np.isfinite(rows.loc["llmeraser", "certificate_ratio"]) and rows["certificate_ratio"].isna().sum() == 5
    assert rows.loc["retrain", ["jsd_test", "jsd_corrected", "jsd_conflict"]].tolist() == [0.0, 0.0, 0.0]
    assert rows.loc["retrain", "delta_relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert rows.loc["corrupted", "delta_relative_error"] == pytest.approx(1.0)
    assert np.isnan(rows.loc["sisa", "delta_cosine"])  # SISA's shard adapters have no single change
    assert np.isfinite(rows.loc["llmeraser", ["jsd_test", "jsd_corrected", "delta_cosine"]].astype(float)).all()
    assert (frame["time_s"] > 0).all()
    test = load_benchmark(benchmark, TINY)["test"]
    assert frame["constant_accuracy"].iloc[0] == constant_accuracy(test)
    assert frame["retrain_accuracy"].iloc[0] == rows.loc["retrain", "accuracy/All" if benchmark == "spurious"
                                                          else "accuracy"]
    assert frame["task_learnt"].iloc[0] == (frame["retrain_accuracy"].iloc[0]
                                            >= frame["constant_accuracy"].iloc[0] + LEARNT_MARGIN)
    n_request = frame["n_request"].iloc[0]
    assert n_request == round(0.4 * frame["n_train"].iloc[0]) and n_request > 0
    assert frame["corruption"].iloc[0] == ("flip" if task == "rc" else TINY.query_corruption)
    stem = f"{benchmark}-{task}-0.4-seed0"
    saved = json.loads((tmp_path / f"{stem}.json").read_text())
    assert [row["method"] for row in saved["rows"]] == list(METHODS)
    assert saved["erase_diagnostics"]["solver"] == "llmeraser"
    assert saved["base_cache_key"] == cache_key(TINY.model, TINY.pretrain, TINY.base_seed)
    assert [r["seed"] for r in saved["retrains"]] == [0, 1000, 2000]
    assert len(saved["comparison"]) == len(METHODS) * len(DISTANCES)
    assert (tmp_path / f"{stem}.csv").read_text().startswith("benchmark,task,ratio,seed,request_seed,method")
    assert (tmp_path / f"{stem}-comparison.csv").exists()


def test_a_retrain_no_better_than_a_constant_answer_is_flagged():
    test = [VQAExample(None, "q", answer, (), {}) for answer in ["Yes"] * 6 + ["No"] * 4]
    assert constant_accuracy(test) == 0.6
    with pytest.warns(UnlearntTaskWarning, match="0.620, against 0.600"):
        assert task_learnt("relation", {"accuracy": 0.62}, test) == {
            "constant_accuracy": 0.6, "retrain_accuracy": 0.62, "task_learnt": False}
    assert task_learnt("spurious", {"accuracy/All": 0.66}, test)["task_learnt"]


def test_validation_split_is_scored_when_asked(cache_dir, tmp_path):
    kwargs = dict(methods=["corrupted", "retrain"], preset="tiny", cache_dir=cache_dir, progress=False)
    test = run_experiment("spurious", "rc", results_dir=tmp_path, **kwargs)
    val = run_experiment("spurious", "rc", results_dir=tmp_path, eval_split="val", **kwargs)
    splits = load_benchmark("spurious", TINY)
    assert set(val["eval_split"]) == {"val"} and (tmp_path / "spurious-rc-0.4-seed0-val.csv").exists()
    assert val["n_test"].iloc[0] == len(splits["val"]) and test["n_test"].iloc[0] == len(splits["test"])
    assert not np.allclose(val["test_loss"], test["test_loss"])


def test_sisa_retrains_only_the_shards_the_request_touches(cache_dir, tmp_path):
    # one flipped answer out of 36 lands in exactly one of the two shards
    frame = run_experiment("spurious", "rc", ratio=1 / 36, methods=["sisa"], seed=0, preset="tiny",
                           cache_dir=cache_dir, results_dir=tmp_path, progress=False)
    assert frame["n_request"].iloc[0] == 1
    sisa = json.loads((tmp_path / f"spurious-rc-{1 / 36:g}-seed0.json").read_text())["sisa"]
    assert len(sisa["affected_shards"]) == 1
    assert sorted(sisa["train_count"]) == [1, 2]  # fitted once each, one of them retrained
    assert frame.set_index("method").loc["sisa", "time_what"] == "retrain 1 of 2 shards"


def test_same_seed_same_results_other_seed_other_request(cache_dir):
    kwargs = dict(methods=["corrupted", "retrain", "llmeraser", "finetune", "sisa"], preset="tiny",
                  cache_dir=cache_dir, progress=False)
    first = run_experiment("relation", "rc", seed=3, **kwargs).drop(columns=COST_COLUMNS, errors="ignore")
    again = run_experiment("relation", "rc", seed=3, **kwargs).drop(columns=COST_COLUMNS, errors="ignore")
    assert first.equals(again)
    assert np.isfinite(first["r/jsd_test"]).all() and (first["retrains"] == 3).all()
    other = run_experiment("relation", "rc", seed=4, **kwargs).drop(columns=COST_COLUMNS, errors="ignore")
    assert not first["corrected_loss"].equals(other["corrected_loss"])
    assert not first["r/jsd_test"].equals(other["r/jsd_test"])


def test_real_format_files_and_a_local_checkpoint(cache_dir, tmp_path):
    """The path for the real benchmarks: files in MM-SpuBench's layout, a LLaVA checkpoint folder."""
    items = spurious.generate_spurious(40, seed=[7, 0], image_size=TINY.model.image_size)
    formats.write_mmspubench(tmp_path / "mm-spubench", [it.record for it in items],
                             {it.record["image"]: it.image for it in items})
    load_base(TINY, cache_dir=cache_dir, progress=False)  # the tiny base, saved in LLaVA's layout
    checkpoint = cache_dir / cache_key(TINY.model, TINY.pretrain, TINY.base_seed)
    frame = run_experiment("spurious", "rc", methods=["corrupted", "retrain", "llmeraser"], preset="tiny",
                           data_dir=tmp_path / "mm-spubench", base_model=checkpoint, progress=False)
    assert frame["n_train"].iloc[0] == 24 and frame["n_conflict"].iloc[0] == 0
    assert frame["conflict_accuracy"].isna().all() and frame["jsd_conflict"].isna().all()
    assert "r/jsd_conflict" not in frame.columns and "r/jsd_test" in frame.columns  # no conflict set, no distance
    assert frame["model"].iloc[0] == str(checkpoint)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown benchmark"):
        run_experiment("pope", "rc")
    with pytest.raises(ValueError, match="Unknown task"):
        run_experiment("spurious", "ir")
    with pytest.raises(ValueError, match="Unknown methods"):
        run_experiment("spurious", "rc", methods=["recEraser"])
    with pytest.raises(ValueError, match="Unknown preset"):
        run_experiment("spurious", "rc", preset="huge")
    with pytest.raises(ValueError, match="ratio"):
        run_experiment("spurious", "rc", ratio=0.0)
    with pytest.raises(ValueError, match="eval_split"):
        run_experiment("spurious", "rc", eval_split="train")


def test_tiny_preset_is_the_small_one_scaled_down():
    small = PRESETS["small"]
    changed = {f.name for f in dataclasses.fields(small) if getattr(small, f.name) != getattr(TINY, f.name)}
    # the same methods and request, only sizes and budgets differ
    assert changed.isdisjoint({"query_corruption", "relation_level", "data_seed", "base_seed"})
    settings = {f.name for f in dataclasses.fields(small.settings)
                if getattr(small.settings, f.name) != getattr(TINY.settings, f.name)}
    assert settings <= {"erase_batch_size", "erase_options", "gauss_newton_options", "sisa_shards"}
    assert small.erase_damping == TINY.erase_damping == small.settings.erase_damping  # the former flat name
