"""Each benchmark runs at its tiny size and writes valid JSON with the keys its readers use.

Benchmarks are not tests: their figures are measured, not asserted. What is checked here is
that every command in ``benchmarks/`` still runs end to end (seconds each) and that its record
keeps the shape the book's cost chapter reads.
"""

import json
import math

import pytest

from benchmarks import (
    erase_vs_retrain,
    gpu_path,
    hessian_subsample,
    reporting,
    scaling,
    solver_accuracy,
    throughput,
)

# Benchmarks run fixed step budgets on purpose (work against accuracy): their solves stop above the tolerance.
pytestmark = pytest.mark.filterwarnings("ignore::eraserlib.errors.NotConvergedWarning")

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


def test_erase_vs_retrain_rec(tmp_path):
    if not erase_vs_retrain.rec_available():
        pytest.skip("the recommendation experiment is not importable")
    from eraserlab import datasets

    try:
        if not (datasets.data_dir() / "ml-100k").is_dir():
            pytest.skip("MovieLens is absent")
    except datasets.MissingDataError as error:
        pytest.skip(f"no data folder: {error}")
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
    assert all(units[k]["seconds"] > 0 for k in ("forward", "gradient", "hvp"))
    assert "seconds" in record["erase"], record["erase"]
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


def test_matching_speed(tmp_path):
    from benchmarks import matching_speed

    out = tmp_path / "matching_speed.json"
    matching_speed.main(["--size", "tiny", "--out", str(out)])
    record = _record(out)
    assert {r["form"] for r in record["results"]} == {"token_rows", "tensors", "hf_dataset"}
    assert all({"n", "index_seconds", "microseconds_per_example", "lookup_seconds"} <= set(r) for r in record["results"])
