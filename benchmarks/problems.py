"""The problems the benchmarks solve: one where H is known in closed form, one real LoRA adapter.

* :func:`least_squares` — a finite-sum quadratic, ℓᵢ(θ) = ½ (xᵢᵀθ − yᵢ)², whose Hessian
  H = XᵀX/n does not depend on θ and whose spectrum is set by construction (features with
  variances spread log-uniformly over [1/κ, 1]). The trained model is the exact least-squares
  fit, so ∇R(θ̂) = 0 holds to machine precision and the influence update is exact. Cheap per
  example, so n can grow to 10⁵ and the n-dependence of each solver's cost shows.
* :func:`tiny_lora` — the tiny peft LoRA Llama of :mod:`eraserlib.toy.tiny_lora`, trained on its
  Markov-chain task: a real adapter, not at an exact minimum, whose Hessian has a few small
  negative eigenvalues and is small enough (p of a few hundred) to form densely.

Both return a :class:`Problem` with everything a solver needs plus the dense H for the truth.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import eraserlib
from eraserlib.objective import TrainingObjective
from eraserlib import damping
from eraserlib.solvers import Spectrum, dense_hessian


@dataclass
class Problem:
    """A trained model, its data, one request, and the dense Hessian of its training objective.

    Attributes:
        name: Short label (``least_squares``, ``tiny_lora``).
        model: The trained model (trainable parameters = θ).
        loss_fn: ``loss_fn(model, batch) -> mean loss``.
        data: The n training examples.
        collate_fn: List of examples → batch.
        weight_decay: wd of the training objective.
        request: The request whose right-hand side b the solvers use.
        batch_size: B, examples per stochastic HVP (and per chunk of a full HVP).
        hessian: The dense H (p, p), float64, weight decay included.
        hessian_seconds: Wall time to form ``hessian`` (what ``solver="exact"`` pays).
        train_seconds: Wall time of training (the retrain cost's unit), if trained.
        info: Sizes and settings, for the record.
    """

    name: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, Any], torch.Tensor]
    data: list
    collate_fn: Callable[[list], Any] | None
    weight_decay: float
    request: Any
    batch_size: int
    hessian: torch.Tensor | None = None
    hessian_seconds: float = math.nan
    train_seconds: float = math.nan
    info: dict = field(default_factory=dict)

    def objective(self, seed: int = 0) -> TrainingObjective:
        """A fresh objective (fresh counters, seeded mini-batches)."""
        return TrainingObjective(self.model, self.loss_fn, self.data, weight_decay=self.weight_decay,
                                 batch_size=self.batch_size, collate_fn=self.collate_fn, seed=seed)

    def right_hand_side(self) -> torch.Tensor:
        """b of the request, flat (p,)."""
        objective = self.objective()
        with objective.evaluation():
            return self.request.right_hand_side(objective)

    def form_hessian(self) -> torch.Tensor:
        """The dense Hessian by batched double backward (timed; cached)."""
        if self.hessian is None:
            objective = self.objective()
            start = time.perf_counter()
            with objective.evaluation():
                self.hessian = dense_hessian(objective, progress=False)
            self.hessian_seconds = time.perf_counter() - start
            self.info["hessian_hvp_examples"] = objective.hvp_examples
            self.info["hessian_hvp_count"] = objective.hvp_count
        return self.hessian


def auto_damping(hessian: torch.Tensor, weight_decay: float) -> float:
    """λ of ``erase(damping="auto")`` for the dense Hessian (weight decay included): the library's rule,
    :func:`eraserlib.damping.auto_damping`, on the exact spectrum of the data part."""
    eigenvalues = torch.linalg.eigvalsh(hessian) - weight_decay
    return damping.auto_damping(Spectrum(float(eigenvalues[0]), float(eigenvalues[-1]), exact=True), weight_decay)


# --------------------------------------------------------------------------------------------
# A quadratic with a known, controlled spectrum
# --------------------------------------------------------------------------------------------
def _squared_error(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    features, targets = batch
    return 0.5 * ((model(features).squeeze(-1) - targets) ** 2).mean()


def _stack_pairs(examples: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


def least_squares(num_examples: int, num_features: int = 64, condition_number: float = 100.0,
                  request_share: float = 0.02, batch_size: int = 32, seed: int = 0) -> Problem:
    """Linear regression fitted exactly; H = XᵀX/n with eigenvalues ≈ spread over [1/κ, 1].

    Args:
        num_examples: n.
        num_features: p (no bias).
        condition_number: κ of the feature covariance (H's κ is close to it once n ≫ p).
        request_share: Share of the examples removed by the request.
        batch_size: B.
        seed: Seeds features, targets and the request.
    """
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -math.log10(condition_number), num_features, dtype=torch.float64).sqrt()
    features = torch.randn(num_examples, num_features, generator=generator, dtype=torch.float64) * scales
    truth = torch.randn(num_features, generator=generator, dtype=torch.float64)
    targets = features @ truth + 0.5 * torch.randn(num_examples, generator=generator, dtype=torch.float64)
    model = nn.Linear(num_features, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():  # the exact minimiser: ∇R(θ̂) = 0, so the influence update is exact
        model.weight.copy_(torch.linalg.lstsq(features, targets.unsqueeze(1)).solution.T)
    data = list(zip(features, targets))
    k = max(1, round(request_share * num_examples))
    removed = torch.randperm(num_examples, generator=generator)[:k].tolist()
    problem = Problem("least_squares", model, _squared_error, data, _stack_pairs, 0.0,
                      eraserlib.InstanceRemoval([data[i] for i in removed]), batch_size,
                      info={"n": num_examples, "p": num_features, "condition_number": condition_number,
                            "request_size": k, "batch_size": batch_size})
    start = time.perf_counter()
    problem.hessian = features.T @ features / num_examples  # closed form: the truth
    problem.hessian_seconds = time.perf_counter() - start
    problem.info["hessian"] = "closed form XᵀX/n"
    return problem


# --------------------------------------------------------------------------------------------
# The tiny LoRA adapter
# --------------------------------------------------------------------------------------------
def tiny_lora(num_examples: int = 128, rank: int = 2, target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
              hidden_size: int = 16, layers: int = 2, train_steps: int = 120, batch_size: int = 32,
              request_share: float = 0.02, weight_decay: float = 0.0, seed: int = 0,
              form_hessian: bool = True) -> Problem:
    """The tiny LoRA Llama trained on its Markov-chain sequences, and an instance-removal request.

    Training follows ``tests/test_solvers.py`` (Adam, lr 10⁻², B = 32, no clipping) for a fixed
    number of steps, so that n changes the data, not the amount of training.

    Args:
        num_examples: n.
        rank: LoRA rank r.
        target_modules: Modules that get an adapter (the default config adapts q and v only).
        hidden_size: Model width.
        layers: Transformer blocks.
        train_steps: Adam steps.
        batch_size: B (training and HVPs).
        request_share: Share of the examples removed by the request.
        weight_decay: wd of the training objective.
        seed: Seeds model, data and request.
        form_hessian: Form the dense H (skip for large adapters).
    """
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences
    from eraserlib.training import TrainConfig, train

    config = TinyLoraConfig(num_examples=num_examples, rank=rank, hidden_size=hidden_size, layers=layers, seed=seed)
    model = _with_targets(config, target_modules) if tuple(target_modules) != ("q_proj", "v_proj") else build_model(config)
    data = make_sequences(config)
    history = train(model, language_model_loss, data,
                    TrainConfig(max_steps=train_steps, lr=1e-2, batch_size=batch_size, max_grad_norm=None,
                                weight_decay=weight_decay, seed=seed), progress=False)
    k = max(1, round(request_share * num_examples))
    removed = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed + 7))[:k].tolist()
    problem = Problem("tiny_lora", model, language_model_loss, data, None, weight_decay,
                      eraserlib.InstanceRemoval([data[i] for i in removed]), batch_size,
                      train_seconds=history["wall_time_s"],
                      info={"n": num_examples, "p": sum(p.numel() for p in model.parameters() if p.requires_grad),
                            "rank": rank, "target_modules": list(target_modules), "hidden_size": hidden_size,
                            "layers": layers, "train_steps": train_steps, "final_train_loss": history["losses"][-1],
                            "request_size": k, "batch_size": batch_size, "weight_decay": weight_decay})
    if form_hessian:
        problem.form_hessian()
    return problem


def _with_targets(config, target_modules) -> nn.Module:
    """:func:`eraserlib.toy.tiny_lora.build_model` with other target modules (same seeded Gaussian init)."""
    from peft import LoraConfig, get_peft_model

    from eraserlib.toy.tiny_lora import build_base_model

    model = get_peft_model(build_base_model(config), LoraConfig(
        r=config.rank, lora_alpha=2 * config.rank, target_modules=list(target_modules), lora_dropout=0.0,
        init_lora_weights="gaussian"))
    generator = torch.Generator().manual_seed(config.seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model
