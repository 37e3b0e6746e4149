"""Hessian-vector products: finite differences, invariance to batching and order, dtypes, errors."""

import pytest
import torch
from torch import nn

import eraserlib
from eraserlib.toy.convex import fit, logistic_loss, make_problem
from eraserlib.objective import TrainingObjective, flatten
from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences

CONFIG = TinyLoraConfig(num_examples=48)


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


def _full_gradient(objective):
    return objective.loss_sum_gradient(objective.train_data) / objective.n + objective.weight_decay * objective.parameters_vector()


def _finite_difference(objective, vector, epsilon):
    """(∇R(θ + εv) − ∇R(θ − εv)) / 2ε, by perturbing the parameters in place."""
    with torch.no_grad():
        offsets = [chunk.view_as(p) for chunk, p in zip(torch.split(vector, [p.numel() for p in objective.params]),
                                                         objective.params)]
        for p, o in zip(objective.params, offsets):
            p.add_(o.to(p.dtype), alpha=epsilon)
    plus = _full_gradient(objective)
    with torch.no_grad():
        for p, o in zip(objective.params, offsets):
            p.add_(o.to(p.dtype), alpha=-2 * epsilon)
    minus = _full_gradient(objective)
    with torch.no_grad():
        for p, o in zip(objective.params, offsets):
            p.add_(o.to(p.dtype), alpha=epsilon)
    return (plus - minus) / (2 * epsilon)


def test_hvp_matches_finite_differences_convex():
    problem = make_problem(200, num_features=6, seed=3)
    model = fit(problem.examples, problem.weight_decay)
    objective = TrainingObjective(model, logistic_loss, problem.examples, weight_decay=problem.weight_decay,
                                  collate_fn=collate, batch_size=64)
    vector = torch.randn(objective.num_parameters, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with objective.evaluation():
        product = objective.hvp(vector)
        estimate = _finite_difference(objective, vector, 1e-5)
    assert torch.allclose(product, estimate, rtol=1e-6, atol=1e-9)


def test_hvp_matches_finite_differences_lora():
    model = build_model(CONFIG)
    data = make_sequences(CONFIG)
    model.double()  # central differences need all the precision they can get
    objective = TrainingObjective(model, language_model_loss, data, batch_size=16, compute_dtype=torch.float64)
    vector = torch.randn(objective.num_parameters, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with objective.evaluation():
        product = objective.hvp(vector)
        estimate = _finite_difference(objective, vector, 3e-3)
    relative = float((product - estimate).norm() / product.norm())
    assert relative < 1e-3, relative  # Llama's RMSNorm computes in float32 whatever the model dtype


def test_float32_hvp_for_a_bfloat16_model_restores_dtypes():
    model = build_model(CONFIG).to(torch.bfloat16)
    data = make_sequences(CONFIG)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    objective = TrainingObjective(model, language_model_loss, data, batch_size=16)
    vector = torch.ones(objective.num_parameters)
    with objective.evaluation():
        assert all(p.dtype == torch.float32 for p in model.parameters())
        product = objective.data_hvp(data[:16], vector)
    assert product.dtype == torch.float32 and torch.isfinite(product).all()
    assert {name: p.dtype for name, p in model.named_parameters()} == dtypes


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_answer_invariant_to_batch_size_and_order(solver):
    problem = make_problem(120, num_features=5, seed=4)
    model = fit(problem.examples, problem.weight_decay)
    request = eraserlib.InstanceRemoval(problem.examples[:3])
    shuffled = [problem.examples[i] for i in torch.randperm(120, generator=torch.Generator().manual_seed(5))]
    answers = []
    for data, batch_size in [(problem.examples, 7), (problem.examples, 120), (shuffled, 16)]:
        result = eraserlib.erase(model, logistic_loss, data, request, solver=solver, weight_decay=problem.weight_decay,
                                 damping=1e-3, collate_fn=collate, batch_size=batch_size, progress=False,
                                 options={"tolerance": 1e-10} if solver == "cg" else None)
        answers.append(flatten(list(result.delta.values())).double())
    for other in answers[1:]:
        assert torch.allclose(answers[0], other, rtol=1e-5, atol=1e-9)


def test_only_trainable_parameters_change():
    model = build_model(CONFIG)
    data = make_sequences(CONFIG)
    result = eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[:2]), solver="cg",
                             batch_size=16, progress=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(result.delta) == trainable and all("lora_" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    eraserlib.apply_delta(model, result.delta)
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == (name in trainable and bool(result.delta[name].abs().max() > 0))


class _OnceDifferentiableAttention(torch.autograd.Function):
    """Stands in for a fused attention kernel: a backward with no backward of its own."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1 - torch.tanh(x) ** 2)


class _FusedModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x):
        return _OnceDifferentiableAttention.apply(self.linear(x)).squeeze(-1)


def test_missing_double_backward_names_the_fix():
    model = _FusedModel()
    data = [(torch.randn(3), torch.tensor(1.0)) for _ in range(8)]

    def loss_fn(m, batch):
        x, y = batch
        return ((m(x) - y) ** 2).mean()

    with pytest.raises(eraserlib.DoubleBackwardUnsupportedError, match='attn_implementation="eager"'):
        eraserlib.erase(model, loss_fn, data, eraserlib.InstanceRemoval(data[:1]), solver="cg", damping=0.1,
                        progress=False)


def test_sdpa_model_works_through_the_math_kernel():
    """A model loaded with SDPA attention still gets HVPs: erase routes SDPA to its math kernel."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=24, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, attn_implementation="sdpa"))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights="gaussian"))
    data = make_sequences(CONFIG)
    with pytest.warns(eraserlib.NotConvergedWarning, match="max_iterations after 3 steps"):  # 3 CG steps: a smoke run
        result = eraserlib.erase(model, language_model_loss, data, eraserlib.InstanceRemoval(data[:2]), solver="cg",
                                 damping=10.0, batch_size=16, progress=False, options={"max_iterations": 3})
    assert result.diagnostics["hvp_count"] > 0
