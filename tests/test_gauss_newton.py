"""Gauss–Newton curvature: the product against a dense Jᵀ H_out J, against the Hessian where they coincide,
the fallback between the two ways to form J v, the dense matrix as the reference of the iterative solvers."""

import pytest
import torch
from torch import nn

import eraserlib
from eraserlib.curvature import GaussNewtonProduct
from eraserlib.losses import CausalLMCollator, causal_lm_loss
from eraserlib.objective import TrainingObjective, trainable_parameters
from eraserlib.solvers import dense_gauss_newton, dense_hessian
from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences
from eraserlib.training import TrainConfig, train


def _dense_reference(model, loss_fn, batch):
    """Jᵀ H_out J formed explicitly: J by torch.autograd.functional.jacobian, H_out by torch.autograd.functional.hessian."""
    names, params = trainable_parameters(model)
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    frozen = {k: v for k, v in model.named_parameters() if k not in names}

    def outputs_of(theta):
        pieces = dict(zip(names, (c.view(s) for c, s in zip(torch.split(theta, [s.numel() for s in shapes]), shapes))))

        class Bound(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, *args, **kwargs):
                return torch.func.functional_call(model, {**frozen, **pieces}, args, kwargs)

        return loss_fn.outputs(Bound(), batch)

    out = outputs_of(flat)
    jacobian = torch.autograd.functional.jacobian(outputs_of, flat).reshape(out.numel(), -1).double()
    h_out = torch.autograd.functional.hessian(lambda o: loss_fn.loss_of_outputs(o.view_as(out), batch),
                                              out.detach().reshape(-1)).double()
    return jacobian.T @ h_out @ jacobian


@pytest.fixture(scope="module")
def small_llama():
    config = TinyLoraConfig(vocab_size=8, hidden_size=8, layers=1, heads=2, rank=1, sequence_length=5, seed=3)
    return build_model(config).eval(), make_sequences(config, num_examples=3)


@pytest.mark.parametrize("method", ["double_vjp", "forward"])
def test_product_equals_dense_jacobian_form(small_llama, method):
    model, data = small_llama
    batch = torch.stack(data)
    reference = _dense_reference(model, language_model_loss, batch)
    names, params = trainable_parameters(model)
    product = GaussNewtonProduct(model, language_model_loss, names, params, method)
    vector = torch.randn(reference.shape[0], generator=torch.Generator().manual_seed(0))
    ours = product(batch, vector).double()
    expected = reference @ vector.double()
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert product.method == method and product.fallback is None
    # the batched columns give the whole matrix
    columns = product.columns(batch, torch.eye(reference.shape[0])).double()
    assert torch.allclose(columns, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max()))


def test_product_weights_tokens_by_the_per_example_mean(small_llama):
    """causal_lm_loss with padding and prompt masks: H_out carries each token's weight 1/(B·tokens of its example)."""
    model, data = small_llama
    collate = CausalLMCollator(pad_token_id=0)
    examples = [{"input_ids": data[0], "labels": torch.cat([torch.full((2,), -100), data[0][2:]])},
                {"input_ids": data[1][:3]}, {"input_ids": data[2]}]
    batch = collate(examples)
    reference = _dense_reference(model, causal_lm_loss, batch)
    names, params = trainable_parameters(model)
    vector = torch.randn(reference.shape[0], generator=torch.Generator().manual_seed(1))
    ours = GaussNewtonProduct(model, causal_lm_loss, names, params)(batch, vector).double()
    expected = reference @ vector.double()
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


class SquaredError:
    """½ mean (xᵀθ − y)², split: outputs = xᵀθ, loss of the outputs = ½ mean (o − y)²."""

    def outputs(self, model, batch):
        return model(batch[0]).squeeze(-1)

    def loss_of_outputs(self, outputs, batch):
        return 0.5 * ((outputs - batch[1]) ** 2).mean()

    def __call__(self, model, batch):
        return self.loss_of_outputs(self.outputs(model, batch), batch)


def _least_squares(n=40, d=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=generator, dtype=torch.float64)
    targets = features @ torch.randn(d, generator=generator, dtype=torch.float64) + 0.3 * torch.randn(
        n, generator=generator, dtype=torch.float64)
    model = nn.Linear(d, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.normal_(generator=generator)  # anywhere: a linear model's Hessian does not depend on θ
    return model, list(zip(features, targets))


def _pairs(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


def test_equals_the_hessian_on_linear_least_squares():
    model, data = _least_squares()
    objective = TrainingObjective(model, SquaredError(), data, batch_size=16, collate_fn=_pairs,
                                  curvature="gauss_newton")
    with objective.evaluation():
        dense_gn, dense_h = dense_gauss_newton(objective), dense_hessian(objective)
        vector = torch.randn(objective.num_parameters, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        gn, hv = objective.data_product(data, vector), objective.data_hvp(data, vector)
    features = torch.stack([torch.cat([x, torch.ones(1, dtype=torch.float64)]) for x, _ in data])
    closed_form = features.T @ features / len(data)  # [weight, bias] order matches the parameters'
    assert torch.allclose(dense_gn, closed_form, atol=1e-12)
    assert torch.allclose(dense_h, closed_form, atol=1e-12)
    assert torch.allclose(gn, hv, atol=1e-12) and objective.gauss_newton_count > 0


class _NoSecondDerivative(torch.autograd.Function):
    """tanh whose backward is once differentiable (like a fused kernel), with a forward-mode formula."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.save_for_forward(y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)

    @staticmethod
    def jvp(ctx, tangent):
        (y,) = ctx.saved_tensors
        return tangent * (1 - y * y)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.head = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(_NoSecondDerivative.apply(self.hidden(x)))


class _Classification:
    def outputs(self, model, batch):
        return model(batch[0])

    def loss_of_outputs(self, outputs, batch):
        return nn.functional.cross_entropy(outputs, batch[1])

    def __call__(self, model, batch):
        return self.loss_of_outputs(self.outputs(model, batch), batch)


def test_auto_falls_back_to_forward_mode_when_double_backward_is_missing():
    model = _Net()
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(5, 4, generator=generator), torch.randint(0, 3, (5,), generator=generator))
    names, params = trainable_parameters(model)
    vector = torch.randn(sum(p.numel() for p in params), generator=generator)
    with pytest.raises(eraserlib.DoubleBackwardUnsupportedError):
        GaussNewtonProduct(model, _Classification(), names, params, "double_vjp")(batch, vector)
    product = GaussNewtonProduct(model, _Classification(), names, params, "auto")
    ours = product(batch, vector)
    assert product.method == "forward" and "double_vjp failed" in product.fallback
    reference = GaussNewtonProduct(model, _Classification(), names, params, "forward")(batch, vector)
    assert torch.equal(ours, reference)
    # and against the dense form, with an ordinary tanh network of the same weights
    plain = nn.Sequential(model.hidden, nn.Tanh(), model.head)
    expected = _dense_reference(plain, _Classification(), batch) @ vector.double()
    assert torch.allclose(ours.double(), expected, rtol=1e-4, atol=1e-7)


def test_hessian_products_refuse_a_once_differentiable_op():
    """Double backward through a @once_differentiable op prunes it silently; the HVPs must refuse instead."""
    model = _Net()
    generator = torch.Generator().manual_seed(0)
    data = list(zip(torch.randn(6, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator)))
    objective = TrainingObjective(model, _Classification(), data, batch_size=3, collate_fn=_pairs)
    with pytest.raises(eraserlib.DoubleBackwardUnsupportedError, match="once-differentiable"):
        objective.data_hvp(data, torch.ones(objective.num_parameters))
    with pytest.raises(eraserlib.DoubleBackwardUnsupportedError, match="once-differentiable"):
        dense_hessian(objective)
    # Gauss–Newton with "auto" still works on it, by forward mode
    gauss_newton = TrainingObjective(model, _Classification(), data, batch_size=3, collate_fn=_pairs,
                                     curvature="gauss_newton")
    assert torch.isfinite(gauss_newton.data_product(data, torch.ones(gauss_newton.num_parameters))).all()
    assert gauss_newton.curvature_info()["gauss_newton_method"] == "forward"


def test_errors_name_the_fix():
    model, data = _least_squares()
    request = eraserlib.InstanceRemoval(data[:2])

    def plain_loss(m, batch):
        return SquaredError()(m, batch)

    with pytest.raises(TypeError, match="causal_lm_loss.*OutputLoss"):
        eraserlib.erase(model, plain_loss, data, request, collate_fn=_pairs, curvature="gauss_newton", progress=False)
    with pytest.raises(ValueError, match="datainf.*own curvature"):
        eraserlib.erase(model, SquaredError(), data, request, collate_fn=_pairs, curvature="gauss_newton",
                        solver="datainf", progress=False)
    with pytest.raises(ValueError, match="curvature must be one of"):
        eraserlib.erase(model, SquaredError(), data, request, collate_fn=_pairs, curvature="fisher", progress=False)


# -- the dense Gauss–Newton solve as the reference of the iterative solvers ------------------------
CONFIG = TinyLoraConfig(num_examples=128)
BATCH = 32


@pytest.fixture(scope="module")
def trained():
    model = build_model(CONFIG)
    data = make_sequences(CONFIG)
    train(model, language_model_loss, data, TrainConfig(epochs=30, lr=1e-2, batch_size=BATCH, max_grad_norm=None),
          progress=False)
    return model, data


@pytest.fixture(scope="module")
def exact_gauss_newton(trained):
    model, data = trained
    request = eraserlib.InstanceRemoval(data[:4])
    result = eraserlib.erase(model, language_model_loss, data, request, solver="exact", batch_size=BATCH,
                             curvature="gauss_newton", progress=False)
    return request, result


def _flat(delta):
    return torch.cat([v.reshape(-1) for v in delta.values()]).double()


def test_dense_gauss_newton_is_positive_semidefinite_and_solved(exact_gauss_newton):
    _, result = exact_gauss_newton
    diagnostics = result.diagnostics
    assert diagnostics["curvature"] == "gauss_newton" and diagnostics["positive_definite"]
    assert diagnostics["spectrum"]["exact"] and diagnostics["spectrum"]["smallest"] > -1e-6
    # the Gauss–Newton rule: λ = λ_max / 100 (wd = 0)
    assert diagnostics["damping"] == pytest.approx(diagnostics["spectrum"]["largest"] / 100)
    assert diagnostics["residual_estimate"] < 1e-8 and diagnostics["gauss_newton_count"] > 0


@pytest.mark.parametrize("solver,min_cosine", [("cg", 0.999), ("llmeraser", 0.99)])
def test_iterative_solvers_match_the_dense_gauss_newton_solve(trained, exact_gauss_newton, solver, min_cosine):
    model, data = trained
    request, reference = exact_gauss_newton
    result = eraserlib.erase(model, language_model_loss, data, request, solver=solver, batch_size=BATCH,
                             damping=reference.diagnostics["damping"], curvature="gauss_newton", progress=False)
    cosine = float(torch.nn.functional.cosine_similarity(_flat(result.delta), _flat(reference.delta), dim=0))
    assert cosine >= min_cosine, (solver, cosine)
    assert result.diagnostics["stop_reason"] == "tolerance"
    assert result.diagnostics["gauss_newton_count"] == result.diagnostics["hvp_count"] > 0
    assert result.diagnostics["gauss_newton_method"] in ("double_vjp", "forward")
