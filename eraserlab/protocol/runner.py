"""The one method loop of both arms: Corrupted, K retrains, every other method, evaluation, comparison.

    outcome = run_protocol(context, evaluator, methods)
    frame = tidy_frame(outcome, head={"dataset": ..., "task": ...}, tail={...}, device=device)

The arm gives a :class:`~eraserlab.protocol.methods.Context` (scenario, model factory, loss,
training config, settings) and an evaluator (model list → :class:`~eraserlab.protocol.compare.Evaluation`);
everything else is the same for both arms:

1. **Corrupted**, trained on the data as given;
2. **K retrains** on the data the request leaves, with the seeds :func:`retrain_seeds` (each
   seed sets the adapter's initialisation *and* the data order; everything else is fixed). The
   first is the run's seed, the same initial adapter as Corrupted: the ``retrain`` row;
3. every other method, in registry order, from Corrupted (or fresh models);
4. a certificate for every method that returns an update Δ of Corrupted (``certificate_*``);
5. every model set evaluated on the same examples, the K − 1 other retrains too;
6. the distances to the run seed's Retrain (``jsd_<split>``, ``delta_*``, as before) and the
   comparison with the K retrains (:mod:`eraserlab.protocol.compare`).

The retrains are trained once per request and shared by every method's comparison; their cost
beyond the first is ``retrains_extra_time_s`` (training and evaluation), on every row.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from eraserlib import metrics
from eraserlib.adapters import adapter_change
from eraserlib.certificate import gradient_certificate
from eraserlib.errors import EraseWarning
from eraserlab.protocol.compare import Evaluation, compare, run_seed_distances
from eraserlab.protocol.methods import REGISTRY, Context, MethodOutput
from eraserlab.protocol.pool import RetrainPool
from eraserlab.records import machine_load

#: Seeds of the retrains after the first (the run's): run seed + this × k, far from the seeds
#: SISA's shards use (run seed + shard).
RETRAIN_SEED_STRIDE = 1000

DELTA_COLUMNS = ("delta_cosine", "delta_norm_ratio", "delta_relative_error")

Evaluator = Callable[[Sequence[torch.nn.Module]], Evaluation]


def retrain_seeds(seed: int, count: int) -> list[int]:
    """The K retrain seeds of a run: its own seed first, then seed + 1000·k."""
    return [seed + RETRAIN_SEED_STRIDE * k for k in range(count)]


@dataclass
class Outcome:
    """What :func:`run_protocol` returns.

    Attributes:
        methods: The methods run, in frame order.
        rows: Method → its frame columns (metrics, distances to Retrain, cost, certificate,
            comparison).
        setting: Columns that describe the whole run (the same on every row).
        record: Entries for the JSON record (the methods' own, ``retrains``, ``certificates``).
        notes: Sentences for a reader (e.g. that the request's effect is below the noise).
    """

    methods: list[str]
    rows: dict[str, dict[str, Any]]
    setting: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_protocol(context: Context, evaluator: Evaluator, methods: Sequence[str], *,
                 retrains: int | None = None, pool: RetrainPool | None = None) -> Outcome:
    """Run, evaluate and compare ``methods`` on ``context.scenario`` (see the module docstring).

    Args:
        context: The arm's context (``corrupted`` unset).
        evaluator: Model list → :class:`~eraserlab.protocol.compare.Evaluation`.
        methods: From :func:`~eraserlab.protocol.methods.resolve_methods` (Corrupted first).
        retrains: K (default ``context.settings.retrain_seeds``); with ``"retrain"`` not among
            the methods no retrain is trained and nothing is compared.
        pool: Retrains shared with the other run seeds of the same request
            (:class:`~eraserlab.protocol.pool.RetrainPool`): the retrain seeds are this run's, then
            the pool's other seeds, and a retrain the pool holds is reused, not trained again.

    Returns:
        The :class:`Outcome`.
    """
    count = context.settings.retrain_seeds if retrains is None else int(retrains)
    if "retrain" not in methods:
        count = 0
    elif count < 1:
        raise ValueError(f"retrains must be ≥ 1 when Retrain runs (≥ 2 to measure its noise), got {count}.")
    seeds = pool.seeds_for(context.seed, count, retrain_seeds) if pool is not None else retrain_seeds(context.seed, count)
    outputs: dict[str, MethodOutput] = {}
    heard: dict[str, list[str]] = {}  # method → the eraserlib warnings its step raised
    bar = tqdm(total=len(methods) + max(count - 1, 0), desc="methods", disable=not context.progress)
    trained = _step(bar, "corrupted", lambda: _trained("corrupted", context, evaluator, pool))
    outputs["corrupted"] = trained.output
    context = dataclasses.replace(context, corrupted=outputs["corrupted"].models[0])
    retrained = [_step(bar, f"retrain seed {s}", lambda s=s: _trained("retrain", context.with_seed(s), evaluator, pool))
                 for s in seeds]
    if retrained:
        outputs["retrain"] = retrained[0].output
    for name in methods:
        if name not in outputs:
            outputs[name] = _step(bar, name, lambda name=name: REGISTRY[name].run(context), heard)
    bar.close()
    certificates: dict[str, tuple[dict[str, Any], float]] = {}
    for name, out in outputs.items():
        if out.delta is not None and context.settings.certificate:
            # the norm at Corrupted is the same for every update: the first certificate's pass serves all
            known = next(iter(certificates.values()))[0]["gradient_norm"] if certificates else None
            certificates[name] = _certificate(context, out.delta, known)

    evaluations, eval_times = {}, {}
    for name in tqdm(methods, desc="evaluate", disable=not context.progress, leave=False):
        if name == "retrain":
            evaluations[name], eval_times[name] = retrained[0].evaluation, retrained[0].eval_time_s
        elif name == "corrupted":
            evaluations[name], eval_times[name] = trained.evaluation, trained.eval_time_s
        else:
            evaluations[name], eval_times[name] = _timed(evaluator, outputs[name].models)
    retrain_evaluations = [r.evaluation for r in retrained]

    rows = {name: {**evaluations[name].row} for name in methods}
    if retrained:
        reference = adapter_change(retrained[0].output.models[0], context.corrupted)
        for name in methods:
            rows[name].update(run_seed_distances(evaluations[name], evaluations["retrain"]))
            rows[name].update(_delta_columns(outputs[name], context.corrupted, reference))
    for name in methods:
        rows[name].update(outputs[name].cost, eval_time_s=eval_times[name],
                          warnings="; ".join(sorted({w.split(":")[0] for w in heard.get(name, [])})))
        rows[name].update(_certificate_columns(certificates.get(name)))
    setting: dict[str, Any] = {"retrains": count}
    notes: list[str] = []
    if retrained:
        comparison = compare(evaluations, retrain_evaluations, resamples=context.settings.bootstrap_resamples,
                             confidence=context.settings.confidence, seed=context.seed)
        for name in methods:
            rows[name].update(comparison.columns[name])
        setting.update(comparison.setting)
        notes = comparison.notes
    # what this run spent on the other seeds' retrains (0 for those a pool already held)
    setting["retrains_extra_time_s"] = sum(r.output.cost["time_s"] + r.eval_time_s for r in retrained[1:] if not r.reused)
    setting["retrains_reused"] = sum(r.reused for r in retrained)
    setting["corrupted_reused"] = trained.reused

    record: dict[str, Any] = {}
    for name in methods:
        record.update(outputs[name].record)
    record["retrains"] = [{"seed": s, **r.output.cost, "eval_time_s": r.eval_time_s, "reused": r.reused,
                           **r.evaluation.row} for s, r in zip(seeds, retrained)]
    record["certificates"] = {name: c for name, (c, _) in certificates.items()}
    record["comparison_notes"] = notes
    record["warnings"] = heard
    return Outcome(list(methods), rows, setting, record, notes)


@dataclass
class _Retrain:
    output: MethodOutput
    evaluation: Evaluation
    eval_time_s: float
    reused: bool


def _trained(method: str, context: Context, evaluator: Evaluator, pool: RetrainPool | None) -> _Retrain:
    """Corrupted or the retrain of ``context.seed``: from the pool when it holds it, else trained and evaluated
    (and pooled). Only what trains a fresh adapter on fixed data can be pooled: these two."""
    scenario = context.scenario
    key = None
    if pool is not None:
        data = scenario.train if method == "corrupted" else scenario.retrain_data
        key = pool.key(context.seed, data, [scenario.test, scenario.forget, scenario.corrected, *scenario.extra.values()],
                       context.train_config, method=method)
        found = pool.lookup(key, seed=context.seed, method=method)
        if found is not None:
            model = context.fresh()
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name in found.state:
                        parameter.copy_(found.state[name])
            return _Retrain(MethodOutput([model], dict(found.cost), dict(found.record)), found.evaluation,
                            found.eval_time_s, reused=True)
    output = REGISTRY[method].run(context)
    evaluation, seconds = _timed(evaluator, output.models)
    if pool is not None:
        pool.put(key, output.models[0], evaluation, seconds, output.cost, output.record, seed=context.seed,
                 method=method)
    return _Retrain(output, evaluation, seconds, reused=False)


def _step(bar: tqdm, label: str, run: Callable[[], Any], heard: dict[str, list[str]] | None = None) -> Any:
    """``run()`` with the bar's label; eraserlib's warnings (a solve above its tolerance, a safety rail…) are
    kept in ``heard[label]`` for the frame and the record instead of printed (a chapter's page would show
    them as errors), every other warning passes through."""
    bar.set_postfix_str(label)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EraseWarning)
        output = run()
    for warning in caught:
        if issubclass(warning.category, EraseWarning) and heard is not None:
            heard.setdefault(label, []).append(f"{warning.category.__name__}: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    bar.update()
    return output


def _timed(evaluator: Evaluator, models) -> tuple[Evaluation, float]:
    start = time.perf_counter()
    evaluation = evaluator(models)
    return evaluation, time.perf_counter() - start


def _certificate(context: Context, delta, gradient_norm: float | None = None) -> tuple[dict[str, Any], float]:
    """The gradient certificate of Corrupted + Δ on the retrain data, and its time (with the pass at
    Corrupted only when ``gradient_norm`` is not given)."""
    start = time.perf_counter()
    certificate = gradient_certificate(context.corrupted, context.loss_fn, context.scenario.retrain_data, delta,
                                       weight_decay=context.train_config.weight_decay,
                                       collate_fn=context.collate_fn, batch_size=context.settings.erase_batch_size,
                                       gradient_norm=gradient_norm, process_group=False)
    return certificate.to_dict(), time.perf_counter() - start


def _certificate_columns(found: tuple[dict[str, Any], float] | None) -> dict[str, float]:
    if found is None:
        return {"certificate_ratio": math.nan, "certificate_gradient_norm": math.nan,
                "certificate_gradient_norm_after": math.nan, "certificate_time_s": math.nan}
    certificate, seconds = found
    return {"certificate_ratio": certificate["ratio"], "certificate_gradient_norm": certificate["gradient_norm"],
            "certificate_gradient_norm_after": certificate["gradient_norm_after"], "certificate_time_s": seconds}


def _delta_columns(output: MethodOutput, corrupted, reference: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The method's change of the adapter against Retrain's, both from Corrupted (NaN for an ensemble)."""
    if not output.single:
        return dict.fromkeys(DELTA_COLUMNS, math.nan)
    change = adapter_change(output.models[0], corrupted)
    return {"delta_cosine": metrics.delta_cosine(change, reference),
            "delta_norm_ratio": metrics.delta_norm_ratio(change, reference),
            "delta_relative_error": metrics.delta_relative_error(change, reference)}


def tidy_frame(outcome: Outcome, *, head: Mapping[str, Any], tail: Mapping[str, Any], device,
               lead: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per method: ``head`` (the setting), ``method``, ``lead``, the outcome's columns, ``tail``, the machine.

    The machine columns are ``threads``, ``device`` and ``load_1min`` (timings on a shared machine
    are inflated by its load).
    """
    machine = {"threads": torch.get_num_threads(), "device": str(device), "load_1min": machine_load()}
    return pd.DataFrame([{**head, "method": name, **(lead or {}), **outcome.rows[name], **outcome.setting, **tail,
                          **machine} for name in outcome.methods])
