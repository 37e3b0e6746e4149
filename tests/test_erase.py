"""Bad input: each gets a clear error naming the problem, and nothing changes."""

import math

import pytest
import torch
from torch import nn

import eraserlib
from eraserlib.toy.convex import fit, logistic_loss, make_problem


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


@pytest.fixture(scope="module")
def convex():
    problem = make_problem(100, num_features=4, seed=2)
    return fit(problem.examples, problem.weight_decay), problem


def _erase(convex, request, **arguments):
    model, problem = convex
    arguments = {"solver": "cg", "weight_decay": problem.weight_decay, "collate_fn": collate, "progress": False,
                 **arguments}
    return eraserlib.erase(model, logistic_loss, problem.examples, request, **arguments)


def test_mismatched_lengths(convex):
    _, problem = convex
    with pytest.raises(eraserlib.InvalidRequestError, match="2 old and 1 new"):
        eraserlib.QueryModification(problem.examples[:2], problem.examples[:1])


@pytest.mark.parametrize("make", [lambda: eraserlib.InstanceRemoval([]),
                                  lambda: eraserlib.ResponseCorrection([], [])])
def test_empty_request(make):
    with pytest.raises(eraserlib.InvalidRequestError, match="empty"):
        make()


def test_removing_everything(convex):
    _, problem = convex
    with pytest.raises(eraserlib.InvalidRequestError, match="at least one example must remain"):
        _erase(convex, eraserlib.InstanceRemoval(problem.examples))


def test_unknown_solver(convex):
    _, problem = convex
    with pytest.raises(ValueError, match="Unknown solver 'newton'.*cg"):
        _erase(convex, eraserlib.InstanceRemoval(problem.examples[:1]), solver="newton")


@pytest.mark.parametrize("damping", [-1.0, math.nan, "lots"])
def test_bad_damping(convex, damping):
    _, problem = convex
    with pytest.raises(ValueError, match="damping must be"):
        _erase(convex, eraserlib.InstanceRemoval(problem.examples[:1]), damping=damping)


def test_not_a_request(convex):
    with pytest.raises(eraserlib.InvalidRequestError, match="InstanceRemoval"):
        _erase(convex, ["not", "a", "request"])


def test_no_trainable_parameters(convex):
    model, problem = convex
    frozen = fit(problem.examples, problem.weight_decay)
    frozen.requires_grad_(False)
    with pytest.raises(eraserlib.NoTrainableParametersError, match="requires_grad"):
        eraserlib.erase(frozen, logistic_loss, problem.examples, eraserlib.InstanceRemoval(problem.examples[:1]),
                        collate_fn=collate, progress=False)


def test_non_finite_gradient(convex):
    model, problem = convex
    poisoned = [(torch.full_like(x, math.inf), y) for x, y in problem.examples[:1]]
    with pytest.raises(eraserlib.NonFiniteError, match="non-finite"):
        eraserlib.erase(model, logistic_loss, problem.examples, eraserlib.ResponseCorrection(problem.examples[:1], poisoned),
                        collate_fn=collate, progress=False)


def test_negative_curvature_is_named(convex):
    """A concave loss has no minimum: CG must say so instead of returning garbage."""
    model, problem = convex

    def concave(m, batch):
        return -logistic_loss(m, batch)

    with pytest.raises(eraserlib.NegativeCurvatureError, match="damping"):
        eraserlib.erase(model, concave, problem.examples, eraserlib.InstanceRemoval(problem.examples[:1]), solver="cg",
                        damping=0.0, collate_fn=collate, progress=False)


def test_diverging_stochastic_solver_is_named(convex):
    model, problem = convex

    def concave(m, batch):
        return -logistic_loss(m, batch)

    with pytest.raises(eraserlib.SolverDivergedError, match="damping"):
        eraserlib.erase(model, concave, problem.examples, eraserlib.InstanceRemoval(problem.examples[:1]),
                        solver="llmeraser", damping=0.0, collate_fn=collate, progress=False,
                        options={"top_eigenvalue": 1.0})


def test_exact_refuses_large_problems(convex):
    _, problem = convex
    with pytest.raises(eraserlib.ProblemTooLargeError, match="max_parameters"):
        _erase(convex, eraserlib.InstanceRemoval(problem.examples[:1]), solver="exact", options={"max_parameters": 3})


def test_erase_does_not_modify_the_model(convex):
    model, problem = convex
    before = [p.detach().clone() for p in model.parameters()]
    result = _erase(convex, eraserlib.InstanceRemoval(problem.examples[:3]))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert result.diagnostics["delta_norm"] > 0


def test_apply_delta_rejects_unknown_names_and_changes_nothing(convex):
    model, _ = convex
    before = [p.detach().clone() for p in model.parameters()]
    good = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    with pytest.raises(KeyError, match="nonexistent"):
        eraserlib.apply_delta(model, {**good, "nonexistent.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="NaN or Inf"):
        eraserlib.apply_delta(model, {**good, "linear.bias": torch.tensor([math.nan], dtype=torch.float64)})
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_same_seed_same_answer(convex):
    _, problem = convex
    request = eraserlib.InstanceRemoval(problem.examples[:3])
    first = _erase(convex, request, solver="llmeraser", seed=3)
    second = _erase(convex, request, solver="llmeraser", seed=3)
    other = _erase(convex, request, solver="llmeraser", seed=4)
    assert all(torch.equal(first.delta[k], second.delta[k]) for k in first.delta)
    assert not all(torch.equal(first.delta[k], other.delta[k]) for k in first.delta)


def test_diagnostics_are_complete(convex):
    _, problem = convex
    result = _erase(convex, eraserlib.InstanceRemoval(problem.examples[:3]), solver="llmeraser")
    for key in ("solver", "hvp_count", "wall_time_s", "residual_history", "delta_norm", "stop_reason", "damping"):
        assert key in result.diagnostics, key


def test_spectrum_estimate_size_is_a_parameter(convex):
    """The Lanczos run behind "auto" damping costs iterations × sample/batch HVPs; callers can shrink it."""
    _, problem = convex
    request = eraserlib.InstanceRemoval(problem.examples[:3])
    common = {"solver": "llmeraser", "batch_size": 10, "options": {"max_steps": 32, "first_window": 8, "tolerance": 0.0}}
    default = _erase(convex, request, **common)
    small = _erase(convex, request, spectrum_iterations=3, spectrum_sample_size=10, **common)
    assert default.diagnostics["hvp_count"] - small.diagnostics["hvp_count"] == 5 * 4 - 3  # p=5: 5 Lanczos steps of 4 batches vs 3 of 1
