"""The removal mode for memorised examples (erase(..., removal="match_heldout", heldout=...))."""

import pytest
import torch

import eraserlib
from eraserlib.errors import NegligibleUpdateWarning
from eraserlib.metrics import auc
from eraserlib.toy.convex import fit, logistic_loss, make_problem, parameters_of

WEIGHT_DECAY = 1e-3


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


@pytest.fixture(scope="module")
def memorised():
    """Few examples in many dimensions, weak L2: the fit memorises its training examples (near-zero loss)."""
    examples = make_problem(100, num_features=40, weight_decay=WEIGHT_DECAY, seed=7).examples
    data, heldout = examples[:60], examples[60:]
    model = fit(data, WEIGHT_DECAY)
    return model, data, heldout, eraserlib.InstanceRemoval(data[:5])


def _losses(model, examples):
    with torch.no_grad():
        return [float(logistic_loss(model, collate([z]))) for z in examples]


def _mean(values):
    return sum(values) / len(values)


def _membership_auc(model, removed, heldout):
    losses = _losses(model, removed) + _losses(model, heldout)
    return auc([1] * len(removed) + [0] * len(heldout), [-v for v in losses])  # low loss → "member"


def test_removed_examples_reach_the_heldout_loss(memorised):
    model, data, heldout, request = memorised
    removed, retained = list(request.examples), data[5:]
    before = {"removed": _mean(_losses(model, removed)), "heldout": _mean(_losses(model, heldout)),
              "retained": _mean(_losses(model, retained))}
    assert before["removed"] < 0.2 * before["heldout"]  # memorised
    assert _membership_auc(model, removed, heldout) > 0.7
    with pytest.warns(NegligibleUpdateWarning, match="fit almost exactly"):  # the safety rail says it
        plain = eraserlib.erase(model, logistic_loss, data, request, solver="cg", weight_decay=WEIGHT_DECAY,
                                collate_fn=collate, curvature="gauss_newton", progress=False)
    result = eraserlib.erase(model, logistic_loss, data, request, solver="cg", weight_decay=WEIGHT_DECAY,
                             collate_fn=collate, curvature="gauss_newton", removal="match_heldout", heldout=heldout,
                             steps=4, step_options={"retained_increase": 0.05}, progress=False)
    assert torch.equal(parameters_of(model), parameters_of(fit(data, WEIGHT_DECAY)))  # the model is untouched
    diagnostics = result.diagnostics
    assert diagnostics["removal_stop_reason"] == "target", diagnostics
    erased = fit(data, WEIGHT_DECAY)
    eraserlib.apply_delta(erased, result.delta)
    after = {"removed": _mean(_losses(erased, removed)), "heldout": _mean(_losses(erased, heldout)),
             "retained": _mean(_losses(erased, retained))}
    assert after["removed"] == pytest.approx(after["heldout"], rel=0.05)
    assert after["removed"] == pytest.approx(diagnostics["removed_loss"], rel=1e-6)
    # the one-step influence update stays far below: it is not what removal of memorised data needs
    once = fit(data, WEIGHT_DECAY)
    eraserlib.apply_delta(once, plain.delta)
    assert _mean(_losses(once, removed)) < 0.5 * after["removed"]
    # the retained loss rose within its budget (over R' at θ̂, which includes (wd/2)‖θ‖²)
    assert diagnostics["retained_objective"] <= diagnostics["path"][0]["retained"] + 0.05
    assert abs(_membership_auc(erased, removed, heldout) - 0.5) < abs(_membership_auc(model, removed, heldout) - 0.5)


def test_a_tight_retained_budget_stops_the_removal_early(memorised):
    """Removing near-copies of retained examples must raise the retained loss: the budget binds first."""
    _, data, heldout, _ = memorised
    generator = torch.Generator().manual_seed(8)
    copies = [(x + 1e-2 * torch.randn(x.shape, generator=generator, dtype=x.dtype), y) for x, y in data[:5]]
    data = data + copies
    model = fit(data, WEIGHT_DECAY)
    request = eraserlib.InstanceRemoval(copies)
    result = eraserlib.erase(model, logistic_loss, data, request, solver="cg", weight_decay=WEIGHT_DECAY,
                             collate_fn=collate, curvature="gauss_newton", removal="match_heldout", heldout=heldout,
                             step_options={"retained_increase": 1e-4}, progress=False)
    diagnostics = result.diagnostics
    assert diagnostics["removal_stop_reason"] == "retained_budget"
    start = diagnostics["path"][0]["retained"]
    assert start < diagnostics["retained_objective"] <= start + 1e-4
    assert diagnostics["removed_loss"] < diagnostics["heldout_loss"]


def test_removal_arguments_are_checked(memorised):
    model, data, heldout, request = memorised
    arguments = dict(solver="cg", weight_decay=WEIGHT_DECAY, collate_fn=collate, progress=False)
    with pytest.raises(ValueError, match="needs heldout="):
        eraserlib.erase(model, logistic_loss, data, request, removal="match_heldout", **arguments)
    with pytest.raises(ValueError, match="heldout= is used by removal='match_heldout' only"):
        eraserlib.erase(model, logistic_loss, data, request, heldout=heldout, **arguments)
    with pytest.raises(ValueError, match="removal must be None or one of"):
        eraserlib.erase(model, logistic_loss, data, request, removal="forget", heldout=heldout, **arguments)
    correction = eraserlib.ResponseCorrection(data[:1], [(data[0][0], 1 - data[0][1])])
    with pytest.raises(eraserlib.InvalidRequestError, match="for InstanceRemoval requests"):
        eraserlib.erase(model, logistic_loss, data, correction, removal="match_heldout", heldout=heldout, **arguments)
