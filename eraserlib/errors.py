"""The errors eraserlib raises. Each names the problem and, where there is one, the fix."""


class EraserError(Exception):
    """Base class of every error raised by eraserlib."""


class InvalidRequestError(EraserError, ValueError):
    """The unlearning request is malformed (empty, mismatched lengths, too large)."""


class NoTrainableParametersError(EraserError, ValueError):
    """The model has no parameter with ``requires_grad=True``: there is nothing to erase from."""


class NonFiniteError(EraserError, FloatingPointError):
    """A gradient or a Hessian-vector product contains NaN or Inf."""


class SolverDivergedError(EraserError, ArithmeticError):
    """The iterative solver's residual grew instead of shrinking."""


class NegativeCurvatureError(EraserError, ArithmeticError):
    """``H + λI`` is not positive definite along some direction, so the quadratic has no minimum."""


class DoubleBackwardUnsupportedError(EraserError, RuntimeError):
    """An operation in the model (usually fused attention) has no second derivative."""


class ProblemTooLargeError(EraserError, ValueError):
    """A solver that forms a dense matrix was asked to do so for too many parameters."""


class AdapterError(EraserError, OSError):
    """Loading or saving an adapter would lose or overwrite something, or failed."""
