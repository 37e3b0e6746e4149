"""Every method against retraining's own noise: distances to K retrains, a normalised residual, intervals.

Retraining is itself random: K retrains on the data the request leaves, with K seeds (adapter
initialisation and data order), land at different adapters. For each distance d between two
models' evaluations —

* ``jsd_<split>``: the mean over the split's examples of the Jensen–Shannon divergence (bits)
  of the two answer distributions (``test``, ``corrected``, and any extra split of the arm);
* ``forget_loss``: |mean forget-set loss of one − that of the other|;

the comparison reports

* d_RR, the mean over the K(K−1)/2 pairs of retrains (the noise floor), and its sd over pairs;
* d_OR, the mean distance of Corrupted to the retrains, and d_UR the same for each method U;
* r_U = (d_UR − d_RR) / (d_OR − d_RR): 0 = as close as another retraining, 1 = no better than
  doing nothing (Corrupted scores exactly 1), above 1 = harm;
* the request's effect size (d_OR − d_RR) / d_RR. Where its interval includes 0 the request
  moved the model less than retraining's own noise, and no method can be judged on that
  distance (``effect_resolved/<d>`` is False and ``effect_note`` says so);
* z-scores of each method's forget-set loss and accuracy against the K retrains' mean and sd.

**Which retrains a distance is taken to.** Every method starts from Corrupted, which shares the
run seed's adapter initialisation and data order with the first retrain (Retrain): a distance
to *that* retrain carries no seed noise, while d_RR is all seed noise, so comparing the two
would credit a method with the shared seed (with a request that changes nothing, Corrupted
*is* the first retrain, and d_OR over all K would fall a third below d_RR at K = 3). So d_UR
and d_OR are means over the K − 1 retrains of the *other* seeds, and the Retrain row's d_UR is
its mean distance to the others, an estimate of d_RR. The distance to the run seed's Retrain
alone stays in the frame as ``jsd_test``, ``jsd_corrected``... (continuity with earlier runs).

**Intervals** carry two sources of noise. (1) The examples: a bootstrap over the evaluated
examples (resampled with replacement, seeded; every per-example mean recomputed on the
resample, r and the effect size with them; percentile interval). (2) The seeds: a method's
distance to the retrains comes from one realisation of it and K − 1 of retraining, and moves
with the seeds as much as a distance between two retrains does, and that is more than the
examples move it (on the convex toy of ``tests/lab/test_protocol.py`` an example-only interval
left out 0 for a fresh retrain at another seed: resamples of a fixed set of models cannot see
the seeds). The seed term is a prediction half-width t · sd / scale, sd the spread
of the pair distances (``d_rr_sd/<d>``), t Student's quantile with K − 1 degrees of freedom,
scale d_OR − d_RR for r and d_RR for the effect size; it is added in quadrature to each side
of the bootstrap interval. K = 3 makes t = 4.3: with few retrains the floor is uncertain and
the intervals say so. With K = 2 (one pair, no spread) the intervals are the examples' only,
and the notes say that.

Columns: per method ``d_ur/<d>``, ``r/<d>``, ``r_low/<d>``, ``r_high/<d>``, ``z/forget_loss``,
``z/forget_accuracy``; per setting (the same on every row) ``d_rr/<d>``, ``d_rr_sd/<d>``,
``d_or/<d>``, ``effect/<d>``, ``effect_low/<d>``, ``effect_high/<d>``, ``effect_resolved/<d>``,
``effect_resolved`` (on every distance), ``effect_note``. :func:`comparison_table` turns a frame
into the long table (one row per method × distance) with a verdict per row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from eraserlib.metrics import jensen_shannon_divergence

METHOD_STATS = ("d_ur", "r", "r_low", "r_high")
SETTING_STATS = ("d_rr", "d_rr_sd", "d_or", "effect", "effect_low", "effect_high", "effect_resolved")
Z_METRICS = ("forget_loss", "forget_accuracy")
#: Columns that identify a setting and a method in a frame, where present.
ID_COLUMNS = ("dataset", "benchmark", "task", "ratio", "seed", "eval_split", "method")


@dataclass
class Evaluation:
    """What an arm's evaluator returns for one model set (one adapter, or SISA's shards).

    Attributes:
        row: The metric columns (must hold ``forget_loss`` and ``forget_accuracy``).
        distributions: Split name → ``(E, C)`` answer distributions (rows sum to 1), at least
            ``"test"`` and ``"corrected"``; ``None`` for a split the run lacks (its columns NaN).
        forget_losses: ``(E_f,)`` each forget-set example's loss (as trained on).
        forget_correct: ``(E_f,)`` whether each one still gets the trained answer.
    """

    row: dict[str, Any]
    distributions: dict[str, np.ndarray | None]
    forget_losses: np.ndarray
    forget_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass
class Comparison:
    """What :func:`compare` returns: frame columns per method and per setting, and notes."""

    columns: dict[str, dict[str, Any]]
    setting: dict[str, Any]
    notes: list[str]


def distance_names(evaluation: Evaluation) -> list[str]:
    """The distances an evaluation supports: ``jsd_<split>`` per present split, then ``forget_loss``."""
    return [f"jsd_{split}" for split, value in evaluation.distributions.items() if value is not None] + ["forget_loss"]


def run_seed_distances(evaluation: Evaluation, reference: Evaluation) -> dict[str, float]:
    """``jsd_<split>`` of ``evaluation`` to one reference (the run seed's Retrain), NaN for absent splits."""
    out = {}
    for split, mine in evaluation.distributions.items():
        theirs = reference.distributions.get(split)
        out[f"jsd_{split}"] = (math.nan if mine is None or theirs is None
                               else float(np.mean(jensen_shannon_divergence(mine, theirs))))
    return out


def _per_example(distance: str, a: Evaluation, b: Evaluation) -> np.ndarray:
    if distance == "forget_loss":
        return np.asarray(a.forget_losses, dtype=np.float64) - np.asarray(b.forget_losses, dtype=np.float64)
    split = distance.removeprefix("jsd_")
    return jensen_shannon_divergence(a.distributions[split], b.distributions[split])


class _Distance:
    """One distance with one fixed set of bootstrap resamples, shared by every pair of models."""

    def __init__(self, name: str, size: int, resamples: int, seed: int, index: int):
        self.name = name
        rng = np.random.default_rng([seed, index, size])
        self.weights = rng.multinomial(size, np.full(size, 1.0 / size), size=resamples) / size  # (B, E)

    def __call__(self, a: Evaluation, b: Evaluation) -> tuple[float, np.ndarray]:
        """The distance of a to b and its value on every resample, shape (B,)."""
        values = _per_example(self.name, a, b)
        point, boot = float(values.mean()), self.weights @ values
        if self.name == "forget_loss":  # |mean difference|: resample the differences, then take |.|
            return abs(point), np.abs(boot)
        return point, boot


def _mean(pairs: Sequence[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    return float(np.mean([p for p, _ in pairs])), np.mean([b for _, b in pairs], axis=0)


def _interval(point: float, samples: np.ndarray, confidence: float, seed_width: float) -> tuple[float, float]:
    """The bootstrap percentile interval, each side widened in quadrature by the seed term."""
    samples = samples[~np.isnan(samples)]
    if len(samples) == 0 or not math.isfinite(point):
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha], method="inverted_cdf")  # no interpolation with ±inf
    seed_width = 0.0 if math.isnan(seed_width) else seed_width
    return (float(point - math.hypot(max(point - low, 0.0), seed_width)),
            float(point + math.hypot(max(high - point, 0.0), seed_width)))


def _seed_noise(pair_sd: float, retrains: int, confidence: float) -> float:
    """t_{K−1} · sd of the pair distances: how far one more distance to the retrains may fall by seed luck."""
    if retrains < 3 or not math.isfinite(pair_sd):
        return math.nan
    return float(student_t.ppf((1 + confidence) / 2, retrains - 1)) * pair_sd


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(numerator) / np.float64(denominator) if np.ndim(numerator) == 0 else \
            np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def compare(evaluations: Mapping[str, Evaluation], retrains: Sequence[Evaluation], *, resamples: int = 1000,
            confidence: float = 0.95, seed: int = 0) -> Comparison:
    """The comparison of every method with K retrains (see the module docstring).

    Args:
        evaluations: Method name → evaluation; holds ``"corrupted"``, and ``"retrain"`` as the
            same evaluation as ``retrains[0]``.
        retrains: The K retrains' evaluations, the run seed's first.
        resamples: Bootstrap resamples of the examples.
        confidence: Coverage of the percentile intervals.
        seed: Seeds the resamples (the run's seed: the same run gives the same intervals).

    Returns:
        The :class:`Comparison`.
    """
    k = len(retrains)
    columns: dict[str, dict[str, Any]] = {name: {} for name in evaluations}
    setting: dict[str, Any] = {}
    names = distance_names(evaluations["corrupted"])
    unresolved = []
    for index, name in enumerate(names):
        size = len(evaluations["corrupted"].forget_losses) if name == "forget_loss" else \
            len(evaluations["corrupted"].distributions[name.removeprefix("jsd_")])
        stats = _compare_distance(_Distance(name, size, resamples, seed, index), evaluations, retrains, confidence)
        for method, values in stats.pop("methods").items():
            columns[method].update({f"{stat}/{name}": value for stat, value in values.items()})
        setting.update({f"{stat}/{name}": value for stat, value in stats.items()})
        if not stats["effect_resolved"]:
            unresolved.append(name)
    for method, evaluation in evaluations.items():
        for metric in Z_METRICS:
            columns[method][f"z/{metric}"] = _z_score(evaluation.row[metric], [r.row[metric] for r in retrains])
    notes = []
    if k < 2:
        notes.append(f"{k} retrain(s): retraining's noise is unknown, so no method is judged against it "
                     "(run at least 2 retrains, e.g. retrains=3).")
    elif k == 2:
        notes.append("2 retrains: one pair, so the spread of retraining over seeds is unknown and the intervals "
                     "cover the examples' noise only (run 3 retrains or more for the seeds').")
    elif unresolved:
        notes.append(f"On this setting the request's effect on {', '.join(unresolved)} is below retraining's own "
                     f"noise (the interval of its effect size includes 0, {k} retrains): no method can be judged on "
                     f"{'it' if len(unresolved) == 1 else 'them'}.")
    setting["effect_resolved"] = k >= 2 and not unresolved
    setting["effect_note"] = " ".join(notes)
    return Comparison(columns, setting, notes)


def _compare_distance(distance: _Distance, evaluations: Mapping[str, Evaluation], retrains: Sequence[Evaluation],
                      confidence: float) -> dict[str, Any]:
    nan_method = dict.fromkeys(METHOD_STATS, math.nan)
    if len(retrains) < 2:
        return {**dict.fromkeys(SETTING_STATS[:-1], math.nan), "effect_resolved": False,
                "methods": {name: dict(nan_method) for name in evaluations}}
    pairs = [distance(a, b) for a, b in combinations(retrains, 2)]
    d_rr, d_rr_boot = _mean(pairs)
    others = retrains[1:]  # the retrains of other seeds than the run's (module docstring)

    def to_retrains(evaluation: Evaluation) -> tuple[float, np.ndarray]:
        return _mean([distance(evaluation, r) for r in others if r is not evaluation])

    d_rr_sd = float(np.std([p for p, _ in pairs], ddof=1)) if len(pairs) > 1 else math.nan
    noise = _seed_noise(d_rr_sd, len(retrains), confidence)
    d_or, d_or_boot = to_retrains(evaluations["corrupted"])
    effect, effect_boot = float(_ratio(d_or - d_rr, d_rr)), _ratio(d_or_boot - d_rr_boot, d_rr_boot)
    effect_low, effect_high = _interval(effect, effect_boot, confidence, float(_ratio(noise, d_rr)))
    methods = {}
    for name, evaluation in evaluations.items():
        d_ur, d_ur_boot = (d_or, d_or_boot) if name == "corrupted" else to_retrains(evaluation)
        r = float(_ratio(d_ur - d_rr, d_or - d_rr))
        r_boot = _ratio(d_ur_boot - d_rr_boot, d_or_boot - d_rr_boot)
        # Corrupted is the reference itself: r = 1 by definition, whatever the seeds
        width = 0.0 if name == "corrupted" else float(_ratio(noise, abs(d_or - d_rr)))
        low, high = _interval(r, r_boot, confidence, width)
        methods[name] = {"d_ur": d_ur, "r": r, "r_low": low, "r_high": high}
    return {"d_rr": d_rr, "d_rr_sd": d_rr_sd, "d_or": d_or, "effect": effect, "effect_low": effect_low,
            "effect_high": effect_high, "effect_resolved": bool(effect_low > 0), "methods": methods}


def _z_score(value: float, reference: Sequence[float]) -> float:
    """(value − mean) / sd over the retrains (sd with K − 1); ±inf where the retrains agree exactly."""
    if len(reference) < 2:
        return math.nan
    mean, sd = float(np.mean(reference)), float(np.std(reference, ddof=1))
    tolerance = 1e-12 * max(1.0, abs(mean))  # equal up to rounding (e.g. accuracies of a few examples)
    if sd <= tolerance:
        return 0.0 if abs(value - mean) <= tolerance else math.copysign(math.inf, value - mean)
    return (value - mean) / sd


def verdict(row: Mapping[str, Any]) -> str:
    """A sentence for one method on one distance, from its r interval and the effect's resolution.

    A row whose ``task_learnt`` is False (Retrain no better than a constant answer) is not judged.
    """
    learnt = row.get("task_learnt")  # absent or NaN: the arm does not say (the recommendation arm)
    if learnt is not None and not (isinstance(learnt, float) and math.isnan(learnt)) and not bool(learnt):
        return "not judged: Retrain is no better than a constant answer (the task was not learnt)"
    if not row.get("effect_resolved"):
        return "not judged: the request's effect is below retraining's noise"
    if row.get("method") == "corrupted":
        return "doing nothing (r = 1 by definition)"
    low, high = row["r_low"], row["r_high"]
    if low <= 0 and high >= 1:
        return "undecided: the interval holds both retraining's noise and doing nothing"
    if low <= 0 <= high:
        return "as close as another retraining"
    if high < 0:
        return "closer than the retrains are to each other"
    if low <= 1 <= high:
        return "no better than doing nothing"
    if low > 1:
        return "harm: further from retraining than doing nothing"
    return "part of the way: closer than doing nothing, not as close as a retraining"


def comparison_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The long comparison table of a results frame (one or many runs): one row per method × distance.

    Columns: the frame's identifying columns (:data:`ID_COLUMNS` present), ``distance``, the
    per-method and per-setting statistics (module docstring, without the ``/<d>``), ``retrains``
    and ``verdict``. Distances a row has no value for are left out.
    """
    ids = [c for c in ID_COLUMNS if c in frame.columns]
    names = [c.split("/", 1)[1] for c in frame.columns if c.startswith("r/")]
    rows = []
    for record in frame.to_dict(orient="records"):
        for name in names:
            if pd.isna(record.get(f"d_ur/{name}", math.nan)):
                continue
            row = {c: record[c] for c in ids}
            row["distance"] = name
            row.update({stat: record.get(f"{stat}/{name}", math.nan) for stat in METHOD_STATS + SETTING_STATS})
            row["effect_resolved"] = bool(row["effect_resolved"])
            row["retrains"] = record.get("retrains")
            row["verdict"] = verdict({**row, "task_learnt": record.get("task_learnt")})
            rows.append(row)
    columns = [*ids, "distance", *METHOD_STATS, *SETTING_STATS, "retrains", "verdict"]
    return pd.DataFrame(rows, columns=columns)
