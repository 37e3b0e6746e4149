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


class InvalidArgumentError(EraserError, ValueError, TypeError):
    """An argument has the wrong type or is out of range (``batch_size=2.5``, ``seed="0"``, ...).

    A ``ValueError`` and a ``TypeError`` at once, so either ``except`` catches it.
    """


class LossFunctionError(EraserError, TypeError):
    """``loss_fn`` returned something erase cannot differentiate: not a scalar tensor, detached from the
    autograd graph, independent of the trainable parameters, or not finite."""


class PrecisionError(EraserError, ValueError):
    """Adding the update in the parameter's dtype (e.g. bfloat16) would round most of it away."""


class EraseWarning(UserWarning):
    """Base class of the warnings eraserlib gives: the erase ran, but its result deserves a look.

    Turn them into errors with ``warnings.simplefilter("error", eraserlib.EraseWarning)``; the
    command line (``python -m eraserlib``) exits with status 3 when one is raised.
    """


class NotConvergedWarning(EraseWarning):
    """An iterative solver stopped (at its step budget) with its error estimate above its tolerance."""


class SolverRestartedWarning(EraseWarning):
    """The stochastic solver diverged and restarted with a smaller step before it converged."""


class IndefiniteSystemWarning(EraseWarning):
    """The spectrum estimate proves H + λI indefinite, and a stochastic solver ran on it: its answer minimises nothing."""


class SafetyWarning(EraseWarning):
    """A safety rail fired (:mod:`eraserlib.safety`): the update may not do what the request asked."""


class NegligibleUpdateWarning(SafetyWarning):
    """The update barely changes the model: the request's examples' loss did not move."""


class RetainedLossWarning(SafetyWarning):
    """The loss on the data the request leaves rose beyond the rail's threshold: the update harms the model."""


class RankFailedError(EraserError, RuntimeError):
    """Another rank of a distributed erase failed; the message names it and its error."""


class DistributedConfigurationError(EraserError, ValueError):
    """The ranks disagree on the problem, or the model is wrapped or sharded in a way erase cannot use."""
