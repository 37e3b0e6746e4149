"""Each benchmark runs at its tiny size and writes valid JSON with the keys its readers use.

Benchmarks are not tests: their figures are measured, not asserted. What is checked here is
that every command in ``benchmarks/`` still runs end to end (seconds each) and that its record
keeps the shape the book's cost chapter reads.
"""

import json
import math

import pandas as pd
import pytest

from benchmarks import (
    curvature_cost,
    erase_vs_retrain,
    gpu_path,
    hessian_subsample,
    lds,
    memorised_removal,
    recipe_stand_in,
    relinearised_erase,
    reporting,
    scaling,
    solver_accuracy,
    throughput,
)

# Benchmarks run fixed step budgets on purpose (work against accuracy) at sizes where solves stop above their
# tolerance, restart or trip a safety rail; what the solver did is in each record's diagnostics, which is what
# these runs are for. Here only that each benchmark runs and writes its record is checked.
pytestmark = pytest.mark.filterwarnings("ignore::eraserlib.errors.EraseWarning")

COMMON_KEYS = {"benchmark", "size", "seed", "command", "machine", "load_average_after", "total_seconds"}


def _record(path):
    text = path.read_text()
    record = json.loads(text)  # strict JSON: no NaN or Infinity (reporting writes them as null)
    assert "NaN" not in text and "Infinity" not in text
    assert COMMON_KEYS <= set(record)
    assert record["size"] == "tiny"
    assert {"cpu", "cores", "torch_threads", "load_average"} <= set(record["machine"])
    return record


def test_solver_accuracy(tmp_path, capsys):
    out = tmp_path / "solver_accuracy.json"
    solver_accuracy.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {"settings", "results", "summary", "goal", "cosine_goal"} <= set(record)
    methods = {r["method"] for r in record["results"][0]["records"]}
    assert {"exact", "llmeraser", "cg", "lissa", "datainf", "official_shipped", "official_converged"} <= methods
    for result in record["results"]:
        assert {"problem", "n", "p", "damping", "records", "reached_goal_cosine"} <= set(result)
        for method_record in result["records"]:
            assert {"hvp_count", "hvp_examples", "batch_hvp_equivalents", "seconds", "relative_residual",
                    "cosine"} <= set(method_record["final"])
        exact = next(r for r in result["records"] if r["method"] == "exact")
        assert exact["final"]["cosine"] == pytest.approx(1.0)
    shipped = next(r for r in record["results"][0]["records"] if r["method"] == "official_shipped")
    assert shipped["largest_move_from_init"] <= 20 * 1e-5 * 1.01  # Adam moves ≤ lr per step
    assert {"problem", "n", "llmeraser", "cg", "lissa", "beats_cg", "10x_fewer_than_lissa"} <= set(record["goal"][0])
    assert "Goal" in capsys.readouterr().out


def test_erase_vs_retrain_tiny_lora(tmp_path):
    out = tmp_path / "erase_vs_retrain.json"
    erase_vs_retrain.main(["--size", "tiny", "--backend", "tiny_lora", "--out", str(out)])
    record = _record(out)
    assert record["backend"] == "tiny_lora"
    assert {r["task"] for r in record["goal"]} == {"instance_removal", "query_modification", "response_correction"}
    for row in record["goal"]:
        assert {"retrain_s", "llmeraser_s", "retrain/llmeraser", "closer_than_corrupted", "40x_faster"} <= set(row)
        assert row["retrain_s"] > 0 and row["llmeraser_s"] > 0


def _require_movielens():
    """Skips the test when the MovieLens files are not in the data folder."""
    from eraserlab import datasets

    try:
        if not (datasets.data_dir() / "ml-100k").is_dir():
            pytest.skip("MovieLens is absent")
    except datasets.MissingDataError as error:
        pytest.skip(f"no data folder: {error}")


def test_erase_vs_retrain_rec(tmp_path):
    if not erase_vs_retrain.rec_available():
        pytest.skip("the recommendation experiment is not importable")
    _require_movielens()
    out = tmp_path / "erase_vs_retrain.json"
    erase_vs_retrain.main(["--size", "tiny", "--backend", "rec", "--cache-dir", str(tmp_path / "cache"),
                           "--out", str(out)])
    record = _record(out)
    assert record["backend"] == "rec"
    assert {"retrain", "llmeraser", "corrupted"} <= {r["method"] for r in record["rows"]}
    assert record["goal"] and "retrain/llmeraser" in record["goal"][0]


def test_hessian_subsample(tmp_path):
    out = tmp_path / "hessian_subsample.json"
    hessian_subsample.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {r["problem"] for r in record["results"]} == {"tiny_lora", "least_squares"}
    for result in record["results"]:
        assert {"rows", "worst_cosine_by_m", "smallest_m_reaching_goal"} <= set(result)
        full = [r for r in result["rows"] if r["m"] == result["n"]]
        assert full and full[0]["cosine"] == pytest.approx(1.0, abs=1e-4)  # m = n is plain CG


def test_scaling(tmp_path):
    out = tmp_path / "scaling.json"
    scaling.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {"adapter_size", "request_size", "several_requests"} <= set(record)
    sizes = [r["parameters"] for r in record["adapter_size"]]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert all(r["hvp_s"] > 0 and r["erase_s"] > 0 for r in record["adapter_size"])
    for row in record["several_requests"]:
        assert {"joint_s", "sequential_s", "summed_vs_joint", "sequential_vs_joint"} <= set(row)
    exact = next(r for r in record["several_requests"] if r["solver"] == "exact")
    assert exact["summed_vs_joint"]["cosine"] > 0.99  # linear in b: only the 1/(n−k) normalisation differs


def test_throughput(tmp_path):
    out = tmp_path / "throughput.json"
    throughput.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    knobs = {r["knob"] for r in record["rows"]}
    assert knobs == {"threads", "hvp_batch_size", "hvp_precision", "hvp_method"}
    assert all(r["seconds"] > 0 for r in record["rows"])
    method = [r for r in record["rows"] if r["knob"] == "hvp_method"]
    assert method[1]["relative_difference_to_float32"] < 1e-4  # both compute the same Hv


def test_gpu_path_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu_path.json"
    gpu_path.main(["--size", "tiny", "--device", "cpu", "--out", str(out)])
    record = _record(out)
    assert {"unit_costs", "erase", "hvp_precision", "projection", "paper_h100_reference"} <= set(record)
    units = record["unit_costs"]
    assert all(units[k]["seconds"] > 0 for k in ("forward", "gradient", "hvp", "gauss_newton"))
    assert units["gauss_newton_method"] in ("double_vjp", "forward")
    assert "seconds" in record["erase"], record["erase"]
    step = record["relinearised_step"]
    assert "seconds" in step, step
    assert step["gradient_count"] > 0 and step["gauss_newton_count"] > 0 and step["forward_count"] > 0
    assert len(step["corrected_objective"]) >= 1 and step["step_stop_reason"]
    assert record["hvp_precision"]["relative_difference"] == pytest.approx(0.0, abs=1e-6)  # float32 on both sides
    assert record["projection"]["instance_removal"]["erase_seconds"] > 0


def test_gpu_path_compares_bf16_with_float32(tmp_path):
    out = tmp_path / "gpu_path.json"
    gpu_path.main(["--size", "tiny", "--device", "cpu", "--dtype", "bfloat16", "--out", str(out)])
    precision = _record(out)["hvp_precision"]
    assert precision["model_dtype"] == "torch.bfloat16"
    assert 0 < precision["relative_difference"] < 0.5 and precision["cosine"] > 0.8


def test_table_formats_missing_values():
    text = reporting.format_table([{"a": 1.23456789, "b": None}, {"a": math.nan, "b": True}], ["a", "b"])
    assert "1.235" in text and "-" in text.splitlines()[2] and "yes" in text


def test_distributed_speed_up_runs_tiny(tmp_path):
    from benchmarks import distributed

    out = tmp_path / "distributed.json"
    distributed.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert [(r["processes"], r["threads_per_process"]) for r in record["runs"]] == [(1, 1), (2, 1)]
    assert all(r["median_seconds"] > 0 for r in record["runs"])
    assert record["runs"][1]["diagnostics"]["world_size"] == 2
    assert record["runs"][1]["relative_difference_to_one_process"] < 1e-5  # the same erase, shared


def test_gpu_path_multi_runs_tiny_on_cpu(tmp_path):
    from benchmarks import gpu_path_multi

    out = tmp_path / "gpu_path_multi.json"
    gpu_path_multi.main(["--size", "tiny", "--device", "cpu", "--processes", "2", "--out", str(out)])
    (run,) = _record(out)["runs"]
    assert run["world_size"] == 2, run
    assert all(run[k] > 0 for k in ("hvp_global_batch_s", "full_gradient_s", "all_reduce_s"))
    assert "seconds" in run["erase"], run["erase"]
    assert run["projection"]["erase_seconds"] > 0


def test_curvature_cost(tmp_path):
    out = tmp_path / "curvature_cost.json"
    curvature_cost.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    for row in record["rows"]:
        assert all(row[f"{k}_s"] > 0 for k in ("forward", "gradient", "hvp", "gauss_newton_double_vjp",
                                                "gauss_newton_forward"))
        assert row["forward_mode_vs_double_vjp"] < 1e-5  # the two ways to form J v give the same G v
        assert row["faster_gauss_newton"] in ("double_vjp", "forward")


def test_recipe_stand_in(tmp_path):
    out = tmp_path / "recipe_stand_in.json"
    recipe_stand_in.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {"before", "warm", "cold"} <= set(record["references"])
    methods = {row["method"] for row in record["rows"]}
    assert {"hessian, 1 step, auto", "gauss_newton, 1 step, auto", "gauss_newton, 2 steps, auto"} <= methods
    for row in record["rows"]:
        assert "error" in row or {"removed_loss_share_warm", "removed_loss_share_cold", "membership_auc",
                                  "retained_loss"} <= set(row), row
    assert record["spectra"]["gauss_newton"]["smallest"] > -1e-6  # positive semi-definite


def test_memorised_removal(tmp_path):
    out = tmp_path / "memorised_removal.json"
    memorised_removal.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert [r["case"] for r in record["results"]] == ["memorised secret", "memorised facts"]
    for result in record["results"]:
        cold = next(r for r in result["rows"] if r["method"] == "cold retrain")
        assert cold["removed_loss_share_cold"] == pytest.approx(1.0)
        modes = [r for r in result["rows"] if r["method"].startswith("removal mode")]
        assert modes and all("error" in r or r["removal_stop_reason"] for r in modes)


def test_lds(tmp_path):
    out = tmp_path / "lds.json"
    lds.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    methods = {r["method"] for r in record["rows"]}
    assert {"hessian", "gauss_newton", "datainf", "gradient_dot"} <= methods
    assert ("ekfac" in methods) == lds.kronfluence_available()
    assert all(-1 <= r["lds"] <= 1 for r in record["rows"])


def test_lds_with_kronfluence(tmp_path):
    pytest.importorskip("kronfluence", reason="benchmark-only dependency: pip install --no-deps -r "
                                              "benchmarks/requirements-kronfluence.txt")
    out = tmp_path / "lds.json"
    lds.main(["--size", "tiny", "--out", str(out)])
    ekfac = next(r for r in _record(out)["rows"] if r["method"] == "ekfac")
    assert ekfac["tracked_modules"] == 8  # lora_A and lora_B of q_proj and v_proj in 2 layers
    assert math.isfinite(ekfac["lds"])


def test_lds_score_is_spearman_of_subset_sums():
    import numpy as np

    scores = np.array([[1.0, 2.0, 3.0, 4.0]])  # one test example, four training examples
    subsets = [[0], [1, 2], [3], [0, 3]]  # predicted sums 1, 5, 4, 5
    actual = np.array([[0.1], [0.9], [0.5], [0.8]])  # ranks 1, 4, 2, 3 against predicted 1, 3.5, 2, 3.5
    result = lds.linear_datamodeling_score(scores, subsets, actual)
    assert result["lds"] == pytest.approx(0.9486832980505138)


def test_matching_speed(tmp_path):
    from benchmarks import matching_speed

    out = tmp_path / "matching_speed.json"
    matching_speed.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {r["form"] for r in record["results"]} == {"token_rows", "tensors", "hf_dataset"}
    assert all({"n", "index_seconds", "microseconds_per_example", "lookup_seconds"} <= set(r) for r in record["results"])


def test_relinearised_erase(tmp_path):
    _require_movielens()
    out = tmp_path / "relinearised_erase.json"
    relinearised_erase.main(["--size", "tiny", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    record = _record(out)
    assert {r["setting"] for r in record["rows"]} == {"movielens ir 0.1", "spurious rc 0.4"}
    steps = [r for r in record["rows"] if r["method"] == "llmeraser_gn_steps"]
    assert len(steps) == 2 and all(r["cost_share"] > 0 and "r/jsd_test" in r for r in steps)
    corrupted = [r for r in record["rows"] if r["method"] == "corrupted"]
    assert all(r["r/jsd_test"] == 1.0 for r in corrupted)  # the protocol's anchor
    assert all(0 <= r["resolved_seeds/forget_loss"] <= r["seeds"] for r in record["rows"])
    runs = pd.read_csv(out.with_suffix(".runs.csv"))  # every run's row beside the summary
    assert set(runs.setting) == {"movielens ir 0.1", "spurious rc 0.4"} and len(runs) == 2 * 5
    with pytest.raises(SystemExit, match="unknown settings"):
        relinearised_erase.main(["--size", "tiny", "--settings", "lastfm:qm", "--out", str(out)])


def test_parallel_experiment_speed_up_runs_tiny(tmp_path):
    _require_movielens()
    from benchmarks import parallel_experiment

    out = tmp_path / "parallel_experiment.json"
    parallel_experiment.main(["--size", "tiny", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    record = _record(out)
    assert [r["processes"] for r in record["runs"]] == [1, 2]
    assert all(r["seconds"] > 0 for r in record["runs"]) and record["results_equal"] is True
