"""Whether an update survives being added in the parameter's own dtype.

An influence update is small next to the weights it changes (‖Δ‖/‖θ‖ is often 10⁻³ or
less). bfloat16 keeps 8 significant bits: adding δ to θ in bf16 changes nothing when
|δ| < |θ|·2⁻⁹, so most entries of such an update are *rounded away* — on a bf16 LoRA adapter
three quarters of them were, silently. :func:`rounding_loss` measures, per parameter, the
share of the update's non-zero entries that the addition would lose and the relative error of
what is added; :func:`eraserlib.apply_delta` refuses (:class:`~eraserlib.errors.PrecisionError`)
when more than :data:`MAX_ROUNDING_ERROR` of the update (in norm) would be lost, unless asked to
up-cast the parameters to float32 first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: apply_delta refuses when the update it would add differs from the update by more than this
#: share of its norm. 1%: well below the solvers' own tolerances (llmeraser stops at an estimated
#: 10%), so the rounding never dominates the error budget; float32 parameters lose ~10⁻⁷.
MAX_ROUNDING_ERROR = 0.01


@dataclass(frozen=True)
class RoundingLoss:
    """What adding an update in a parameter's dtype would lose.

    Attributes:
        name: The parameter.
        dtype: Its dtype.
        rounded_away: Share of the update's non-zero entries that the addition leaves unchanged.
        error_norm: ‖added − Δ‖ for what the addition actually adds.
        norm: ‖Δ‖.
    """

    name: str
    dtype: torch.dtype
    rounded_away: float
    error_norm: float
    norm: float

    @property
    def relative_error(self) -> float:
        """‖added − Δ‖ / ‖Δ‖ (0 for a zero update)."""
        return self.error_norm / self.norm if self.norm > 0 else 0.0


def rounding_loss(name: str, parameter: torch.Tensor, change: torch.Tensor) -> RoundingLoss:
    """Simulate ``parameter + change`` in the parameter's dtype and measure what is lost (nothing is modified)."""
    with torch.no_grad():
        value = parameter.detach()
        wanted = change.to(device=value.device, dtype=torch.float64)
        added = (value + change.to(device=value.device, dtype=value.dtype)).to(torch.float64) - value.to(torch.float64)
        nonzero = wanted != 0
        count = int(nonzero.sum())
        lost = int(((added == 0) & nonzero).sum())
        error = float((added - wanted).norm())
    return RoundingLoss(name, value.dtype, lost / count if count else 0.0, error, float(wanted.norm()))


def total_relative_error(losses: list[RoundingLoss]) -> float:
    """‖added − Δ‖ / ‖Δ‖ over all parameters together."""
    norm = sum(loss.norm ** 2 for loss in losses) ** 0.5
    return (sum(loss.error_norm ** 2 for loss in losses) ** 0.5) / norm if norm > 0 else 0.0


def describe_losses(losses: list[RoundingLoss]) -> str:
    """One line per parameter: its dtype, the share of entries rounded away and the relative error."""
    return "; ".join(f"{loss.name} ({str(loss.dtype).removeprefix('torch.')}): {loss.rounded_away:.0%} of the "
                     f"entries rounded away, {loss.relative_error:.1%} error" for loss in losses)
