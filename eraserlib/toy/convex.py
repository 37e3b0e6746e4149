"""A convex problem with a known answer: L2-regularised logistic regression.

Influence functions are exact to first order only; on a strictly convex objective we can
also compute the *true* effect of a request by retraining to machine precision, so this is
where every solver and every request type is checked against ground truth (tests) and where
the book derives the method (chapter 2).

Everything is float64 and deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """p(y=1 | x) = σ(wᵀx + c) as an ``nn.Module`` with one trainable weight vector and bias."""

    def __init__(self, num_features: int):
        super().__init__()
        self.linear = nn.Linear(num_features, 1, dtype=torch.float64)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B,) logits
        return self.linear(features).squeeze(-1)


class LogisticLoss:
    """Mean binary cross-entropy of a batch ``(features (B, d), labels (B,))``: the ``loss_fn`` contract.

    Split for Gauss–Newton curvature (:class:`eraserlib.losses.OutputLoss`): the outputs are the
    logits wᵀx + c, the loss of the outputs their binary cross-entropy. The model is linear in θ,
    so its Gauss–Newton matrix equals its Hessian.
    """

    def outputs(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The logits, (B,)."""
        return model(batch[0])

    def loss_of_outputs(self, outputs: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean binary cross-entropy of the logits against the labels."""
        return nn.functional.binary_cross_entropy_with_logits(outputs, batch[1].to(torch.float64))

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), batch)


#: The convex problem's ``loss_fn`` (both curvatures; they coincide here).
logistic_loss = LogisticLoss()


@dataclass
class ConvexProblem:
    """A synthetic classification data set. Examples are ``(x (d,), y ())`` tuples."""

    examples: list[tuple[torch.Tensor, torch.Tensor]]
    weight_decay: float

    @property
    def num_features(self) -> int:
        return self.examples[0][0].numel()


def make_problem(num_examples: int = 500, num_features: int = 10, weight_decay: float = 1e-2,
                 seed: int = 0) -> ConvexProblem:
    """Gaussian features, labels from a noisy logistic model with a random true weight vector.

    Args:
        num_examples: n.
        num_features: d (the model has d + 1 parameters).
        weight_decay: wd of the training objective (1/n) Σ ℓ + (wd/2)‖θ‖².
        seed: Seeds features, weights and labels.
    """
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_examples, num_features, generator=generator, dtype=torch.float64)
    true_weight = torch.randn(num_features, generator=generator, dtype=torch.float64)
    probabilities = torch.sigmoid(features @ true_weight)
    labels = (torch.rand(num_examples, generator=generator, dtype=torch.float64) < probabilities).to(torch.float64)
    return ConvexProblem(list(zip(features, labels)), weight_decay)


def fit(examples: list[tuple[torch.Tensor, torch.Tensor]], weight_decay: float, num_features: int | None = None,
        tolerance: float = 1e-13, max_iterations: int = 100) -> LogisticRegression:
    """Train to the exact optimum of (1/n) Σ ℓ + (wd/2)‖θ‖² by Newton's method (float64).

    The objective is strictly convex for wd > 0, so Newton converges quadratically to the
    unique minimiser; "retraining" here is exact, not an approximation.

    Args:
        examples: The training examples ``(x, y)``.
        weight_decay: wd > 0.
        num_features: d; inferred from the examples when omitted.
        tolerance: Stop when the gradient's norm falls below this.
        max_iterations: Newton steps at most.

    Returns:
        A :class:`LogisticRegression` at the optimum.
    """
    features = torch.stack([x for x, _ in examples])
    labels = torch.stack([y for _, y in examples]).to(torch.float64)
    n, d = features.shape
    design = torch.cat([features, torch.ones(n, 1, dtype=torch.float64)], dim=1)  # (n, d+1)
    theta = torch.zeros(d + 1, dtype=torch.float64)
    for _ in range(max_iterations):
        probabilities = torch.sigmoid(design @ theta)
        gradient = design.T @ (probabilities - labels) / n + weight_decay * theta
        if gradient.norm() < tolerance:
            break
        curvature = probabilities * (1 - probabilities)
        hessian = (design.T * curvature) @ design / n + weight_decay * torch.eye(d + 1, dtype=torch.float64)
        theta = theta - torch.linalg.solve(hessian, gradient)
    model = LogisticRegression(num_features or d)
    with torch.no_grad():
        model.linear.weight.copy_(theta[:d].unsqueeze(0))
        model.linear.bias.copy_(theta[d:])
    return model


def parameters_of(model: nn.Module) -> torch.Tensor:
    """The model's parameters as one flat float64 vector."""
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()])
