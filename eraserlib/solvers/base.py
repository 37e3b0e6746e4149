"""What every solver of (H + λI) x = b shares: its typed options, its result, its interface.

A solver receives a :class:`~eraserlib.objective.TrainingObjective` (which gives H v, the
Hessian of the training objective times a vector, weight decay included), the right-hand side
b and the damping λ, and returns a :class:`SolverResult`. Its settings are one frozen
dataclass per solver whose every field carries a one-line ``help`` (as peft's ``LoraConfig``
does); :func:`make_options` builds one from a dict and names the fields when a key is wrong,
before any work is done.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from eraserlib.objective import TrainingObjective

#: Called as ``callback(answer_so_far, hvp_count)`` while a solver runs (accuracy-vs-work studies);
#: it must not modify the tensor.
Callback = Callable[[torch.Tensor, int], None]


def option(default: Any, help: str) -> Any:  # noqa: A002 - the name peft and kronfluence use
    """A dataclass field with a default and its one-line help text."""
    return field(default=default, metadata={"help": help})


class InvalidOptionsError(ValueError):
    """Solver options name a field the solver does not have, or have a wrong type."""


@dataclass(frozen=True)
class SolverOptions:
    """Base of every solver's options."""

    @classmethod
    def help(cls) -> str:
        """One line per field: name, default, help."""
        return "\n".join(f"{f.name} (default {f.default!r}): {f.metadata.get('help', '')}"
                         for f in dataclasses.fields(cls))


def make_options(options_type: type[SolverOptions], given: SolverOptions | Mapping[str, Any] | None,
                 solver: str) -> SolverOptions:
    """``given`` as an instance of ``options_type``: None → defaults, a dict → its fields.

    Raises:
        InvalidOptionsError: an unknown field (the message lists the valid ones), or options
            of another solver.
    """
    if given is None:
        return options_type()
    if isinstance(given, SolverOptions):
        if not isinstance(given, options_type):
            raise InvalidOptionsError(f"solver {solver!r} takes {options_type.__name__}, got {type(given).__name__}.")
        return given
    if not isinstance(given, Mapping):
        raise InvalidOptionsError(f"options must be a {options_type.__name__} or a dict, got {type(given).__name__}.")
    names = {f.name for f in dataclasses.fields(options_type)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise InvalidOptionsError(
            f"solver {solver!r} has no option {', '.join(map(repr, unknown))}. Its options:\n{options_type.help()}")
    return options_type(**given)


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes:
        solution: x, flat (p,).
        stop_reason: Why it stopped: ``"tolerance"``, ``"max_steps"``, ``"max_iterations"``,
            ``"depth"``, ``"direct_solve"``, ``"closed_form"``.
        residual_estimate: The solver's own estimate of its relative error at the end (NaN when
            it has none).
        residual_history: ``(hvp_count, estimate)`` along the way.
        steps: Iterations (mini-batch products for the stochastic solvers).
        converged: Whether the stop met the solver's tolerance (a direct solve always does; None: the
            solver has no stopping rule, as LiSSA).
        details: Solver-specific figures (step size, restarts, eigenvalues, ...).
    """

    solution: torch.Tensor
    stop_reason: str
    residual_estimate: float = math.nan
    residual_history: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    converged: bool | None = True
    details: dict[str, Any] = field(default_factory=dict)

    def diagnostics(self) -> dict[str, Any]:
        """Everything but the solution, flat, for :class:`~eraserlib.EraseResult` and manifests."""
        return {"stop_reason": self.stop_reason, "residual_estimate": self.residual_estimate,
                "residual_history": list(self.residual_history), "steps": self.steps,
                "converged": self.converged, **self.details}


@dataclass(frozen=True)
class Spectrum:
    """Extreme eigenvalues of the data Hessian (weight decay excluded).

    Attributes:
        smallest: λ_min.
        largest: λ_max.
        exact: True for a dense eigendecomposition; False for Ritz values (which lie inside
            the spectrum, so the damping rule keeps a margin).
    """

    smallest: float
    largest: float
    exact: bool = False


class Solver(abc.ABC):
    """One way to solve (H + λI) x = b. Subclasses set ``name`` and ``Options`` and implement :meth:`solve`.

    Args:
        options: The solver's options (an instance of its ``Options``, a dict of its fields, or
            None for the defaults).
    """

    name: ClassVar[str]
    Options: ClassVar[type[SolverOptions]]
    #: False for a solver with its own damping rule (DataInf): "auto" then means that rule.
    follows_damping_rule: ClassVar[bool] = True

    def __init__(self, options: SolverOptions | Mapping[str, Any] | None = None):
        self.options = make_options(self.Options, options, self.name)

    def prepare(self, objective: TrainingObjective, *, progress: bool | None = None) -> None:  # noqa: B027
        """Work done once before the spectrum and the solve (the dense Hessian of ``exact``)."""

    def needs_spectrum(self) -> bool:
        """Whether :meth:`solve` needs a spectrum estimate (e.g. λ_max for its step) that was not given."""
        return False

    def spectrum(self, objective: TrainingObjective, iterations: int, sample_size: int | None) -> Spectrum:
        """The spectrum the damping rule sees; default Lanczos on a sample (see :mod:`.spectrum`)."""
        from eraserlib.solvers.spectrum import estimate_spectrum

        return estimate_spectrum(objective, iterations=iterations, sample_size=sample_size)

    @abc.abstractmethod
    def solve(self, objective: TrainingObjective, b: torch.Tensor, damping: float | None, *,
              progress: bool | None = None, callback: Callback | None = None,
              spectrum: Spectrum | None = None) -> SolverResult:
        """x ≈ (H + λI)⁻¹ b.

        Args:
            objective: The training objective (products, mini-batches).
            b: The right-hand side, flat (p,).
            damping: λ ≥ 0 (None only for solvers with their own rule).
            progress: Show a progress bar.
            callback: See :data:`Callback`.
            spectrum: The spectrum already estimated for the damping rule, to reuse (e.g. λ_max
                for a step size); None: the solver estimates what it needs itself.
        """
