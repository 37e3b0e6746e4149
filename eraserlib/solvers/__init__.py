"""Solvers for (H + λI) x = b over the trainable parameters, one module each.

* ``llmeraser`` (:class:`LLMEraser`) — the paper's method done right: stochastic minimisation
  of the quadratic ½ xᵀ(H + λI)x − bᵀx with one mini-batch product per step.
* ``cg`` (:class:`CG`) — conjugate gradient on full-data (or fixed-subsample) products.
* ``lissa`` (:class:`LiSSA`) — the LiSSA recursion (Agarwal et al. 2017) on mini-batch products.
* ``exact`` (:class:`Exact`) — forms the dense p×p matrix and solves in float64 (small p only).
* ``datainf`` (:class:`DataInf`) — DataInf's closed form (Kwon et al. 2024), a per-tensor
  empirical-Fisher approximation.

Each takes its own options dataclass (``LLMEraserOptions``, ...; ``Options.help()`` lists the
fields) and returns a :class:`SolverResult`. A new solver subclasses :class:`Solver` in its own
module here and is added to :data:`SOLVERS`; :func:`eraserlib.erase` then accepts its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eraserlib.solvers.base import (
    Callback,
    InvalidOptionsError,
    Solver,
    SolverOptions,
    SolverResult,
    Spectrum,
    make_options,
)
from eraserlib.solvers.cg import CG, CGOptions
from eraserlib.solvers.datainf import DataInf, DataInfOptions
from eraserlib.solvers.exact import Exact, ExactOptions, dense_curvature, dense_gauss_newton, dense_hessian
from eraserlib.solvers.lissa import LiSSA, LiSSAOptions
from eraserlib.solvers.llmeraser import LLMEraser, LLMEraserOptions
from eraserlib.solvers.spectrum import estimate_spectrum

#: Solver name → class.
SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (LLMEraser, CG, LiSSA, Exact, DataInf)}


def get_solver(name: str, options: SolverOptions | Mapping[str, Any] | None = None) -> Solver:
    """The solver called ``name`` with ``options`` (validated now, before any work).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        InvalidOptionsError: an option the solver does not have.
    """
    if name not in SOLVERS:
        raise ValueError(f"Unknown solver {name!r}; choose one of {sorted(SOLVERS)}.")
    return SOLVERS[name](options)


__all__ = [
    "CG", "CGOptions", "Callback", "DataInf", "DataInfOptions", "Exact", "ExactOptions", "InvalidOptionsError",
    "LLMEraser", "LLMEraserOptions", "LiSSA", "LiSSAOptions", "SOLVERS", "Solver", "SolverOptions", "SolverResult",
    "Spectrum", "dense_curvature", "dense_gauss_newton", "dense_hessian", "estimate_spectrum", "get_solver", "make_options",
]
