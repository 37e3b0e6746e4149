"""The gradient certificate on the convex problem, where the corrected optimum is known exactly."""

import pytest
import torch

import eraserlib
from eraserlib.certificate import gradient_certificate
from eraserlib.toy.convex import fit, logistic_loss, make_problem, parameters_of

N, K, WEIGHT_DECAY = 300, 15, 3e-2


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


@pytest.fixture(scope="module")
def removal():
    data = make_problem(N, num_features=6, weight_decay=WEIGHT_DECAY, seed=3).examples
    model = fit(data, WEIGHT_DECAY)
    removed = set(torch.randperm(N, generator=torch.Generator().manual_seed(0))[:K].tolist())
    retained = [z for i, z in enumerate(data) if i not in removed]
    request = eraserlib.InstanceRemoval([data[i] for i in sorted(removed)])
    return model, data, retained, request


def certificate(model, retained, delta):
    return gradient_certificate(model, logistic_loss, retained, delta, weight_decay=WEIGHT_DECAY,
                                collate_fn=collate, batch_size=64)


def reference_gradient_norm(model, retained):
    """‖(1/n') Σ ∇ℓ + wd·θ‖ in one float64 autograd call over the whole retained set."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = logistic_loss(model, collate(retained)) + 0.5 * WEIGHT_DECAY * sum((p * p).sum() for p in params)
    return float(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).norm())


def test_the_exact_erase_of_a_removal_nearly_zeroes_the_corrected_gradient(removal):
    model, data, retained, request = removal
    before = parameters_of(model)
    result = eraserlib.erase(model, logistic_loss, data, request, solver="exact", damping=0.0,
                             weight_decay=WEIGHT_DECAY, collate_fn=collate, batch_size=64, progress=False)
    found = certificate(model, retained, result)
    assert found.gradient_norm == pytest.approx(reference_gradient_norm(model, retained), rel=1e-10)
    assert found.gradient_norm > 1e-3  # the request does pull: θ̂ is not a stationary point of R'
    # the step solves with the Hessian of the old objective R, not of R': its residual is of
    # the order of the share removed, k/n = 5%, far below 1 (no update)
    assert found.ratio < 2 * K / N
    assert found.num_examples == N - K and found.weight_decay == WEIGHT_DECAY
    assert torch.equal(parameters_of(model), before)  # applied for the pass only, restored bit for bit
    # the exactly retrained optimum is stationary: its certificate is at machine precision
    truth = parameters_of(fit(retained, WEIGHT_DECAY)) - before
    names = [name for name, _ in model.named_parameters()]
    exact = {name: truth[:-1].reshape(1, -1) if name.endswith("weight") else truth[-1:] for name in names}
    assert certificate(model, retained, exact).ratio < 1e-8
    # the opposite update moves away from the corrected optimum
    backwards = {name: -change for name, change in result.delta.items()}
    assert certificate(model, retained, backwards).ratio > 1.5


def test_a_zero_update_gives_exactly_one_and_leaves_the_parameters_alone(removal):
    model, _, retained, _ = removal
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    zero = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    found = certificate(model, retained, zero)
    assert found.ratio == 1.0 and found.gradient_norm == found.gradient_norm_after
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_parameters_are_restored_when_the_second_pass_fails(removal):
    model, _, retained, _ = removal
    before = parameters_of(model)
    calls = []

    def failing_loss(model, batch):
        calls.append(1)
        if len(calls) > 1:  # the pass with Δ applied
            raise RuntimeError("boom")
        return logistic_loss(model, batch)

    shift = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"):
        gradient_certificate(model, failing_loss, retained, shift, weight_decay=WEIGHT_DECAY, collate_fn=collate,
                             batch_size=len(retained))
    assert torch.equal(parameters_of(model), before)


def test_bad_inputs_are_refused(removal):
    model, _, retained, _ = removal
    with pytest.raises(ValueError, match="empty"):
        certificate(model, [], {})
    with pytest.raises(KeyError, match="does not have"):
        certificate(model, retained, {"nope": torch.zeros(1)})


def test_a_known_gradient_norm_skips_the_first_pass_and_gives_the_same_certificate(removal):
    model, data, retained, request = removal
    result = eraserlib.erase(model, logistic_loss, data, request, solver="exact", damping=0.0,
                             weight_decay=WEIGHT_DECAY, collate_fn=collate, batch_size=64, progress=False)
    full = certificate(model, retained, result)
    passes = []
    counted = lambda model, batch: passes.append(len(batch[0])) or logistic_loss(model, batch)  # noqa: E731
    shared = gradient_certificate(model, counted, retained, result, weight_decay=WEIGHT_DECAY, collate_fn=collate,
                                  batch_size=64, gradient_norm=full.gradient_norm)
    assert shared == full
    assert sum(passes) == len(retained)  # one pass over D', not two
