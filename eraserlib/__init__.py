"""eraserlib: influence-based unlearning for LoRA adapters (LLMEraser, ICLR 2025, done right).

    import eraserlib
    request = eraserlib.InstanceRemoval(examples)
    result = eraserlib.erase(model, loss_fn, train_data, request)
    eraserlib.apply_delta(model, result.delta)

See ``eraserlib.erase`` for the maths and ``docs/CONTRACTS.md`` for the package layout.
"""

from eraserlib.erase import EraseResult, apply_delta, erase
from eraserlib.errors import (
    AdapterError,
    DoubleBackwardUnsupportedError,
    EraserError,
    InvalidRequestError,
    NegativeCurvatureError,
    NonFiniteError,
    NoTrainableParametersError,
    ProblemTooLargeError,
    SolverDivergedError,
)
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection

__version__ = "0.1.0"

__all__ = [
    "InstanceRemoval",
    "QueryModification",
    "ResponseCorrection",
    "erase",
    "apply_delta",
    "EraseResult",
    "EraserError",
    "InvalidRequestError",
    "NoTrainableParametersError",
    "NonFiniteError",
    "SolverDivergedError",
    "NegativeCurvatureError",
    "DoubleBackwardUnsupportedError",
    "ProblemTooLargeError",
    "AdapterError",
]
