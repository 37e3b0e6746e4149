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
  retraining (``tests/test_convex.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eraserlib.errors import InvalidRequestError
from eraserlib.matching import ExampleIndex, example_digest, is_hf_dataset
from eraserlib.objective import TrainingObjective


def _as_examples(examples: Any) -> Any:
    """A Hugging Face dataset of examples (e.g. ``train.select(indices)``) as the list of its rows; else unchanged."""
    return list(examples) if is_hf_dataset(examples) else examples


def _check_examples(examples: Any, what: str) -> None:
    """``examples`` must be a sequence of examples (a list or tuple), not one example that happens to be iterable."""
    if examples is None:
        raise InvalidRequestError(f"{what} got None instead of a sequence of training examples.")
    if isinstance(examples, type):
        raise InvalidRequestError(f"{what} got the class {examples.__name__}, not a sequence of training examples.")
    if isinstance(examples, (str, bytes, bytearray, Mapping)) or hasattr(examples, "shape"):
        kind = type(examples).__name__
        raise InvalidRequestError(
            f"{what} got a {kind}, which is one example (or text), not a sequence of examples: pass a list, e.g. "
            f"[example] for a single one. (A batched tensor is ambiguous: pass list(tensor) for one example per row.)")
    if not isinstance(examples, Sequence):
        raise InvalidRequestError(
            f"{what} needs a sequence (list or tuple) of training examples, got {type(examples).__name__}.")


def _index(train_data: Sequence[Any] | ExampleIndex) -> ExampleIndex:
    """``train_data``'s :class:`ExampleIndex` (built here unless given: pass one to look up several requests)."""
    return train_data if isinstance(train_data, ExampleIndex) else ExampleIndex(train_data)


def _check_positions(indices: Sequence[int], n: int, what: str) -> list[int]:
    """Training-data positions given by the user: integers in range, each once."""
    if isinstance(indices, (str, bytes, Mapping)) or not hasattr(indices, "__iter__"):
        raise InvalidRequestError(f"{what}: indices must be a sequence of integers (e.g. [3, 17]), got "
                                  f"{type(indices).__name__}.")
    if hasattr(indices, "tolist") and hasattr(indices, "shape"):  # a tensor or an array of indices
        indices = indices.tolist()
        if not isinstance(indices, list):
            raise InvalidRequestError(f"{what}: indices must be a sequence of integers, got a 0-d tensor/array.")
    positions = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) and not (hasattr(i, "__index__") and not hasattr(i, "shape")):
            raise InvalidRequestError(f"{what}: index {i!r} is not an integer.")
        i = int(i)
        if not 0 <= i < n:
            raise InvalidRequestError(f"{what}: index {i} is outside train_data (n = {n}).")
        positions.append(i)
    if len(set(positions)) != len(positions):
        raise InvalidRequestError(f"{what}: an index appears twice; each training example can be named once.")
    return positions


@dataclass(frozen=True)
class InstanceRemoval:
    """Forget training examples: the adapter should behave as if trained without them.

    Args:
        examples: The k training examples to remove, in the same form as ``train_data``.
    """

    examples: Sequence[Any]
    kind = "instance_removal"

    def __post_init__(self):
        object.__setattr__(self, "examples", _as_examples(self.examples))
        _check_examples(self.examples, "InstanceRemoval")
        if len(self.examples) == 0:
            raise InvalidRequestError("InstanceRemoval got no examples: the request is empty.")

    @classmethod
    def from_indices(cls, train_data: Sequence[Any], indices: Sequence[int]) -> InstanceRemoval:
        """The removal of ``train_data[i]`` for each i in ``indices`` (distinct, in range)."""
        return cls([train_data[i] for i in _check_positions(indices, len(train_data), "InstanceRemoval")])

    def __len__(self) -> int:
        return len(self.examples)

    def locate(self, train_data: Sequence[Any] | ExampleIndex) -> list[int]:
        """Where the removed examples are in ``train_data`` (by value, see :mod:`eraserlib.matching`).

        Raises:
            InvalidRequestError: an example is not in the data, or named more often than it occurs.
        """
        return _index(train_data).locate(self.examples, "InstanceRemoval example")

    def apply_to(self, train_data: Sequence[Any], positions: Sequence[int] | None = None) -> list[Any]:
        """The data the request leaves: ``train_data`` without the removed examples (order kept)."""
        drop = set(self.locate(train_data) if positions is None else positions)
        return [z for i, z in enumerate(train_data) if i not in drop]

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
        object.__setattr__(self, "old", _as_examples(self.old))
        object.__setattr__(self, "new", _as_examples(self.new))
        _check_examples(self.old, f"{name} (old)")
        _check_examples(self.new, f"{name} (new)")
        if len(self.old) != len(self.new):
            raise InvalidRequestError(
                f"{name} needs one replacement per example: got {len(self.old)} old and "
                f"{len(self.new)} new examples (new[i] replaces old[i])."
            )
        if len(self.old) == 0:
            raise InvalidRequestError(f"{name} got no examples: the request is empty.")
        for i, (before, after) in enumerate(zip(self.old, self.new)):
            if example_digest(before) == example_digest(after):
                raise InvalidRequestError(
                    f"{name}: new[{i}] equals old[{i}], so the request changes nothing there; drop that pair "
                    "(or pass the corrected example as new).")

    def __len__(self) -> int:
        return len(self.old)

    @classmethod
    def from_indices(cls, train_data: Sequence[Any], indices: Sequence[int], new: Sequence[Any]):
        """The request that replaces ``train_data[indices[j]]`` by ``new[j]``."""
        positions = _check_positions(indices, len(train_data), cls.__name__)
        return cls([train_data[i] for i in positions], list(new))

    def locate(self, train_data: Sequence[Any] | ExampleIndex) -> list[int]:
        """Where the ``old`` examples are in ``train_data`` (by value, see :mod:`eraserlib.matching`).

        Raises:
            InvalidRequestError: an ``old`` example is not in the data, or named more often than it occurs.
        """
        return _index(train_data).locate(self.old, f"{type(self).__name__} old example")

    def apply_to(self, train_data: Sequence[Any], positions: Sequence[int] | None = None) -> list[Any]:
        """The data the request leaves: ``train_data`` with each ``old`` example replaced by its ``new`` one."""
        positions = self.locate(train_data) if positions is None else positions
        after = list(train_data)
        for i, replacement in zip(positions, self.new):
            after[i] = replacement
        return after

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
