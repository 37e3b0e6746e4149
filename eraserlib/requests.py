"""The three unlearning requests and the right-hand side b each one induces.

An erase computes ΔΘ = (H + λI)⁻¹ b (see :func:`eraserlib.erase`): one Newton step from the
trained parameters θ̂ towards the optimum of the *modified* training objective. Only b
depends on the request. With the training objective R(θ) = (1/n) Σ ℓ(zᵢ; θ) + (wd/2)‖θ‖²:

* Query modification and response correction replace examples zᵢ by z'ᵢ (a changed input or
  a changed response). The modified objective is R'(θ) = R(θ) + (1/n) Σ [ℓ(z'ᵢ) − ℓ(zᵢ)], and
  since ∇R(θ̂) = 0, the Newton step is ΔΘ = −H⁻¹ ∇R'(θ̂) = H⁻¹ b with

      b = (1/n) Σᵢ [∇ℓ(zᵢ; θ̂) − ∇ℓ(z'ᵢ; θ̂)].

* Instance removal deletes a set S of k examples. The modified objective averages over the
  n − k that remain, R'(θ) = (1/(n−k)) Σ_{i∉S} ℓ(zᵢ) + (wd/2)‖θ‖². Using
  Σ_all ∇ℓ(θ̂) = −n·wd·θ̂ (stationarity), ∇R'(θ̂) = −(1/(n−k)) Σ_S ∇ℓ − (k/(n−k))·wd·θ̂, so

      b = (1/(n−k)) Σ_{z∈S} ∇ℓ(z; θ̂) + (k/(n−k))·wd·θ̂.

  The paper writes (1/n) Σ_S ∇ℓ, which drops the renormalisation of the mean; on an
  L2-regularised logistic regression the form above halves the error against exact
  retraining (PAPER.md; ``tests/test_convex.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eraserlib.errors import InvalidRequestError
from eraserlib.objective import TrainingObjective


@dataclass(frozen=True)
class InstanceRemoval:
    """Forget training examples: the adapter should behave as if trained without them.

    Args:
        examples: The k training examples to remove, in the same form as ``train_data``.
    """

    examples: Sequence[Any]
    kind = "instance_removal"

    def __post_init__(self):
        if len(self.examples) == 0:
            raise InvalidRequestError("InstanceRemoval got no examples: the request is empty.")

    def __len__(self) -> int:
        return len(self.examples)

    def right_hand_side(self, objective: TrainingObjective) -> torch.Tensor:
        """b = (1/(n−k)) Σ_S ∇ℓ(z; θ̂) + (k/(n−k))·wd·θ̂, flat (p,)."""
        k, n = len(self.examples), objective.n
        if k >= n:
            raise InvalidRequestError(
                f"InstanceRemoval asks to remove {k} examples but the training data has only {n}: "
                "at least one example must remain (to erase everything, discard the adapter)."
            )
        b = objective.loss_sum_gradient(self.examples)
        if objective.weight_decay:
            b = b + k * objective.weight_decay * objective.parameters_vector()
        return b / (n - k)


@dataclass(frozen=True)
class _Substitution:
    """Replace old[i] by new[i] in the training data (shared by QM and RC)."""

    old: Sequence[Any]
    new: Sequence[Any]
    kind = "substitution"

    def __post_init__(self):
        name = type(self).__name__
        if len(self.old) != len(self.new):
            raise InvalidRequestError(
                f"{name} needs one replacement per example: got {len(self.old)} old and "
                f"{len(self.new)} new examples (new[i] replaces old[i])."
            )
        if len(self.old) == 0:
            raise InvalidRequestError(f"{name} got no examples: the request is empty.")

    def __len__(self) -> int:
        return len(self.old)

    def right_hand_side(self, objective: TrainingObjective) -> torch.Tensor:
        """b = (1/n) Σᵢ [∇ℓ(oldᵢ; θ̂) − ∇ℓ(newᵢ; θ̂)], flat (p,)."""
        if len(self.old) > objective.n:
            raise InvalidRequestError(
                f"{type(self).__name__} changes {len(self.old)} examples but the training data has "
                f"only {objective.n}: old must be examples of train_data."
            )
        return (objective.loss_sum_gradient(self.old) - objective.loss_sum_gradient(self.new)) / objective.n


@dataclass(frozen=True)
class QueryModification(_Substitution):
    """Correct the inputs of training examples: new[i] is old[i] with its query fixed.

    Example: a user's history held a noisy item (old) and is cleaned (new), target unchanged.
    """

    kind = "query_modification"


@dataclass(frozen=True)
class ResponseCorrection(_Substitution):
    """Correct the responses of training examples: new[i] is old[i] with the right answer.

    Example: a flipped label or a wrong next item (old) is replaced by the true one (new).
    """

    kind = "response_correction"


Request = InstanceRemoval | QueryModification | ResponseCorrection
