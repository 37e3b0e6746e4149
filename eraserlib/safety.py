"""Safety rails: after every erase, cheap evidence (forward passes only) of what the update did.

An influence update is a first-order estimate; it can be negligible where retraining would
change a lot, or harm what it should keep, with a solver that reports ``stop_reason
"tolerance"`` all the same. So :func:`eraserlib.erase` measures, with the update applied
temporarily and then removed:

* the mean loss of the request's examples before and after (instance removal: the removed
  examples; query modification / response correction: the old and the new versions);
* the mean loss of a seeded sample of the data the request leaves (``sample_size`` examples
  it does not touch), before and after;
* the update's size ‖Δ‖ next to ‖θ̂‖.

These go into ``diagnostics["safety"]`` (and so into the adapter's manifest), and a rail that
fires gives a :class:`~eraserlib.errors.SafetyWarning`:

* **negligible update** — ‖Δ‖ ≤ ``negligible_update`` · ‖θ̂‖: the model is, to float
  precision, unchanged (the request's examples carry no gradient).
* **memorised** (instance removal) — the removed examples' mean loss is at most
  ``memorised_loss`` before the update and at most twice that after it. Examples fit almost
  exactly have almost no gradient, so a local update cannot remove them: retraining without
  them would raise their loss to that of unseen data, the update leaves it near zero (on 10
  memorised facts it moved their loss 0.09% of the way to a retrain). 0.02 nats is a per-token
  probability of 98%: the model reproduces them.
* **retained loss rise** — the sample's mean loss rose by more than
  max(``retained_rise``, ``retained_relative_rise`` · before). Why 0.1 nats: retraining without
  k ≪ n examples still trains on the rest, so their loss barely moves (a correct erase on the
  tiny LoRA Llama moved it by a few thousandths: ``tests/test_safety.py`` measures it); a rise
  of 0.1 nats per token means the model gives the data it should keep e^−0.1 ≈ 90% of its
  former per-token probability — harm no retraining does. The relative part keeps a model
  with a high loss (a hard task, several nats) from firing on noise. (A correction of 10
  examples that cut the accuracy on the 180 untouched ones from 100% to 33% went unflagged
  before this rail.)

The thresholds are in nats for the per-example mean token cross-entropy
(:data:`eraserlib.causal_lm_loss`); for a loss on another scale pass your own
:class:`SafetyRails`. ``erase(..., safety=False)`` turns the rails off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eraserlib.errors import InvalidArgumentError, NegligibleUpdateWarning, RetainedLossWarning
from eraserlib.objective import TrainingObjective, unflatten

#: Added to erase's seed for the retained sample, so that it never shares a stream with the solver's batches.
SAMPLE_SEED_OFFSET = 7919


@dataclass(frozen=True)
class SafetyRails:
    """Thresholds of the rails (see the module docstring for why each).

    Attributes:
        sample_size: Examples of the retained data measured (a seeded sample; all if fewer).
        memorised_loss: Mean loss (nats) at or below which removed examples count as memorised.
        retained_rise: Rise of the retained sample's mean loss (nats) that fires the rail.
        retained_relative_rise: The same as a share of the loss before (the larger of the two applies).
        negligible_update: ‖Δ‖/‖θ̂‖ at or below which the update counts as nothing.
    """

    sample_size: int = 64
    memorised_loss: float = 0.02
    retained_rise: float = 0.1
    retained_relative_rise: float = 0.1
    negligible_update: float = 1e-6

    def __post_init__(self):
        if isinstance(self.sample_size, bool) or not isinstance(self.sample_size, int) or self.sample_size < 1:
            raise InvalidArgumentError(f"SafetyRails.sample_size must be a positive integer, got {self.sample_size!r}.")
        for name in ("memorised_loss", "retained_rise", "retained_relative_rise", "negligible_update"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidArgumentError(f"SafetyRails.{name} must be a number ≥ 0, got {value!r}.")


def rails_from(argument: Any) -> SafetyRails | None:
    """erase's ``safety=``: True/None → the default rails, False → none, a dict → its fields, or a :class:`SafetyRails`.

    Raises:
        InvalidArgumentError: anything else, or a dict with unknown fields.
    """
    if argument is True or argument is None:
        return SafetyRails()
    if argument is False:
        return None
    if isinstance(argument, SafetyRails):
        return argument
    if isinstance(argument, Mapping):
        names = {f.name for f in dataclasses.fields(SafetyRails)}
        unknown = sorted(set(argument) - names)
        if unknown:
            raise InvalidArgumentError(f"safety has no field {', '.join(map(repr, unknown))}; its fields: "
                                       f"{', '.join(sorted(names))}.")
        return SafetyRails(**argument)
    raise InvalidArgumentError(f"safety must be True, False, a dict or eraserlib.safety.SafetyRails, got "
                               f"{type(argument).__name__}.")


def retained_sample(n: int, touched: Sequence[int], size: int, seed: int) -> list[int]:
    """Up to ``size`` positions of [0, n) outside ``touched``, drawn with a generator seeded by ``seed`` (sorted)."""
    excluded = set(touched)
    generator = torch.Generator().manual_seed(seed + SAMPLE_SEED_OFFSET)
    order = torch.randperm(n, generator=generator).tolist()
    return sorted([i for i in order if i not in excluded][:size])


def mean_loss(objective: TrainingObjective, examples: Sequence[Any]) -> float:
    """The mean per-example loss of ``examples`` (forward passes only, in chunks of ``batch_size``; on W ranks
    each sums its share and the sums are all-reduced, :meth:`TrainingObjective.loss_sum`)."""
    return objective.loss_sum(examples) / len(examples)


@contextlib.contextmanager
def updated(objective: TrainingObjective, x: torch.Tensor) -> Iterator[None]:
    """The model with θ̂ + x for the duration of the block, then exactly θ̂ again (the values are restored, not subtracted)."""
    saved = [p.data.clone() for p in objective.params]
    try:
        with torch.no_grad():
            for p, piece in zip(objective.params, unflatten(x, objective.params)):
                p.data.add_(piece.to(device=p.device, dtype=p.dtype))
        yield
    finally:
        for p, value in zip(objective.params, saved):
            p.data = value


def _groups(request: Any) -> dict[str, list[Any]]:
    if request.kind == "instance_removal":
        return {"request_loss": list(request.examples)}
    return {"old_loss": list(request.old), "new_loss": list(request.new)}


def measure_before(objective: TrainingObjective, request: Any, positions: Sequence[int], rails: SafetyRails,
                   seed: int) -> dict[str, Any]:
    """The losses the rails compare, at θ̂ (call inside ``objective.evaluation()``)."""
    sample = retained_sample(objective.n, positions, rails.sample_size, seed)
    losses = {name: mean_loss(objective, examples) for name, examples in _groups(request).items()}
    if sample:
        losses["retained_loss"] = mean_loss(objective, [objective.train_data[i] for i in sample])
    return {"losses": losses, "sample": sample}


def check(objective: TrainingObjective, request: Any, before: dict[str, Any], x: torch.Tensor,
          rails: SafetyRails, *, removal_mode: bool = False) -> dict[str, Any]:
    """Measure again at θ̂ + x, fire the rails, warn; return the report for ``diagnostics["safety"]``.

    Call inside ``objective.evaluation()``; the model is left exactly as it was. With
    ``removal_mode`` (``erase(..., removal="match_heldout")``) the memorised-examples rail is off:
    that mode's target is the held-out examples' loss, however low, and it reports where it stopped.
    """
    groups = _groups(request)
    sample = before["sample"]
    with updated(objective, x):
        after = {name: mean_loss(objective, examples) for name, examples in groups.items()}
        if sample:
            after["retained_loss"] = mean_loss(objective, [objective.train_data[i] for i in sample])
    update_norm = float(x.norm())
    parameter_norm = float(objective.parameters_vector().norm())
    relative = update_norm / parameter_norm if parameter_norm > 0 else float(update_norm > 0)
    report: dict[str, Any] = {name: {"before": before["losses"][name], "after": value} for name, value in after.items()}
    if sample:
        report["retained_loss"]["examples"] = len(sample)
    report.update(update_norm=update_norm, parameter_norm=parameter_norm, relative_update=relative,
                  thresholds=dataclasses.asdict(rails))
    messages = _fire(report, request, rails)
    if removal_mode:
        messages.pop("memorised", None)
    report["fired"] = sorted(messages)
    report["messages"] = messages
    for name, message in messages.items():
        category = RetainedLossWarning if name == "retained_loss_rise" else NegligibleUpdateWarning
        warnings.warn(category(message), stacklevel=3)
    return report


def _fire(report: dict[str, Any], request: Any, rails: SafetyRails) -> dict[str, str]:
    """The rails that fire: name → message."""
    messages = {}
    if report["relative_update"] <= rails.negligible_update:
        messages["negligible_update"] = (
            f"The update is negligible: ‖Δ‖ = {report['update_norm']:.3g}, {report['relative_update']:.2g} of ‖θ̂‖ = "
            f"{report['parameter_norm']:.3g}, so the erased model is the original one. The request's examples carry "
            "(almost) no gradient: if the model memorised them, a local update cannot remove them; retrain without "
            "them.")
    removed = report.get("request_loss")
    if removed and removed["before"] <= rails.memorised_loss and removed["after"] <= 2 * rails.memorised_loss:
        messages["memorised"] = (
            f"The {len(request)} removed example(s) are fit almost exactly (mean loss {removed['before']:.3g} before "
            f"the update, {removed['after']:.3g} after; memorised at ≤ {rails.memorised_loss:g}): their gradients "
            "nearly vanish, so a local (influence) update cannot remove memorised examples — retraining would raise "
            "their loss to that of unseen data. Retrain without them (eraserlib.training.train on "
            "request.apply_to(train_data)), or use the removal mode for memorised examples: erase(..., "
            "removal='match_heldout', heldout=<examples the model never saw>).")
    retained = report.get("retained_loss")
    if retained:
        limit = max(rails.retained_rise, rails.retained_relative_rise * retained["before"])
        rise = retained["after"] - retained["before"]
        if rise > limit:
            messages["retained_loss_rise"] = (
                f"The loss on {retained['examples']} examples the request leaves (a seeded sample) rose from "
                f"{retained['before']:.3g} to {retained['after']:.3g} (+{rise:.3g}, threshold {limit:.3g}): the update "
                "harms what it should keep, which retraining without the request does not do. Raise `damping` (or "
                "use damping='auto'), check that the solve converged, or retrain.")
    return messages
