"""Baselines on a model small enough to check by hand: a linear regression with squared loss."""

import pytest
import torch
from torch import nn

from eraserlib import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.baselines import SISA, finetune_on_corrected, gradient_ascent
from eraserlib.errors import InvalidRequestError
from eraserlib.training import TrainConfig, train

CONFIG = TrainConfig(epochs=3, lr=0.05, batch_size=4, seed=0)


def squared_loss(model, batch):
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean()


def make_model():
    torch.manual_seed(0)
    return nn.Linear(2, 1)


def collate(examples):
    return torch.tensor([e[0] for e in examples]), torch.tensor([e[1] for e in examples])


def dataset(n=24):
    generator = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 2, generator=generator)
    # hashable examples: ((x1, x2), y), as the data layer's frozen dataclasses are
    return [((float(a), float(b)), float(2 * a - b)) for a, b in xs]


def loss_value(model, examples):
    with torch.no_grad():
        return float(squared_loss(model, collate(examples)))


def parameters(model):
    return [p.detach().clone() for p in model.parameters()]


def test_gradient_ascent_raises_the_loss_of_the_forgotten_examples():
    data = dataset()
    model = make_model()
    train(model, squared_loss, data, CONFIG, collate_fn=collate, progress=False)
    forget = data[:4]
    before = loss_value(model, forget)
    result = gradient_ascent(model, squared_loss, forget, steps=5, lr=0.05, batch_size=4, collate_fn=collate)
    assert result["steps"] == 5 and len(result["losses"]) == 5
    assert loss_value(model, forget) > before


def test_finetune_on_corrected_lowers_the_loss_of_the_new_examples():
    data = dataset()
    model = make_model()
    train(model, squared_loss, data, CONFIG, collate_fn=collate, progress=False)
    new = [(x, y + 5.0) for x, y in data[:4]]
    before = loss_value(model, new)
    finetune_on_corrected(model, squared_loss, new, TrainConfig(epochs=5, lr=0.05, batch_size=4), collate_fn=collate)
    assert loss_value(model, new) < before


def test_sisa_retrains_only_the_shards_a_removal_touches():
    data = dataset()
    sisa = SISA(make_model, squared_loss, num_shards=3, config=CONFIG, collate_fn=collate, seed=0).fit(data)
    assert sorted(e for shard in sisa.shards for e in shard) == sorted(data)  # a partition
    assert [len(s) for s in sisa.shards] == [8, 8, 8]
    before = [parameters(m) for m in sisa.models]
    victim = sisa.shards[1][:2]
    info = sisa.unlearn(InstanceRemoval(victim))
    assert info["affected_shards"] == [1] and info["retrained_examples"] == 6
    assert sisa.train_count == [1, 2, 1]
    assert all(e not in sisa.shards[1] for e in victim)
    after = [parameters(m) for m in sisa.models]
    for s in (0, 2):  # untouched shards keep their models exactly
        assert all(torch.equal(a, b) for a, b in zip(before[s], after[s]))
    assert not all(torch.equal(a, b) for a, b in zip(before[1], after[1]))
    # retraining shard 1 is retraining from scratch on its remaining data, same seed
    fresh = make_model()
    train(fresh, squared_loss, sisa.shards[1], TrainConfig(**{**CONFIG.to_dict(), "seed": CONFIG.seed + 1}),
          collate_fn=collate, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(parameters(fresh), after[1]))


@pytest.mark.parametrize("request_type", [QueryModification, ResponseCorrection])
def test_sisa_substitutions_replace_examples_in_their_shards(request_type):
    data = dataset()
    sisa = SISA(make_model, squared_loss, num_shards=4, config=CONFIG, collate_fn=collate, seed=1).fit(data)
    old = [sisa.shards[0][0], sisa.shards[2][3]]
    new = [(x, y + 1.0) for x, y in old]
    info = sisa.unlearn(request_type(old, new))
    assert info["affected_shards"] == [0, 2]
    assert sisa.train_count == [2, 1, 2, 1]
    assert new[0] in sisa.shards[0] and new[1] in sisa.shards[2]
    assert old[0] not in sisa.shards[0]


def test_sisa_rejects_examples_it_never_saw():
    data = dataset()
    sisa = SISA(make_model, squared_loss, num_shards=2, config=CONFIG, collate_fn=collate).fit(data)
    with pytest.raises(InvalidRequestError, match="SISA request example 0 is not in train_data"):
        sisa.unlearn(InstanceRemoval([((9.0, 9.0), 0.0)]))


def test_sisa_drops_a_shard_emptied_by_removals():
    data = dataset(6)
    sisa = SISA(make_model, squared_loss, num_shards=3, config=CONFIG, collate_fn=collate).fit(data)
    sisa.unlearn(InstanceRemoval(list(sisa.shards[2])))
    assert len(sisa.models) == 2
