"""The bad inputs a new user tries, table-driven: each fails at once with a clear error, and nothing changes.

Every case asserts the exception type (for the command line: the exit code), that the message
names the problem, and that nothing on disk or in memory changed: the source adapter's bytes,
no output directory, the shared model's parameters. None may end in a silent wrong answer.
The model is the tiny made-up-facts Llama of ``eraserlib.toy.facts`` (built once per session).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import eraserlib
from eraserlib import causal_lm_loss
from eraserlib.adapters import directory_digest, erase_adapter, load_adapter, save_erased_adapter
from eraserlib.cli import main
from eraserlib.solvers import CGOptions, InvalidOptionsError
from eraserlib.toy.facts import tokenized

IR, RC, QM = eraserlib.InstanceRemoval, eraserlib.ResponseCorrection, eraserlib.QueryModification


@dataclass(frozen=True)
class Exit:
    """A command-line case's expected exit code."""

    code: int


class Env:
    """What a case may use: the facts on disk, a shared loaded model, a fresh output path per case."""

    def __init__(self, facts, model, tokenizer, scratch: Path):
        self.facts, self.model, self.tokenizer, self.scratch = facts, model, tokenizer, scratch
        self.data = tokenized(facts.rows, tokenizer)
        self.collate = eraserlib.CausalLMCollator(tokenizer.pad_token_id)
        self.out = scratch / "out"

    def base(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(self.facts.base), attn_implementation="eager")

    def erase(self, request=None, model=None, loss_fn=causal_lm_loss, train_data=None, **arguments):
        arguments = {"solver": "cg", "collate_fn": self.collate, "batch_size": 8, "progress": False, "damping": 0.5,
                     **arguments}
        return eraserlib.erase(self.model if model is None else model, loss_fn,
                               self.data if train_data is None else train_data,
                               IR(self.data[:2]) if request is None else request, **arguments)

    def erase_adapter(self, adapter=None, out=None, request=None, base=None, **arguments):
        arguments = {"solver": "cg", "collate_fn": self.collate, "batch_size": 8, "progress": False, "damping": 0.5,
                     **arguments}
        return erase_adapter(self.base() if base is None else base, self.facts.adapter if adapter is None else adapter,
                             self.out if out is None else out, causal_lm_loss, self.data,
                             IR(self.data[:2]) if request is None else request, **arguments)

    def copy_adapter(self, edit: Callable[[Path], None]) -> Path:
        """A copy of the adapter directory, changed by ``edit``."""
        import shutil

        target = self.scratch / "adapter-copy"
        shutil.copytree(self.facts.adapter, target)
        edit(target)
        return target

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        path = self.scratch / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    def forget_rows(self, k: int = 2) -> list[dict]:
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in self.facts.rows[:k]]

    def cli(self, *arguments: str, command: str = "erase", **paths: Any) -> int:
        given = {"base": self.facts.base, "adapter": self.facts.adapter, "train": self.facts.train, "out": self.out}
        if command == "erase":
            given["forget"] = self.jsonl("forget.jsonl", self.forget_rows())
        given.update(paths)
        argv = [command] + [f"--{k}={v}" for k, v in given.items()] + ["--solver=cg", "--batch-size=8", *arguments]
        return main(argv)

    def frozen_nan(self):
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            next(p for name, p in model.named_parameters() if "q_proj.base_layer" in name).view(-1)[0] = math.nan
        return model

    def lora(self, value: float):
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            next(p for p in model.parameters() if p.requires_grad).view(-1)[:3] = value
        return model

    def result(self):
        return self.erase()

    def delta(self, change: Callable[[dict], dict]):
        return change({k: v.clone() for k, v in self.result().delta.items()})


def _changed(data, i=0):
    z = data[i]
    return {"input_ids": list(z["input_ids"][:-1]) + [z["input_ids"][-1] + 1], "labels": list(z["labels"][:-1])
            + [z["labels"][-1] + 1]}


def _as_tensors(z):
    return {k: torch.tensor(v) for k, v in z.items()}


def _iterable_dataset(data):
    import datasets

    return datasets.Dataset.from_list(data).to_iterable_dataset()


def _truncate(path: Path):
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])


def _bf16(env: Env):
    model = copy.deepcopy(env.model).to(torch.bfloat16)
    result = env.erase()
    return eraserlib.apply_delta(model, {k: 1e-4 * v / v.norm() for k, v in result.delta.items()})


def _save_unapplied(env: Env):
    model = load_adapter(env.base(), env.facts.adapter)
    result = env.erase(model=model)
    return save_erased_adapter(model, env.out, result, source_dir=env.facts.adapter)


def _save_applied_twice(env: Env):
    model = load_adapter(env.base(), env.facts.adapter)
    result = env.erase(model=model)
    eraserlib.apply_delta(model, result.delta)
    eraserlib.apply_delta(model, result.delta)
    return save_erased_adapter(model, env.out, result, source_dir=env.facts.adapter)


def _other_base_adapter(env: Env):
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model

    target = env.scratch / "other-adapter"
    build_model(TinyLoraConfig(hidden_size=24, heads=2)).save_pretrained(str(target))
    base = env.base()
    modules = [(name, type(m)) for name, m in base.named_modules()]
    try:
        return load_adapter(base, target)
    finally:  # peft had injected the layers before the weights failed to fit: they are taken out again
        assert [(name, type(m)) for name, m in base.named_modules()] == modules and not hasattr(base, "peft_config")


def _read_only(env: Env):
    try:
        probe = Path("/sys") / ".eraser-probe"
        probe.mkdir()
        probe.rmdir()
        pytest.skip("/sys is writable here: no read-only directory to test with")
    except OSError:
        pass
    return env.erase_adapter(out="/sys/eraser-out")


def _a_file(env: Env) -> Path:
    path = env.scratch / "a-file"
    path.write_text("not a directory")
    return path


def _occupied(env: Env) -> Path:
    path = env.scratch / "occupied"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    return path


def _loud(function, **arguments):
    """``function(**arguments)`` with eraserlib's warnings raised as errors (a case for a warning, not a silence)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", eraserlib.EraseWarning)
        return function(**arguments)


def _concave(m, batch):
    return -causal_lm_loss(m, batch)


def _no_grad_loss(m, batch):
    with torch.no_grad():
        return causal_lm_loss(m, batch)


def _duplicated_train(env: Env) -> Path:
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in env.facts.rows]
    return env.jsonl("train-dup.jsonl", rows + rows[:1])


E = eraserlib
CASES: list[tuple[str, Callable[[Env], Any], Any, str]] = [
    # -- a request built wrongly ------------------------------------------------------------
    ("ir-of-a-string", lambda e: IR("abc"), E.InvalidRequestError, "one example"),
    ("ir-of-bytes", lambda e: IR(b"abc"), E.InvalidRequestError, "one example"),
    ("ir-of-one-dict", lambda e: IR(e.data[0]), E.InvalidRequestError, "one example.*\\[example\\]"),
    ("ir-of-a-tensor", lambda e: IR(torch.zeros(2, 3)), E.InvalidRequestError, "batched tensor"),
    ("ir-of-an-array", lambda e: IR(np.zeros(3)), E.InvalidRequestError, "one example"),
    ("ir-of-an-int", lambda e: IR(5), E.InvalidRequestError, "needs a sequence"),
    ("ir-of-none", lambda e: IR(None), E.InvalidRequestError, "got None"),
    ("ir-empty", lambda e: IR([]), E.InvalidRequestError, "empty"),
    ("ir-of-an-iterator", lambda e: IR(iter(e.data[:2])), E.InvalidRequestError, "needs a sequence"),
    ("ir-of-a-set", lambda e: IR({1, 2}), E.InvalidRequestError, "needs a sequence"),
    ("ir-of-a-class", lambda e: IR(IR), E.InvalidRequestError, "class InstanceRemoval"),
    ("rc-lengths", lambda e: RC(e.data[:2], e.data[2:3]), E.InvalidRequestError, "2 old and 1 new"),
    ("rc-empty", lambda e: RC([], []), E.InvalidRequestError, "empty"),
    ("rc-of-a-string", lambda e: RC("abc", ["x"]), E.InvalidRequestError, "one example"),
    ("qm-of-one-dict", lambda e: QM(e.data[0], [e.data[1]]), E.InvalidRequestError, "one example"),
    ("rc-no-change", lambda e: RC([e.data[0]], [e.data[0]]), E.InvalidRequestError, "changes nothing"),
    ("index-out-of-range", lambda e: IR.from_indices(e.data, [100]), E.InvalidRequestError, "outside train_data"),
    ("index-twice", lambda e: IR.from_indices(e.data, [1, 1]), E.InvalidRequestError, "appears twice"),
    ("index-float", lambda e: IR.from_indices(e.data, [1.5]), E.InvalidRequestError, "not an integer"),
    ("index-bool", lambda e: IR.from_indices(e.data, [True]), E.InvalidRequestError, "not an integer"),
    ("index-negative", lambda e: IR.from_indices(e.data, [-1]), E.InvalidRequestError, "outside train_data"),
    ("indices-an-int", lambda e: IR.from_indices(e.data, 3), E.InvalidRequestError, "sequence of integers"),
    ("indices-a-string", lambda e: IR.from_indices(e.data, "12"), E.InvalidRequestError, "sequence of integers"),
    ("rc-from-indices-lengths", lambda e: RC.from_indices(e.data, [0, 1], [_changed(e.data)]),
     E.InvalidRequestError, "2 old and 1 new"),
    # -- a request that is not in the training data ---------------------------------------------
    ("indices-as-examples", lambda e: e.erase(IR([3, 5])), E.InvalidRequestError, "not in train_data.*from_indices"),
    ("near-copy", lambda e: e.erase(IR([_changed(e.data)])), E.InvalidRequestError, "example 0 is not in train_data"),
    ("tensors-not-lists", lambda e: e.erase(IR([_as_tensors(e.data[0])])), E.InvalidRequestError, "not in train_data"),
    ("raw-rows-not-tokens", lambda e: e.erase(IR([e.facts.rows[0]])), E.InvalidRequestError, "not in train_data"),
    ("request-duplicate", lambda e: e.erase(IR([e.data[1], e.data[1]])), E.InvalidRequestError, "appears 2 times"),
    ("remove-everything", lambda e: e.erase(IR(e.data)), E.InvalidRequestError, "at least one example must remain"),
    ("rc-old-not-in-data", lambda e: e.erase(RC([_changed(e.data)], [e.data[0]])), E.InvalidRequestError,
     "old example 0 is not in train_data"),
    ("not-a-request", lambda e: e.erase(["not", "a", "request"]), E.InvalidRequestError, "InstanceRemoval, Query"),
    ("request-a-class", lambda e: e.erase(IR), E.InvalidRequestError, "got type"),
    # -- training data ------------------------------------------------------------------------
    ("train-empty", lambda e: e.erase(train_data=[]), E.InvalidRequestError, "train_data is empty"),
    ("train-a-string", lambda e: e.erase(train_data="abc"), E.InvalidRequestError, "sequence of training examples"),
    ("train-an-iterator", lambda e: e.erase(train_data=iter(e.data)), E.InvalidRequestError, "an iterator"),
    ("train-a-dict", lambda e: e.erase(train_data={"a": 1}), E.InvalidRequestError, "got dict"),
    ("train-none", lambda e: e.erase(train_data=None or 0), E.InvalidRequestError, "got int"),
    ("train-a-tensor", lambda e: e.erase(train_data=torch.zeros(4, 3)), E.InvalidRequestError, "batched tensor"),
    ("train-streaming", lambda e: e.erase(train_data=_iterable_dataset(e.data)), E.InvalidRequestError, "streaming"),
    # -- the model ----------------------------------------------------------------------------
    ("no-trainable", lambda e: e.erase(model=e.base().requires_grad_(False)), E.NoTrainableParametersError,
     "requires_grad"),
    ("nan-lora-parameter", lambda e: e.erase(model=e.lora(math.nan)), E.NonFiniteError, "lora_A.*3 of"),
    ("inf-lora-parameter", lambda e: e.erase(model=e.lora(math.inf)), E.NonFiniteError, "NaN or Inf"),
    ("nan-frozen-parameter", lambda e: e.erase(model=e.frozen_nan()), E.NonFiniteError, "frozen parameters"),
    ("model-a-path", lambda e: e.erase(model="adapter/"), E.InvalidArgumentError, "torch.nn.Module"),
    # -- loss_fn ------------------------------------------------------------------------------
    ("loss-detached", lambda e: e.erase(loss_fn=lambda m, b: causal_lm_loss(m, b).detach()), E.LossFunctionError,
     "autograd graph"),
    ("loss-under-no-grad", lambda e: e.erase(loss_fn=_no_grad_loss), E.LossFunctionError, "no_grad"),
    ("loss-a-float", lambda e: e.erase(loss_fn=lambda m, b: causal_lm_loss(m, b).detach().item()), E.LossFunctionError,
     "scalar tensor"),
    ("loss-per-example", lambda e: e.erase(loss_fn=lambda m, b: causal_lm_loss(m, b).repeat(3)),
     E.LossFunctionError, "scalar tensor.*mean"),
    ("loss-nan", lambda e: e.erase(loss_fn=lambda m, b: causal_lm_loss(m, b) * math.nan), E.NonFiniteError,
     "returned nan"),
    ("loss-not-callable", lambda e: e.erase(loss_fn="cross_entropy"), E.InvalidArgumentError, "loss_fn must be"),
    ("loss-without-parameters", lambda e: e.erase(loss_fn=lambda m, b: torch.ones((), requires_grad=True) * 2),
     E.LossFunctionError, "does not depend on any trainable parameter"),
    # -- solver, options and arguments ----------------------------------------------------------
    ("unknown-solver", lambda e: e.erase(solver="newton"), ValueError, "Unknown solver 'newton'"),
    ("solver-not-a-name", lambda e: e.erase(solver=3), E.InvalidArgumentError, "solver must be"),
    ("misspelt-option", lambda e: e.erase(solver="llmeraser", options={"max_step": 10}), InvalidOptionsError,
     "(?s)no option 'max_step'.*max_steps"),
    ("options-of-another-solver", lambda e: e.erase(solver="llmeraser", options=CGOptions()), InvalidOptionsError,
     "takes LLMEraserOptions"),
    ("options-a-list", lambda e: e.erase(options=["max_iterations"]), InvalidOptionsError, "or a dict"),
    ("option-float-for-int", lambda e: e.erase(solver="llmeraser", options={"max_steps": 2.5}), InvalidOptionsError,
     "max_steps must be int"),
    ("option-zero-steps", lambda e: e.erase(solver="llmeraser", options={"max_steps": 0}), InvalidOptionsError,
     "max_steps must be ≥ 1"),
    ("option-momentum-1", lambda e: e.erase(solver="llmeraser", options={"momentum": 1.0}), InvalidOptionsError,
     "momentum must be in"),
    ("option-negative-tolerance", lambda e: e.erase(solver="llmeraser", options={"tolerance": -1.0}),
     InvalidOptionsError, "tolerance must be ≥ 0"),
    ("option-zero-learning-rate", lambda e: e.erase(solver="llmeraser", options={"learning_rate": 0.0}),
     InvalidOptionsError, "learning_rate must be > 0"),
    ("cg-option-a-string", lambda e: e.erase(options={"max_iterations": "10"}), InvalidOptionsError,
     "max_iterations must be int"),
    ("datainf-zero-examples", lambda e: e.erase(solver="datainf", options={"examples": 0}), InvalidOptionsError,
     "examples must be ≥ 1"),
    ("exact-flag-a-string", lambda e: e.erase(solver="exact", options={"allow_indefinite": "yes"}),
     InvalidOptionsError, "allow_indefinite must be bool"),
    ("damping-negative", lambda e: e.erase(damping=-1.0), ValueError, "damping must be"),
    ("damping-nan", lambda e: e.erase(damping=math.nan), ValueError, "damping must be"),
    ("damping-inf", lambda e: e.erase(damping=math.inf), ValueError, "damping must be"),
    ("damping-a-word", lambda e: e.erase(damping="lots"), ValueError, "damping must be"),
    ("damping-bool", lambda e: e.erase(damping=True), ValueError, "damping must be"),
    ("weight-decay-negative", lambda e: e.erase(weight_decay=-0.1), E.InvalidArgumentError, "weight_decay must be"),
    ("weight-decay-nan", lambda e: e.erase(weight_decay=math.nan), E.InvalidArgumentError, "weight_decay must be"),
    ("weight-decay-string", lambda e: e.erase(weight_decay="0"), E.InvalidArgumentError, "weight_decay must be"),
    ("batch-size-2.5", lambda e: e.erase(batch_size=2.5), E.InvalidArgumentError, "batch_size must be a positive"),
    ("batch-size-0", lambda e: e.erase(batch_size=0), E.InvalidArgumentError, "batch_size must be a positive"),
    ("batch-size-bool", lambda e: e.erase(batch_size=True), E.InvalidArgumentError, "batch_size must be"),
    ("batch-size-string", lambda e: e.erase(batch_size="16"), E.InvalidArgumentError, "batch_size must be"),
    ("seed-float", lambda e: e.erase(seed=1.5), E.InvalidArgumentError, "seed must be an integer"),
    ("seed-negative", lambda e: e.erase(seed=-1), E.InvalidArgumentError, "seed must be an integer"),
    ("seed-string", lambda e: e.erase(seed="0"), E.InvalidArgumentError, "seed must be an integer"),
    ("spectrum-iterations-0", lambda e: e.erase(spectrum_iterations=0), E.InvalidArgumentError,
     "spectrum_iterations must be"),
    ("spectrum-sample-0", lambda e: e.erase(spectrum_sample_size=0), E.InvalidArgumentError,
     "spectrum_sample_size must be"),
    ("compute-dtype-int", lambda e: e.erase(compute_dtype=torch.int64), E.InvalidArgumentError, "compute_dtype"),
    ("compute-dtype-string", lambda e: e.erase(compute_dtype="float32"), E.InvalidArgumentError, "compute_dtype"),
    ("progress-a-string", lambda e: e.erase(progress="yes"), E.InvalidArgumentError, "progress must be"),
    ("collate-not-callable", lambda e: e.erase(collate_fn="pad"), E.InvalidArgumentError, "collate_fn must be"),
    ("safety-a-word", lambda e: e.erase(safety="strict"), E.InvalidArgumentError, "safety must be"),
    ("safety-misspelt", lambda e: e.erase(safety={"sample_sise": 5}), E.InvalidArgumentError,
     "no field 'sample_sise'"),
    ("safety-bad-threshold", lambda e: e.erase(safety={"retained_rise": -1}), E.InvalidArgumentError,
     "retained_rise must be"),
    # -- solves that must refuse instead of returning nonsense ---------------------------------------
    ("exact-indefinite", lambda e: e.erase(solver="exact", damping=0.0), E.NegativeCurvatureError,
     "not positive definite|singular"),
    ("exact-too-large", lambda e: e.erase(solver="exact", options={"max_parameters": 10}), E.ProblemTooLargeError,
     "max_parameters"),
    ("cg-concave", lambda e: e.erase(loss_fn=_concave, damping=0.0), E.NegativeCurvatureError, "damping"),
    ("llmeraser-proven-indefinite", lambda e: _loud(e.erase, solver="llmeraser", loss_fn=_concave, damping=0.0),
     E.IndefiniteSystemWarning, "negative curvature.*Ritz.*not an update"),
    ("lissa-proven-indefinite", lambda e: _loud(e.erase, solver="lissa", loss_fn=_concave, damping=0.0,
                                                options={"depth": 4}), E.IndefiniteSystemWarning, "negative curvature"),
    ("llmeraser-diverges", lambda e: e.erase(solver="llmeraser", loss_fn=_concave, damping=0.0,
                                             options={"top_eigenvalue": 1.0}), E.SolverDivergedError, "damping"),
    # -- applying and saving ----------------------------------------------------------------------
    ("apply-the-result", lambda e: eraserlib.apply_delta(copy.deepcopy(e.model), e.result()), E.InvalidArgumentError,
     "result.delta"),
    ("apply-unknown-name", lambda e: eraserlib.apply_delta(copy.deepcopy(e.model), e.delta(lambda d: {**d, "x.w":
                                                                                                     torch.ones(1)})),
     KeyError, "x.w"),
    ("apply-wrong-shape", lambda e: eraserlib.apply_delta(copy.deepcopy(e.model), e.delta(
        lambda d: {k: v.reshape(-1) for k, v in d.items()})), ValueError, "shape"),
    ("apply-nan", lambda e: eraserlib.apply_delta(copy.deepcopy(e.model), e.delta(
        lambda d: {k: v * math.nan for k, v in d.items()})), ValueError, "NaN or Inf"),
    ("apply-bf16-rounds-away", _bf16, E.PrecisionError, "rounded away.*upcast=True"),
    ("save-without-apply", _save_unapplied, E.AdapterError, "do not carry the update.*apply_delta"),
    ("save-applied-twice", _save_applied_twice, E.AdapterError, "applied twice"),
    ("save-a-made-up-result", lambda e: save_erased_adapter(copy.deepcopy(e.model), e.out, eraserlib.EraseResult(
        delta=e.result().delta)), E.AdapterError, "parameters_before"),
    # -- adapters and paths on disk -----------------------------------------------------------------
    ("adapter-dir-missing", lambda e: e.erase_adapter(adapter=e.scratch / "nowhere"), E.AdapterError,
     "does not exist"),
    ("adapter-no-config", lambda e: e.erase_adapter(adapter=e.copy_adapter(
        lambda p: (p / "adapter_config.json").unlink())), E.AdapterError, "adapter_config.json"),
    ("adapter-no-weights", lambda e: e.erase_adapter(adapter=e.copy_adapter(
        lambda p: (p / "adapter_model.safetensors").unlink())), E.AdapterError, "adapter_model.safetensors"),
    ("adapter-truncated", lambda e: e.erase_adapter(adapter=e.copy_adapter(_truncate)), E.AdapterError,
     "adapter_model.safetensors is not a valid safetensors file"),
    ("adapter-garbage", lambda e: e.erase_adapter(adapter=e.copy_adapter(
        lambda p: (p / "adapter_model.safetensors").write_bytes(b"\x00" * 64))), E.AdapterError,
     "not a valid safetensors file"),
    ("adapter-config-not-json", lambda e: e.erase_adapter(adapter=e.copy_adapter(
        lambda p: (p / "adapter_config.json").write_text("{oops"))), E.AdapterError, "not valid JSON"),
    ("adapter-of-another-base", _other_base_adapter, E.AdapterError, "does not fit this base model"),
    ("base-already-peft", lambda e: load_adapter(load_adapter(e.base(), e.facts.adapter), e.facts.adapter),
     E.AdapterError, "already carries a peft adapter"),
    ("out-is-source", lambda e: e.erase_adapter(out=e.facts.adapter), E.AdapterError, "source adapter"),
    ("out-inside-source", lambda e: e.erase_adapter(out=e.facts.adapter / "erased"), E.AdapterError,
     "source adapter"),
    ("out-not-empty", lambda e: e.erase_adapter(out=_occupied(e)), E.AdapterError, "not an empty directory"),
    ("out-a-file", lambda e: e.erase_adapter(out=_a_file(e)), E.AdapterError, "not a directory"),
    ("out-under-a-file", lambda e: e.erase_adapter(out=_a_file(e) / "erased"), E.AdapterError, "is a file"),
    ("out-read-only", _read_only, E.AdapterError, "Cannot write the erased adapter"),
    ("out-empty-string", lambda e: e.erase_adapter(out=""), E.AdapterError, "output directory is needed"),
    ("erase-adapter-bad-request", lambda e: e.erase_adapter(request=IR([_changed(e.data)])), E.InvalidRequestError,
     "not in train_data"),
    # -- the command line ---------------------------------------------------------------------------
    ("cli-forget-not-in-train", lambda e: e.cli(forget=e.jsonl("f.jsonl", [{"prompt": "the moon of x is",
                                                                          "completion": " y"}])),
     Exit(2), "row 1 of the forget file is not a row of the training file"),
    ("cli-forget-missing", lambda e: e.cli(forget=e.scratch / "nowhere.jsonl"), Exit(2), "forget file .* not exist"),
    ("cli-train-unknown-format", lambda e: e.cli(train=e.jsonl("train.txt", e.forget_rows())), Exit(2),
     "unknown extension '.txt'"),
    ("cli-train-no-text-columns", lambda e: e.cli(train=e.jsonl("t.jsonl", [{"question": "a", "answer": "b"}])),
     Exit(2), "needs a 'text' column"),
    ("cli-train-malformed", lambda e: e.cli(train=(e.scratch / "bad.jsonl", (e.scratch / "bad.jsonl").write_text(
        '{"text": "a"}\n{oops\n'))[0]), Exit(2), "cannot read the training file"),
    ("cli-train-empty", lambda e: e.cli(train=(e.scratch / "empty.jsonl", (e.scratch / "empty.jsonl").write_text(
        ""))[0]), Exit(2), "training file"),
    ("cli-text-not-a-string", lambda e: e.cli(train=e.jsonl("n.jsonl", [{"text": 5}])), Exit(2),
     "column 'text' must be text"),
    ("cli-batch-size-2.5", lambda e: e.cli("--batch-size=2.5"), Exit(2), "invalid int value: '2.5'"),
    ("cli-damping-negative", lambda e: e.cli("--damping=-1"), Exit(2), "damping must be"),
    ("cli-damping-a-word", lambda e: e.cli("--damping=lots"), Exit(2), "must be a number"),
    ("cli-unknown-solver", lambda e: e.cli("--solver=newton"), Exit(2), "Unknown solver"),
    ("cli-misspelt-option", lambda e: e.cli("--option=max_iteration=3"), Exit(2), "no option 'max_iteration'"),
    ("cli-option-without-value", lambda e: e.cli("--option=max_iterations"), Exit(2), "KEY=VALUE"),
    ("cli-out-under-a-file", lambda e: e.cli(out=_a_file(e) / "x"), Exit(4), "is a file"),
    ("cli-out-is-source", lambda e: e.cli(out=e.facts.adapter), Exit(4), "source adapter"),
    ("cli-adapter-without-weights", lambda e: e.cli(adapter=e.copy_adapter(
        lambda p: (p / "adapter_model.safetensors").unlink())), Exit(4), "no adapter weights"),
    ("cli-base-not-a-model", lambda e: e.cli(base=e.scratch), Exit(4), "no config.json"),
    ("cli-duplicate-row", lambda e: e.cli(train=_duplicated_train(e)), Exit(2), "occurs 2 time\\(s\\)"),
    ("cli-correct-lengths", lambda e: e.cli(command="correct", old=e.jsonl("o.jsonl", e.forget_rows(2)),
                                            new=e.jsonl("n.jsonl", e.forget_rows(1))), Exit(2), "2 rows and --new 1"),
    ("cli-correct-old-not-in-train", lambda e: e.cli(command="correct", old=e.jsonl("o.jsonl", [
        {"prompt": "a", "completion": " b"}]), new=e.jsonl("n.jsonl", e.forget_rows(1))), Exit(2),
     "row 1 of the old file is not a row"),
    ("cli-no-cuda", lambda e: pytest.skip("CUDA present") if torch.cuda.is_available() else e.cli("--device=cuda"),
     Exit(4), "CUDA is not available"),
    ("cli-missing-argument", lambda e: main(["erase", "--base", str(e.facts.base)]), Exit(2), "required"),
]


@pytest.fixture(scope="module")
def shared(tiny_facts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_facts.base))
    model = load_adapter(AutoModelForCausalLM.from_pretrained(str(tiny_facts.base), attn_implementation="eager"),
                         tiny_facts.adapter)
    return tiny_facts, model, tokenizer


def test_the_suite_is_large_enough():
    assert len(CASES) >= 80 and len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, run, expected, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(shared, tmp_path, capsys, name, run, expected, message):
    facts, model, tokenizer = shared
    env = Env(facts, model, tokenizer, tmp_path)
    source = directory_digest(facts.adapter)
    parameters = {k: p.detach().clone() for k, p in model.named_parameters()}
    if isinstance(expected, Exit):
        code = run(env)
        captured = capsys.readouterr()
        assert code == expected.code, captured.err
        assert __import__("re").search(message, captured.err), captured.err
        if code != 0:
            assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "error" if captured.out else True
    else:
        with pytest.raises(expected, match=message):
            run(env)
    assert directory_digest(facts.adapter) == source, "the source adapter must stay byte-identical"
    assert not env.out.exists(), "nothing may be written"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert all(torch.equal(parameters[k], p) for k, p in model.named_parameters()), "the model must not change"
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
