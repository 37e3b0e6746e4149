"""The base-model cache and a whole experiment at the smallest sizes, on the real MovieLens files."""

import dataclasses
import json

import numpy as np
import pytest
import torch

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
                  "time_s", "peak_memory_mb", "memory_kind", "n_train", "n_request", "n_test", "load_1min"}


@pytest.mark.parametrize("task, methods", [
    ("rc", ["corrupted", "retrain", "llmeraser", "finetune", "sisa"]),
    ("ir", ["corrupted", "retrain", "llmeraser", "gradient_ascent", "sisa"]),
])
def test_tiny_experiment_returns_every_method_and_metric(data_root, cache_dir, tmp_path, task, methods):
    frame = run_experiment("movielens", task, ratio=0.1, seed=0, model_size="tiny", device="cpu",
                           data_dir=data_root, results_dir=tmp_path, cache_dir=cache_dir, progress=False)
    assert list(frame["method"]) == methods
    expected = COMMON_COLUMNS | (NEXT_ITEM_COLUMNS if task == "rc" else {"auc", "accuracy"})
    assert expected <= set(frame.columns)
    retrain = frame.set_index("method").loc["retrain"]
    assert retrain["jsd_test"] == pytest.approx(0.0, abs=1e-12)
    assert retrain["delta_relative_error"] == pytest.approx(0.0, abs=1e-12)
    corrupted = frame.set_index("method").loc["corrupted"]
    assert corrupted["delta_relative_error"] == pytest.approx(1.0)
    assert (frame["time_s"] > 0).all() and frame["n_request"].iloc[0] > 0
    # the adapters differ, so the distances are real numbers
    assert np.isfinite(frame.set_index("method").loc["llmeraser", ["jsd_test", "jsd_corrected", "delta_cosine"]]).all()
    stem = f"movielens-{task}-0.1-seed0"
    saved = json.loads((tmp_path / f"{stem}.json").read_text())
    assert [row["method"] for row in saved["rows"]] == methods
    assert saved["erase_diagnostics"]["solver"] == "llmeraser"
    assert (tmp_path / f"{stem}.csv").read_text().startswith("dataset,task,ratio,seed,method")


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
                           config=dataclasses.replace(TINY, max_train_users=24, erase_options={
                               "top_eigenvalue": 4.0, "first_window": 2, "max_steps": 8}),
                           device="cpu", data_dir=data_root,
                           base_model=tmp_path / "checkpoint", progress=False)
    assert list(frame["method"]) == ["corrupted", "retrain", "llmeraser"]
    assert set(frame["item_text"]) == {"title"} and set(frame["model"]) == {str(tmp_path / "checkpoint")}
    assert frame["valid_ratio"].between(0, 1).all()
