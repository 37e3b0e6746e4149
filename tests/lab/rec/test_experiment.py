"""The base-model cache and a whole experiment at the smallest sizes, on the real MovieLens files:
every method through the shared protocol, K retrains, the comparison columns, determinism per seed."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from eraserlab.protocol import retrain_seeds
from eraserlab.rec.experiment import PRESETS, run_experiment
from eraserlab.rec.pretrain import PretrainConfig, cache_key, pretrain_base

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rec-cache")


def test_base_is_cached_and_reused(data_root, cache_dir):
    # the first test of the module: the cache is empty (the experiments below reuse this base)
    first = pretrain_base("movielens", data_root, TINY.model, TINY.pretrain, cache_dir=cache_dir, device="cpu",
                          progress=False)
    second = pretrain_base("movielens", data_root, TINY.model, TINY.pretrain, cache_dir=cache_dir, device="cpu",
                           progress=False)
    assert first.info["cache_hit"] is False and second.info["cache_hit"] is True
    assert first.info["path"] == second.info["path"]
    assert second.info["heldout_users"] == first.info["heldout_users"] and len(first.info["heldout_users"]) > 0
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in second.model.parameters())  # frozen
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    other = dataclasses.replace(TINY.pretrain, steps=TINY.pretrain.steps + 1)
    assert cache_key("movielens", TINY.model, other, 0, data_root) != cache_key("movielens", TINY.model,
                                                                                   TINY.pretrain, 0, data_root)
    assert cache_key("movielens", TINY.model, TINY.pretrain, 1, data_root) != cache_key(
        "movielens", TINY.model, TINY.pretrain, 0, data_root)


NEXT_ITEM_COLUMNS = {"hit_ratio_at_1", "valid_ratio", "candidate_accuracy", "corrected_loss", "corrected_accuracy"}
COMMON_COLUMNS = {"dataset", "task", "ratio", "seed", "method", "test_loss", "forget_loss", "forget_accuracy",
                  "jsd_test", "jsd_corrected", "delta_cosine", "delta_norm_ratio", "delta_relative_error",
                  "time_s", "peak_memory_mb", "memory_kind", "n_train", "n_request", "n_test", "load_1min",
                  "retrains", "retrains_extra_time_s", "effect_resolved", "effect_note", "certificate_ratio",
                  "z/forget_loss", "z/forget_accuracy"}
DISTANCES = ("jsd_test", "jsd_corrected", "forget_loss")
COMPARISON_COLUMNS = {f"{stat}/{d}" for d in DISTANCES for stat in (
    "d_ur", "r", "r_low", "r_high", "d_rr", "d_rr_sd", "d_or", "effect", "effect_low", "effect_high", "effect_resolved")}
# Columns that describe the machine, not the result.
TIMING_COLUMNS = ["time_s", "peak_memory_mb", "setup_time_s", "eval_time_s", "certificate_time_s",
                  "retrains_extra_time_s", "load_1min"]


@pytest.mark.parametrize("task, methods", [
    ("rc", ["corrupted", "retrain", "llmeraser", "llmeraser_gn", "llmeraser_gn_steps", "finetune", "sisa", "receraser", "apa", "e2urec"]),
    ("ir", ["corrupted", "retrain", "llmeraser", "llmeraser_gn", "llmeraser_gn_steps", "gradient_ascent", "sisa", "receraser", "apa", "e2urec"]),
])
def test_tiny_experiment_returns_every_method_and_metric(data_root, cache_dir, tmp_path, task, methods):
    frame = run_experiment("movielens", task, ratio=0.1, seed=0, model_size="tiny", device="cpu",
                           data_dir=data_root, results_dir=tmp_path, cache_dir=cache_dir, progress=False)
    assert list(frame["method"]) == methods
    expected = COMMON_COLUMNS | COMPARISON_COLUMNS | (NEXT_ITEM_COLUMNS if task == "rc" else {"auc", "accuracy"})
    assert expected <= set(frame.columns)
    retrain = frame.set_index("method").loc["retrain"]
    assert retrain["jsd_test"] == pytest.approx(0.0, abs=1e-12)
    assert retrain["delta_relative_error"] == pytest.approx(0.0, abs=1e-12)
    corrupted = frame.set_index("method").loc["corrupted"]
    assert corrupted["delta_relative_error"] == pytest.approx(1.0)
    # K = 3 retrains by default; Corrupted is the reference of r, exactly
    assert (frame["retrains"] == 3).all() and (frame["retrains_extra_time_s"] > 0).all()
    assert [corrupted[f"r/{d}"] for d in DISTANCES] == [1.0, 1.0, 1.0]
    assert np.isfinite(frame[[f"r/{d}" for d in DISTANCES]].to_numpy(float)).all()
    # the tiny base learns next to nothing: the request is lost in retraining's noise, and the frame says so
    assert not frame["effect_resolved"].any() and "below retraining's own noise" in corrupted["effect_note"]
    erased = frame.set_index("method")["certificate_ratio"]
    influence = ["llmeraser", "llmeraser_gn", "llmeraser_gn_steps"]  # the erases that carry a certificate
    assert np.isfinite(erased[influence]).all() and erased.drop(influence).isna().all()
    assert (frame["time_s"] > 0).all() and frame["n_request"].iloc[0] > 0
    # the adapters differ, so the distances are real numbers
    assert np.isfinite(frame.set_index("method").loc["llmeraser", ["jsd_test", "jsd_corrected", "delta_cosine"]]).all()
    stem = f"movielens-{task}-0.1-seed0"
    saved = json.loads((tmp_path / f"{stem}.json").read_text())
    assert [row["method"] for row in saved["rows"]] == methods
    assert saved["erase_diagnostics"]["solver"] == "llmeraser"
    assert [r["seed"] for r in saved["retrains"]] == retrain_seeds(0, 3) == [0, 1000, 2000]
    assert saved["certificates"]["llmeraser"]["num_examples"] == frame["n_train"].iloc[0] - (
        frame["n_request"].iloc[0] if task == "ir" else 0)
    assert len(saved["comparison"]) == len(methods) * len(DISTANCES)
    assert (tmp_path / f"{stem}.csv").read_text().startswith("dataset,task,ratio,seed,request_seed,method")
    assert (tmp_path / f"{stem}-comparison.csv").read_text().startswith("dataset,task,ratio,seed,eval_split,method,distance")
    assert "NaN" not in (tmp_path / f"{stem}.json").read_text()  # strict JSON


def test_same_parameters_give_the_same_numbers(data_root, cache_dir):
    kwargs = dict(ratio=0.1, seed=2, model_size="tiny", device="cpu", data_dir=data_root, cache_dir=cache_dir,
                  methods=["retrain", "llmeraser"], retrains=2, progress=False)
    first = run_experiment("movielens", "rc", **kwargs).drop(columns=TIMING_COLUMNS, errors="ignore")
    again = run_experiment("movielens", "rc", **kwargs).drop(columns=TIMING_COLUMNS, errors="ignore")
    assert first.equals(again)
    assert (first["retrains"] == 2).all() and "2 retrains" in first["effect_note"].iloc[0]


def test_unknown_or_inapplicable_settings_are_refused(data_root):
    with pytest.raises(ValueError, match="no next_item task"):
        run_experiment("bookcrossing", "rc", data_dir=data_root)
    with pytest.raises(ValueError, match="applies to"):
        run_experiment("movielens", "rc", methods=["gradient_ascent"], data_dir=data_root)
    with pytest.raises(ValueError, match="Unknown model_size"):
        run_experiment("movielens", "rc", model_size="huge", data_dir=data_root)


def test_a_local_checkpoint_replaces_the_small_base(data_root, tmp_path):
    """``base_model=<folder>``: any local causal LM with its tokenizer; items are shown as titles."""
    from eraserlab.rec import prompts
    from eraserlab.rec.catalog import movielens_titles
    from eraserlab.rec.model import build_small_llama
    from eraserlab.rec.tokenizer import save_tokenizer, train_tokenizer

    tokenizer = train_tokenizer(movielens_titles(data_root).values(), prompts.template_texts("movielens"),
                                vocab_size=500, atomic_texts=(prompts.YES, prompts.NO))
    model = build_small_llama(dataclasses.replace(TINY.model, max_positions=1024), tokenizer, seed=0)
    model.save_pretrained(tmp_path / "checkpoint")
    save_tokenizer(tokenizer, tmp_path / "checkpoint")
    frame = run_experiment("movielens", "qm_replacement", ratio=0.1, seed=1, methods=["retrain", "llmeraser"],
                           config=dataclasses.replace(TINY, max_train_users=24, settings=dataclasses.replace(
                               TINY.settings, erase_options={"top_eigenvalue": 4.0, "first_window": 2, "max_steps": 8})),
                           device="cpu", data_dir=data_root,
                           base_model=tmp_path / "checkpoint", progress=False)
    assert list(frame["method"]) == ["corrupted", "retrain", "llmeraser"]
    assert set(frame["item_text"]) == {"title"} and set(frame["model"]) == {str(tmp_path / "checkpoint")}
    assert frame["valid_ratio"].between(0, 1).all()


def test_seeds_of_one_request_share_their_retrains(data_root, cache_dir):
    """With the request fixed, seed 1 reuses the retrains seed 0 trained, and gets the numbers it would compute."""
    from eraserlab.protocol import RetrainPool

    common = dict(ratio=0.1, methods=["corrupted", "retrain", "llmeraser"], model_size="tiny", device="cpu",
                  data_dir=data_root, cache_dir=cache_dir, progress=False, retrains=2, request_seed=0)
    pool = RetrainPool([0, 1])
    first = run_experiment("movielens", "rc", seed=0, retrain_pool=pool, **common)
    shared = run_experiment("movielens", "rc", seed=1, retrain_pool=pool, **common)
    # Corrupted of each seed, R_0 and R_1 trained once; seed 1 reuses both retrains
    assert pool.trained == 4 and pool.reused == 2
    assert set(first["retrains_reused"]) == {0} and set(shared["retrains_reused"]) == {2}
    alone = run_experiment("movielens", "rc", seed=1, retrain_pool=RetrainPool([0, 1]), **common)
    assert set(alone["retrains_reused"]) == {0}
    again = run_experiment("movielens", "rc", seed=1, retrain_pool=pool, **common)  # a study of one method's settings
    assert set(again["corrupted_reused"]) == {True} and set(again["retrains_reused"]) == {2}
    keep = [c for c in alone.columns if c not in TIMING_COLUMNS + ["retrains_reused"]]
    assert shared[keep].equals(alone[keep])
