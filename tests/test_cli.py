"""``python -m eraserlib``: erase and correct from JSONL / CSV / Parquet files on a tiny Llama, end to end.

The base directory (config, weights, a word-level tokenizer), the LoRA adapter and the
training file are the session fixture ``tiny_facts`` (``eraserlib.toy.facts``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eraserlib
from eraserlib.adapters import MANIFEST_NAME, directory_digest, load_adapter
from eraserlib.cli import main
from eraserlib.matching import example_digest
from eraserlib.toy.facts import tokenized

REPO = Path(__file__).resolve().parents[1]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in rows))
    return path


def _base(facts):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(facts.base), attn_implementation="eager")


def _common(facts, out):
    return ["--base", str(facts.base), "--adapter", str(facts.adapter), "--train", str(facts.train), "--out", str(out)]


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_erase_end_to_end_as_a_shell_command(tiny_facts, tmp_path):
    """The real command in a fresh process: exit 0, the adapter and its manifest, equal to the Python API's erase."""
    from transformers import AutoTokenizer

    source = directory_digest(tiny_facts.adapter)
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[3:6])
    out = tmp_path / "erased"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "eraserlib", "erase", *_common(tiny_facts, out), "--forget",
                           str(forget), "--solver", "cg", "--batch-size", "8", "--seed", "0"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = _last_json(done.stdout)
    assert summary["status"] == "ok" and summary["request_indices"] == [3, 4, 5] and summary["warnings"] == []
    assert directory_digest(tiny_facts.adapter) == source
    assert "it/s" not in done.stderr, "no progress bars in a non-terminal log"

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_facts.base))
    data = tokenized(tiny_facts.rows, tokenizer)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["request"]["indices"] == [3, 4, 5]
    assert manifest["request"]["examples_sha256"] == [example_digest(z) for z in data[3:6]]
    assert manifest["output_sha256"] == directory_digest(out, exclude=[MANIFEST_NAME])
    assert manifest["safety"]["fired"] == [] and manifest["source_adapter"]["sha256"] == source

    # The same erase through the Python API gives the same adapter.
    collate = eraserlib.CausalLMCollator(tokenizer.pad_token_id)
    expected = load_adapter(_base(tiny_facts), tiny_facts.adapter)
    result = eraserlib.erase(expected, eraserlib.causal_lm_loss, data, eraserlib.InstanceRemoval(data[3:6]),
                             solver="cg", collate_fn=collate, batch_size=8, seed=0)
    eraserlib.apply_delta(expected, result.delta)
    written = load_adapter(_base(tiny_facts), out, trainable=False)
    original = load_adapter(_base(tiny_facts), tiny_facts.adapter, trainable=False)
    batch = collate(data[:8])
    with torch.no_grad():
        logits = written(input_ids=batch["input_ids"]).logits
        assert torch.allclose(logits, expected(input_ids=batch["input_ids"]).logits, atol=1e-5)
        assert not torch.allclose(logits, original(input_ids=batch["input_ids"]).logits, atol=1e-5)


def test_the_command_under_torchrun_gives_the_one_process_adapter(tiny_facts, tmp_path):
    """``torchrun --nproc_per_node 2 -m eraserlib erase``: two gloo ranks, one summary, the same adapter as one process."""
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[3:6])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    arguments = ["erase", "--forget", str(forget), "--solver", "cg", "--batch-size", "8", "--seed", "0"]
    outputs = {}
    for ranks in (1, 2):
        out = tmp_path / f"erased-{ranks}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        done = subprocess.run([*launcher, "-m", "eraserlib", *arguments[:1], *_common(tiny_facts, out),
                               *arguments[1:]], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert len(summaries) == 1 and summaries[0]["status"] == "ok", done.stdout  # rank 0 reports, once
        assert summaries[0].get("ranks", 1) == ranks
        outputs[ranks] = load_adapter(_base(tiny_facts), out, trainable=False)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_facts.base))
    batch = eraserlib.CausalLMCollator(tokenizer.pad_token_id)(tokenized(tiny_facts.rows, tokenizer)[:8])
    with torch.no_grad():
        one, two = (outputs[k](input_ids=batch["input_ids"]).logits for k in (1, 2))
    assert torch.allclose(one, two, atol=1e-5), float((one - two).abs().max())


def test_correct_replaces_responses(tiny_facts, tmp_path, capsys):
    old = _jsonl(tmp_path / "old.jsonl", tiny_facts.rows[:2])
    new = _jsonl(tmp_path / "new.jsonl", [{**r, "completion": " " + r["completion"].strip()[::-1]}
                                          for r in tiny_facts.rows[:2]])
    out = tmp_path / "corrected"
    code = main(["correct", *_common(tiny_facts, out), "--old", str(old), "--new", str(new), "--solver", "cg",
                 "--batch-size", "8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["request"]["kind"] == "response_correction" and manifest["request"]["indices"] == [0, 1]
    assert len(manifest["request"]["new_sha256"]) == 2 and manifest["request"]["new_sha256"] != \
        manifest["request"]["old_sha256"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_reads_csv_and_parquet(tiny_facts, tmp_path, capsys, suffix):
    import datasets

    table = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in tiny_facts.rows])
    train = tmp_path / f"train.{suffix}"
    table.to_csv(str(train), index=False) if suffix == "csv" else table.to_parquet(str(train))
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[:1])
    arguments = _common(tiny_facts, tmp_path / "out")
    arguments[arguments.index("--train") + 1] = str(train)
    assert main(["erase", *arguments, "--forget", str(forget), "--dry-run"]) == 0, capsys.readouterr().err
    assert _last_json(capsys.readouterr().out)["status"] == "dry_run_ok"
    assert not (tmp_path / "out").exists()


def test_curvature_is_chosen_on_the_command_line(tiny_facts, tmp_path, capsys):
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[:2])
    out = tmp_path / "out"
    code = main(["erase", *_common(tiny_facts, out), "--forget", str(forget), "--solver", "cg", "--batch-size", "8",
                 "--curvature", "gauss_newton"])
    assert code == 0, capsys.readouterr().err
    diagnostics = json.loads((out / MANIFEST_NAME).read_text())["diagnostics"]
    assert diagnostics["curvature"] == "gauss_newton" and diagnostics["gauss_newton_count"] > 0
    assert main(["erase", *_common(tiny_facts, tmp_path / "other"), "--forget", str(forget), "--curvature",
                 "fisher"]) == 2  # a usage error, before any work
    assert not (tmp_path / "other").exists()


def test_dry_run_checks_without_writing(tiny_facts, tmp_path, capsys):
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[:2])
    out = tmp_path / "out"
    assert main(["erase", *_common(tiny_facts, out), "--forget", str(forget), "--dry-run"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["status"] == "dry_run_ok" and "one Hessian-vector product" in summary["checked"]
    assert not out.exists()


@pytest.mark.parametrize("problem", ["forget row not in the training file", "unwritable output", "missing weights"])
def test_dry_run_fails_fast(tiny_facts, tmp_path, capsys, problem):
    import shutil

    adapter, out = tiny_facts.adapter, tmp_path / "out"
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[:1])
    if problem == "forget row not in the training file":
        forget = _jsonl(tmp_path / "forget.jsonl", [{"prompt": "the moon of nowhere is", "completion": " none"}])
        code, message = 2, "not a row of the training file"
    elif problem == "unwritable output":
        (tmp_path / "file").write_text("x")
        out, code, message = tmp_path / "file" / "out", 4, "is a file"
    else:
        adapter = tmp_path / "adapter"
        shutil.copytree(tiny_facts.adapter, adapter)
        (adapter / "adapter_model.safetensors").unlink()
        code, message = 4, "no adapter weights"
    arguments = _common(tiny_facts, out)
    arguments[arguments.index("--adapter") + 1] = str(adapter)
    assert main(["erase", *arguments, "--forget", str(forget), "--dry-run"]) == code
    captured = capsys.readouterr()
    assert message in captured.err
    assert _last_json(captured.out) | {"exit_code": code} == _last_json(captured.out)
    assert not out.exists()


def test_a_warning_is_exit_3_and_writes_nothing_unless_kept(tiny_facts, tmp_path, capsys):
    """A solve stopped above its tolerance: exit 3, no adapter; --keep-anyway writes it, with the warning recorded."""
    forget = _jsonl(tmp_path / "forget.jsonl", tiny_facts.rows[:2])
    budget = ["--solver", "llmeraser", "--option", "max_steps=24", "--option", "first_window=8", "--batch-size", "8"]
    out = tmp_path / "out"
    assert main(["erase", *_common(tiny_facts, out), "--forget", str(forget), *budget]) == 3
    captured = capsys.readouterr()
    assert "NotConvergedWarning" in captured.err and "not written" in captured.err and not out.exists()
    assert main(["erase", *_common(tiny_facts, out), "--forget", str(forget), *budget, "--keep-anyway"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["diagnostics"]["converged"] is False
    assert any("NotConvergedWarning" in w for w in manifest["diagnostics"]["warnings"])


def test_text_column_layout(tiny_facts, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in tiny_facts.rows))
    forget = tmp_path / "forget.jsonl"
    forget.write_text(json.dumps({"text": tiny_facts.rows[5]["text"]}) + "\n")
    arguments = _common(tiny_facts, tmp_path / "out")
    arguments[arguments.index("--train") + 1] = str(train)
    assert main(["erase", *arguments, "--forget", str(forget), "--dry-run"]) == 0, capsys.readouterr().err


def test_help_and_the_core_imports_no_data_library():
    done = subprocess.run([sys.executable, "-c", "import sys, eraserlib, eraserlib.influence, eraserlib.adapters, "
                           "eraserlib.cli, eraserlib.safety; print(sorted({'datasets', 'pandas', 'pyarrow'} & "
                           "set(sys.modules)))"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH":
                                                                                      str(REPO)}, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert main(["--help"]) == 0
