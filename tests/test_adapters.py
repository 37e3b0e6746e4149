"""Adapter round trip with peft: erase → save to a new directory → reload gives the same outputs."""

import json

import pytest
import torch

import eraserlib
from eraserlib.adapters import MANIFEST_NAME, directory_digest, erase_adapter, load_adapter, save_erased_adapter
from eraserlib.matching import example_digest
from eraserlib.toy.tiny_lora import TinyLoraConfig, build_base_model, build_model, language_model_loss, make_sequences
from eraserlib.training import TrainConfig, train

CONFIG = TinyLoraConfig(num_examples=64)


def _base():
    """The same frozen base model every time (seeded init), as a user would reload it from disk."""
    return build_base_model(CONFIG)


@pytest.fixture
def source_adapter(tmp_path):
    model = build_model(CONFIG)
    data = make_sequences(CONFIG)
    train(model, language_model_loss, data, TrainConfig(epochs=5, lr=1e-2, batch_size=32), progress=False)
    directory = tmp_path / "adapter"
    model.save_pretrained(str(directory))
    return directory, data


def test_round_trip_and_source_untouched(source_adapter, tmp_path):
    source, data = source_adapter
    before = directory_digest(source)
    output = tmp_path / "erased"
    result = erase_adapter(_base(), source, output, language_model_loss, data, eraserlib.InstanceRemoval(data[:3]),
                           solver="cg", damping=0.1, batch_size=32, progress=False)
    assert directory_digest(source) == before, "the source adapter must stay byte-identical"

    # In memory: the source adapter plus the delta.
    expected = load_adapter(_base(), source)
    eraserlib.apply_delta(expected, result.delta)
    # On disk: the saved erased adapter, reloaded by peft.
    reloaded = load_adapter(_base(), output, trainable=False)
    batch = torch.stack(data[:8])
    with torch.no_grad():
        assert torch.allclose(expected(input_ids=batch).logits, reloaded(input_ids=batch).logits, atol=1e-6)
        original = load_adapter(_base(), source)(input_ids=batch).logits
    assert not torch.allclose(original, reloaded(input_ids=batch).logits, atol=1e-6), "the erase changed nothing"

    manifest = json.loads((output / MANIFEST_NAME).read_text())
    assert manifest["request"] == {"kind": "instance_removal", "size": 3, "indices": [0, 1, 2],
                                   "examples_sha256": [example_digest(z) for z in data[:3]]}
    assert manifest["output_sha256"] == directory_digest(output, exclude=[MANIFEST_NAME])
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(manifest["output_sha256"])
    assert manifest["solver"] == "cg"
    assert manifest["source_adapter"]["sha256"] == before
    assert len(manifest["train_data_sha256"]) == 64 and manifest["num_train"] == len(data)
    assert manifest["diagnostics"]["hvp_count"] == result.diagnostics["hvp_count"]


def test_refuses_to_overwrite_the_source(source_adapter):
    source, data = source_adapter
    before = directory_digest(source)
    with pytest.raises(eraserlib.AdapterError, match="source adapter"):
        erase_adapter(_base(), source, source, language_model_loss, data, eraserlib.InstanceRemoval(data[:1]),
                      solver="cg", damping=0.1, progress=False)
    with pytest.raises(eraserlib.AdapterError, match="source adapter"):
        erase_adapter(_base(), source, source / "inside", language_model_loss, data,
                      eraserlib.InstanceRemoval(data[:1]), solver="cg", damping=0.1, progress=False)
    assert directory_digest(source) == before


def test_refuses_a_non_empty_target(source_adapter, tmp_path):
    source, data = source_adapter
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(eraserlib.AdapterError, match="not an empty directory"):
        erase_adapter(_base(), source, target, language_model_loss, data, eraserlib.InstanceRemoval(data[:1]),
                      solver="cg", damping=0.1, progress=False)
    assert (target / "precious.txt").read_text() == "keep me"


def test_failure_leaves_no_partial_directory(source_adapter, tmp_path, monkeypatch):
    source, data = source_adapter
    model = load_adapter(_base(), source)
    result = eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[:1]), solver="cg",
                             damping=0.1, progress=False)
    eraserlib.apply_delta(model, result.delta)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_erased_adapter(model, tmp_path / "out", result, source_dir=source)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_not_an_adapter_directory(tmp_path):
    with pytest.raises(eraserlib.AdapterError, match="adapter_config.json"):
        load_adapter(_base(), tmp_path)


def test_the_callers_base_model_is_left_as_given(source_adapter, tmp_path):
    """peft injects the adapter's layers into the base model; erase_adapter takes them out again."""
    source, data = source_adapter
    base = _base()
    base.lm_head.weight.requires_grad_(False)  # a flag of the caller's, kept
    modules = [(name, type(m)) for name, m in base.named_modules()]
    flags = {name: p.requires_grad for name, p in base.named_parameters()}
    batch = torch.stack(data[:4])
    with torch.no_grad():
        logits = base(input_ids=batch).logits
    erase_adapter(base, source, tmp_path / "erased", language_model_loss, data, eraserlib.InstanceRemoval(data[:2]),
                  solver="cg", damping=0.1, progress=False)
    assert [(name, type(m)) for name, m in base.named_modules()] == modules
    assert {name: p.requires_grad for name, p in base.named_parameters()} == flags
    assert not hasattr(base, "peft_config")
    with torch.no_grad():
        assert torch.equal(base(input_ids=batch).logits, logits)
    load_adapter(base, source)  # and it takes an adapter again


def test_output_paths_tilde_umask_and_an_empty_target(source_adapter, tmp_path, monkeypatch):
    import os

    source, data = source_adapter
    monkeypatch.setenv("HOME", str(tmp_path))
    old = os.umask(0o027)
    try:
        erase_adapter(_base(), source, "~/erased", language_model_loss, data, eraserlib.InstanceRemoval(data[:1]),
                      solver="cg", damping=0.1, progress=False)
    finally:
        os.umask(old)
    output = tmp_path / "erased"
    assert (output / MANIFEST_NAME).is_file() and not (tmp_path / "~").exists()
    assert output.stat().st_mode & 0o777 == 0o750, "the umask's mode, not mkdtemp's 0700"
    assert (output / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o640

    empty = tmp_path / "made-by-the-user"
    empty.mkdir()
    inode = empty.stat().st_ino
    erase_adapter(_base(), source, empty, language_model_loss, data, eraserlib.InstanceRemoval(data[:1]),
                  solver="cg", damping=0.1, progress=False)
    assert empty.stat().st_ino == inode and (empty / MANIFEST_NAME).is_file(), "written into, not replaced"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_bf16_adapter_is_refused_or_upcast(source_adapter):
    source, data = source_adapter
    model = load_adapter(_base(), source)
    result = eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[:2]), solver="cg",
                             damping=0.1, progress=False)
    small = {k: 1e-3 * v for k, v in result.delta.items()}  # an update small next to the weights, as they are
    model.to(torch.bfloat16)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    with pytest.raises(eraserlib.PrecisionError, match=r"\d+% of the entries rounded away.*upcast=True"):
        eraserlib.apply_delta(model, small)
    assert all(torch.equal(before[k], p) for k, p in model.named_parameters()), "nothing changed"
    eraserlib.apply_delta(model, small, upcast=True)
    for name, change in small.items():
        parameter = dict(model.named_parameters())[name]
        assert parameter.dtype == torch.float32
        assert torch.allclose(parameter - before[name].float(), change, atol=1e-7)
