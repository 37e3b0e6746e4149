"""Safety rails (eraserlib.safety): silent on a correct erase, loud on a wrecking update and on memorised examples."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import eraserlib
from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences
from eraserlib.training import TrainConfig, train

CONFIG = TinyLoraConfig(num_examples=64)


@pytest.fixture(scope="module")
def trained():
    model = build_model(CONFIG)
    data = make_sequences(CONFIG)
    train(model, language_model_loss, data, TrainConfig(epochs=5, lr=1e-2, batch_size=32), progress=False)
    return model, data


def _erase(model, data, request, **arguments):
    return eraserlib.erase(model, language_model_loss, data, request, solver="exact", batch_size=32, **arguments)


def test_a_correct_erase_is_silent_and_barely_moves_the_retained_loss(trained):
    model, data = trained
    before = [p.detach().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", eraserlib.EraseWarning)
        report = _erase(model, data, eraserlib.InstanceRemoval(data[:4])).diagnostics["safety"]
    assert report["fired"] == [] and report["messages"] == {}
    assert report["request_loss"]["after"] > report["request_loss"]["before"]  # the removed examples' loss rises
    # The measurement behind the retained rail's threshold (0.1 nats): a correct erase moves it by thousandths.
    assert abs(report["retained_loss"]["after"] - report["retained_loss"]["before"]) < 0.01
    assert report["retained_loss"]["examples"] == 60 and 0 < report["relative_update"] < 1
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters())), "the rails put θ̂ back exactly"


def _blobs():
    """A tanh MLP that fits 60 points of three classes almost exactly (loss ≈ 0.02): shared parameters, memorised labels."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=generator)
    data = list(zip(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))
    train(model, _classifier_loss, data, TrainConfig(epochs=200, lr=3e-2, batch_size=60), collate_fn=_collate,
          progress=False)
    return model, data


def _classifier_loss(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


@pytest.mark.parametrize("damping", ["auto", 0.0])
def test_a_harmful_correction_fires_the_retained_rail(damping):
    """Flipping 4 labels of a model that fits its data exactly: the update wrecks the 56 untouched examples
    (with "auto" damping too: the quadratic model of a memorised fit does not hold that far), and the rail says so."""
    model, data = _blobs()
    request = eraserlib.ResponseCorrection(data[:4], [(x, (y + 1) % 3) for x, y in data[:4]])
    options = {"options": {"allow_indefinite": True}} if damping == 0.0 else {}
    with pytest.warns(eraserlib.RetainedLossWarning, match="harms what it should keep"):
        result = eraserlib.erase(model, _classifier_loss, data, request, solver="exact", damping=damping,
                                 collate_fn=_collate, **options)
    report = result.diagnostics["safety"]
    assert report["fired"] == ["retained_loss_rise"] and report["retained_loss"]["examples"] == 56
    assert report["retained_loss"]["after"] - report["retained_loss"]["before"] > 1.0


def test_an_indefinite_system_is_refused_by_exact(trained):
    model, data = trained
    with pytest.raises(eraserlib.NegativeCurvatureError, match="allow_indefinite"):
        _erase(model, data, eraserlib.InstanceRemoval(data[:4]), damping=0.0)


class LookupTable(nn.Module):
    """One row of logits per training example: a model that can only memorise."""

    def __init__(self, n, classes):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n, classes))


def _lookup_loss(model, batch):
    ids, labels = batch
    return nn.functional.cross_entropy(model.logits[ids], labels)


def _collate(examples):
    return torch.stack([i for i, _ in examples]), torch.stack([y for _, y in examples])


def test_memorised_examples_fire_the_rail_and_retraining_shows_why():
    """Memorised facts: the update leaves their loss near 0, retraining without them puts it at ln C."""
    n, classes = 20, 5
    data = [(torch.tensor(i), torch.tensor(i % classes)) for i in range(n)]
    model = LookupTable(n, classes)
    train(model, _lookup_loss, data, TrainConfig(epochs=400, lr=0.1, batch_size=n, max_grad_norm=None),
          collate_fn=_collate, progress=False)
    request = eraserlib.InstanceRemoval(data[:3])
    with pytest.warns(eraserlib.NegligibleUpdateWarning, match="cannot remove memorised examples.*[Rr]etrain"):
        result = eraserlib.erase(model, _lookup_loss, data, request, solver="exact", collate_fn=_collate)
    report = result.diagnostics["safety"]
    assert "memorised" in report["fired"] and report["request_loss"]["after"] < 0.04
    retrained = LookupTable(n, classes)
    train(retrained, _lookup_loss, request.apply_to(data), TrainConfig(epochs=400, lr=0.1, batch_size=n,
                                                                        max_grad_norm=None),
          collate_fn=_collate, progress=False)
    with torch.no_grad():
        retrained_loss = float(_lookup_loss(retrained, _collate(data[:3])))
    assert retrained_loss == pytest.approx(float(torch.log(torch.tensor(float(classes)))), rel=1e-6)


def test_rails_can_be_tuned_or_turned_off(trained):
    model, data = trained
    request = eraserlib.InstanceRemoval(data[:4])
    assert "safety" not in _erase(model, data, request, safety=False).diagnostics
    small = _erase(model, data, request, safety={"sample_size": 8}).diagnostics["safety"]
    assert small["retained_loss"]["examples"] == 8 and small["thresholds"]["sample_size"] == 8
