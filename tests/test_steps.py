"""Re-linearised steps (erase(..., steps=k)) against exact retraining on the convex problem, and steps=1 as today."""

import math

import pytest
import torch

import eraserlib
from eraserlib.objective import TrainingObjective
from eraserlib.solvers import InvalidOptionsError, dense_hessian
from eraserlib.steps import StepOptions
from eraserlib.toy.convex import fit, logistic_loss, make_problem, parameters_of

N, WEIGHT_DECAY = 400, 3e-2


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


@pytest.fixture(scope="module")
def cases():
    """A 10% removal and a 5% label correction: far enough from θ̂ that one step is off by several per cent."""
    data = make_problem(N, num_features=8, weight_decay=WEIGHT_DECAY, seed=4).examples
    model = fit(data, WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(5)
    removed = torch.randperm(N, generator=generator)[:40].tolist()
    flipped = torch.randperm(N, generator=generator)[:20].tolist()
    corrupted = [(x, 1 - y) if i in flipped else (x, y) for i, (x, y) in enumerate(data)]
    return {
        "instance_removal": (model, data, eraserlib.InstanceRemoval([data[i] for i in removed]),
                             parameters_of(fit([z for i, z in enumerate(data) if i not in removed], WEIGHT_DECAY))),
        "response_correction": (fit(corrupted, WEIGHT_DECAY), corrupted,
                                eraserlib.ResponseCorrection([corrupted[i] for i in flipped], [data[i] for i in flipped]),
                                parameters_of(model)),
    }


def _erase(model, data, request, **arguments):
    arguments = {"solver": "cg", "weight_decay": WEIGHT_DECAY, "collate_fn": collate, "batch_size": 50,
                 "progress": False, **arguments}
    return eraserlib.erase(model, logistic_loss, data, request, **arguments)


def _flat(delta):
    return torch.cat([v.reshape(-1) for v in delta.values()]).double()


@pytest.mark.parametrize("kind", ["instance_removal", "response_correction"])
@pytest.mark.parametrize("curvature", ["hessian", "gauss_newton"])
def test_steps_converge_to_the_retrained_optimum(cases, kind, curvature):
    model, data, request, retrained = cases[kind]
    before = parameters_of(model)
    truth = retrained - before
    one = _flat(_erase(model, data, request, curvature=curvature).delta)
    assert float((one - truth).norm() / truth.norm()) > 0.02  # one step is visibly short of retraining here
    result = _erase(model, data, request, curvature=curvature, steps=4)
    error = float((_flat(result.delta) - truth).norm() / truth.norm())
    assert error <= 0.01, error
    history = result.diagnostics["corrected_objective"]
    assert all(later < earlier for earlier, later in zip(history, history[1:])), history
    assert 2 <= result.diagnostics["steps_taken"] <= 4
    # the corrected objective at the end equals R' at the retrained optimum, to the solver's accuracy
    assert torch.equal(parameters_of(model), before)  # erase leaves the model as it was
    counts = result.diagnostics["step_counts"]
    assert counts["gradient_count"] > 0 and counts["hvp_count"] > 0 and counts["forward_count"] >= len(history)
    assert result.diagnostics["forward_count"] >= counts["forward_count"]


def test_one_step_is_the_linear_solve(cases):
    """steps=1 (and the default) is (H + λI)⁻¹ b exactly, with H and b formed independently here."""
    model, data, request, _ = cases["instance_removal"]
    damping = 0.01
    default = _erase(model, data, request, solver="exact", damping=damping)
    one = _erase(model, data, request, solver="exact", damping=damping, steps=1)
    assert all(torch.equal(default.delta[k], one.delta[k]) for k in default.delta)
    assert "corrected_objective" not in one.diagnostics
    objective = TrainingObjective(model, logistic_loss, data, weight_decay=WEIGHT_DECAY, batch_size=N,
                                  collate_fn=collate)
    with objective.evaluation():
        hessian = dense_hessian(objective)
        b = request.right_hand_side(objective).double()
    expected = torch.linalg.solve(hessian + damping * torch.eye(len(b), dtype=torch.float64), b)
    assert torch.allclose(_flat(one.delta), expected, rtol=1e-5, atol=1e-9)


def test_line_search_evaluates_a_fixed_subsample(cases):
    model, data, request, retrained = cases["instance_removal"]
    result = _erase(model, data, request, steps=3, step_options={"evaluation_examples": 120})
    assert result.diagnostics["evaluation_examples"] == 120
    assert result.diagnostics["corrected_examples"] == N - 40
    truth = retrained - parameters_of(model)
    assert float((_flat(result.delta) - truth).norm() / truth.norm()) <= 0.02  # the gradients use all the data


def test_a_first_step_that_raises_the_corrected_objective_is_rejected(cases):
    """At a non-stationary θ̂, −b is not ∇R': the first step may go uphill; it is then skipped, not taken."""
    model, data, request, retrained = cases["instance_removal"]
    shifted = fit(data, WEIGHT_DECAY)
    with torch.no_grad():
        shifted.linear.bias.add_(0.5)  # far from the optimum along a direction b barely sees
    result = _erase(shifted, data, request, steps=6)
    assert result.diagnostics["step_lengths"][0] == 0.0
    history = result.diagnostics["corrected_objective"]
    assert all(later < earlier for earlier, later in zip(history, history[1:]))
    truth = retrained - parameters_of(shifted)
    assert float((_flat(result.delta) - truth).norm() / truth.norm()) <= 0.01


@pytest.mark.parametrize("steps,error", [(0, ValueError), (2.5, ValueError), (True, ValueError)])
def test_bad_steps(cases, steps, error):
    model, data, request, _ = cases["instance_removal"]
    with pytest.raises(error, match="steps must be a positive integer"):
        _erase(model, data, request, steps=steps)


def test_bad_step_options(cases):
    model, data, request, _ = cases["instance_removal"]
    with pytest.raises(InvalidOptionsError, match="(?s)no field 'line_search'.*evaluation_examples"):
        _erase(model, data, request, steps=2, step_options={"line_search": True})
    with pytest.raises(InvalidOptionsError, match="backtrack_factor"):
        StepOptions(backtrack_factor=1.5)
    assert "evaluation_examples" in StepOptions.help() and not math.isnan(StepOptions().tolerance)
