"""eraserlib: influence-based unlearning for LoRA adapters (LLMEraser, ICLR 2025, done right).

    import eraserlib
    request = eraserlib.InstanceRemoval(examples)
    result = eraserlib.erase(model, loss_fn, train_data, request)
    eraserlib.apply_delta(model, result.delta)

See ``eraserlib.erase`` for the maths and ``docs/CONTRACTS.md`` for the package layout.
The public names are imported lazily, so that ``import eraserlab.rec`` or the notebook
runner do not pay for importing torch until they use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC = {
    "InstanceRemoval": "eraserlib.requests",
    "QueryModification": "eraserlib.requests",
    "ResponseCorrection": "eraserlib.requests",
    "erase": "eraserlib.influence",
    "apply_delta": "eraserlib.influence",
    "EraseResult": "eraserlib.influence",
    "EraserError": "eraserlib.errors",
    "InvalidRequestError": "eraserlib.errors",
    "NoTrainableParametersError": "eraserlib.errors",
    "NonFiniteError": "eraserlib.errors",
    "SolverDivergedError": "eraserlib.errors",
    "NegativeCurvatureError": "eraserlib.errors",
    "DoubleBackwardUnsupportedError": "eraserlib.errors",
    "ProblemTooLargeError": "eraserlib.errors",
    "AdapterError": "eraserlib.errors",
    "InvalidArgumentError": "eraserlib.errors",
    "LossFunctionError": "eraserlib.errors",
    "PrecisionError": "eraserlib.errors",
    "EraseWarning": "eraserlib.errors",
    "NotConvergedWarning": "eraserlib.errors",
    "SolverRestartedWarning": "eraserlib.errors",
    "SafetyWarning": "eraserlib.errors",
    "IndefiniteSystemWarning": "eraserlib.errors",
    "NegligibleUpdateWarning": "eraserlib.errors",
    "RetainedLossWarning": "eraserlib.errors",
    "SafetyRails": "eraserlib.safety",
    "causal_lm_loss": "eraserlib.losses",
    "CausalLMCollator": "eraserlib.losses",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'eraserlib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))


if TYPE_CHECKING:  # for type checkers and IDEs
    from eraserlib.influence import EraseResult, apply_delta, erase
    from eraserlib.errors import (
        AdapterError,
        DoubleBackwardUnsupportedError,
        EraserError,
        EraseWarning,
        IndefiniteSystemWarning,
        InvalidArgumentError,
        InvalidRequestError,
        LossFunctionError,
        NegativeCurvatureError,
        NegligibleUpdateWarning,
        NonFiniteError,
        NotConvergedWarning,
        NoTrainableParametersError,
        PrecisionError,
        ProblemTooLargeError,
        RetainedLossWarning,
        SafetyWarning,
        SolverDivergedError,
        SolverRestartedWarning,
    )
    from eraserlib.losses import CausalLMCollator, causal_lm_loss
    from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
    from eraserlib.safety import SafetyRails
