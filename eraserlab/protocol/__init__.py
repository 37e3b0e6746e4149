"""The experiment protocol both arms share: one method loop, one comparison with retraining, one record.

* :mod:`~eraserlab.protocol.scenario`: :class:`Scenario`, the data as trained on, the request and
  what it leaves;
* :mod:`~eraserlab.protocol.settings`: :class:`MethodSettings`, the methods' settings;
* :mod:`~eraserlab.protocol.methods`: the registry, each method registered once for both arms
  (its docstring says how to add a baseline);
* :mod:`~eraserlab.protocol.runner`: :func:`run_protocol`, Corrupted, K retrains, the methods,
  the evaluations and the comparison; :func:`tidy_frame`;
* :mod:`~eraserlab.protocol.compare`: distances to the retrains, the normalised residual r,
  the request's effect size, bootstrap intervals; :func:`comparison_table`;
* :mod:`~eraserlab.protocol.records`: :func:`write_run`, CSV and strict JSON.

An arm keeps only what is its own: its data (it builds the :class:`Scenario`), its base model
(it gives ``make_model(seed)``) and its evaluator (models → :class:`Evaluation`).
"""

from eraserlab.protocol.compare import Evaluation, compare, comparison_table, verdict
from eraserlab.protocol.methods import (
    REGISTRY,
    Context,
    MethodOutput,
    method_names,
    register,
    resolve_methods,
    timed_sisa,
    unregister,
)
from eraserlab.protocol.records import cost_share, write_run
from eraserlab.protocol.pool import RetrainPool
from eraserlab.protocol.runner import Outcome, retrain_seeds, run_protocol, tidy_frame
from eraserlab.protocol.scenario import KINDS, Scenario
from eraserlab.protocol.settings import MethodSettings, SettingsAliases

__all__ = [
    "KINDS", "REGISTRY", "Context", "Evaluation", "MethodOutput", "MethodSettings", "Outcome", "Scenario",
    "SettingsAliases", "compare", "cost_share", "comparison_table", "method_names", "register", "resolve_methods",
    "RetrainPool", "retrain_seeds", "run_protocol", "tidy_frame", "timed_sisa", "unregister", "verdict", "write_run",
]
