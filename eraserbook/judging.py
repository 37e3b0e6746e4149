"""Every method judged against retraining's own noise, the same way in every experiment chapter.

A run of the protocol (:mod:`eraserlab.protocol.compare`) gives, per method and distance, the
normalised residual r (0: as close to the retrains as another retraining is, 1: no better than
Corrupted) with its interval, and per setting the request's effect size with its interval. A
chapter runs several seeds of one request; this module folds them:

* r: mean ± sd over seeds; its verdict is the protocol's on the seeds' mean interval
  (:func:`eraserlab.protocol.verdict`), and "not judged" unless the effect is resolved in every
  seed and (multimodal runs) Retrain learnt the task in every seed;
* the effect size: mean over seeds, and the envelope of the seeds' intervals (lowest low,
  highest high), so a reader sees the widest the noise allows;
* the cost share: a method's wall-clock over its run's Retrain, mean over seeds.

The distances are the test set's and the corrected (or removed) examples' Jensen–Shannon
divergence, and the forget-set loss: what the request is about.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from eraserbook.palette import METHOD_COLORS, METHOD_LABELS
from eraserbook.report import compact, ordered_methods
from eraserlab.protocol import cost_share

DISTANCES = {"jsd_test": "test set", "jsd_corrected": "request's examples", "forget_loss": "forget-set loss"}
#: The goal an erase is held to: r at most this on every distance ...
GOAL_R = 0.2
#: ... at most this share of one retraining's wall-clock.
GOAL_COST = 0.1
#: The r axis of the glance figure; a method beyond it is drawn on the edge as a triangle.
R_SHOWN = (-0.5, 2.0)


def _distances(runs: pd.DataFrame) -> list[str]:
    return [d for d in DISTANCES if f"r/{d}" in runs and runs[f"r/{d}"].notna().any()]


def judged(runs: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per setting (``by``), method and distance: r over seeds, its verdict, the effect, the cost.

    Columns: ``by``, ``method``, ``distance``, ``r`` and ``r_sd`` (mean and sd over seeds),
    ``r_low`` and ``r_high`` (means of the seeds' interval ends), ``verdict``, ``effect``,
    ``effect_low``, ``effect_high`` (envelope over seeds), ``resolved_seeds``, ``seeds``,
    ``cost_share``.
    """
    from eraserlab.protocol import verdict

    rows = []
    for key, part in runs.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        part = part.assign(cost_share=cost_share(part))
        # the multimodal arm's runs say whether Retrain learnt the task at all; one that did not judges nothing
        said = part["task_learnt"].dropna() if "task_learnt" in part else pd.Series(dtype=bool)
        learnt = bool(said.astype(bool).all()) if len(said) else None
        for d in _distances(part):
            resolved = part.groupby("seed")[f"effect_resolved/{d}"].first().astype(bool)
            setting = {"effect": part[f"effect/{d}"].mean(), "effect_low": part[f"effect_low/{d}"].min(),
                       "effect_high": part[f"effect_high/{d}"].max(), "resolved_seeds": int(resolved.sum()),
                       "seeds": int(resolved.size)}
            for method in ordered_methods(part):
                rows_of = part[part.method == method]
                r = rows_of[f"r/{d}"]
                row = {**dict(zip(by, key)), "method": method, "distance": d, "r": r.mean(),
                       "r_sd": r.std(ddof=1) if r.count() > 1 else np.nan, "r_low": rows_of[f"r_low/{d}"].mean(),
                       "r_high": rows_of[f"r_high/{d}"].mean(), **setting,
                       "cost_share": rows_of["cost_share"].mean()}
                row["verdict"] = verdict({"method": method, "effect_resolved": bool(resolved.all()),
                                          "task_learnt": learnt, "r_low": row["r_low"], "r_high": row["r_high"]})
                rows.append(row)
    return pd.DataFrame(rows)


def setting_label(key: tuple, by: Sequence[str], names=None) -> str:
    return names(*key) if names else ", ".join(str(k) for k in key)


def effect_table(table: pd.DataFrame, by: Sequence[str], names=None):
    """Per setting and distance: the request's effect size, its interval and in how many seeds it is resolved."""
    rows = {}
    for key, part in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for d, one in part.groupby("distance", sort=False):
            first = one.iloc[0]
            rows[(setting_label(key, by, names), DISTANCES[d])] = {
                "effect size": f"{first.effect:.2f}", "interval (all seeds)": f"[{first.effect_low:.2f}, "
                                                                          f"{first.effect_high:.2f}]",
                "above the noise in": f"{first.resolved_seeds} of {first.seeds} seeds"}
    shown = pd.DataFrame(rows).T
    shown.index.names = ["setting", "distance"]
    return compact(shown, "The request's effect against retraining's noise: (d_OR − d_RR) / d_RR")


def residual_table(table: pd.DataFrame, by: Sequence[str], names=None):
    """Per setting and method: r on each distance (mean ± sd over seeds) and the cost share."""
    rows = {}
    for key, part in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for method, one in part.groupby("method", sort=False):
            row = {f"r, {DISTANCES[d]}": _mean_sd(x.r.iloc[0], x.r_sd.iloc[0]) for d, x in one.groupby("distance",
                                                                                                    sort=False)}
            row["cost (× Retrain)"] = f"{one.cost_share.iloc[0]:.3f}"
            rows[(setting_label(key, by, names), METHOD_LABELS.get(method, method))] = row
    shown = pd.DataFrame(rows).T
    shown.index.names = ["setting", "method"]
    return compact(shown, "r: 0 = as close as another retraining, 1 = no better than Corrupted (mean ± sd over seeds)")


def verdict_table(table: pd.DataFrame, by: Sequence[str], names=None):
    """Per setting, method and distance: the verdict in words, with the interval it rests on."""
    shown = table[table.method != "retrain"].assign(
        setting=lambda f: [setting_label(tuple(k), by, names) for k in f[list(by)].itertuples(index=False)],
        method=lambda f: f.method.map(lambda m: METHOD_LABELS.get(m, m)),
        distance=lambda f: f.distance.map(DISTANCES),
        interval=lambda f: [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(f.r_low, f.r_high)])
    return shown.set_index(["setting", "method", "distance"])[["interval", "verdict"]]


def _mean_sd(mean: float, sd: float) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.2f}" if np.isnan(sd) else f"{mean:.2f} ± {sd:.2f}"


def glance_figure(table: pd.DataFrame, by: Sequence[str], names=None):
    """One panel per setting: each method's r (mean over the distances and seeds; whiskers: the
    lowest and highest distance's mean) against its cost share of a retraining, log scale; the
    goal (r ≤ 0.2 at ≤ 0.1 of a retraining) shaded; r outside ``R_SHOWN`` drawn on the edge as a
    triangle pointing the way it left. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    settings = list(table.groupby(list(by), sort=False).groups)
    columns = min(len(settings), 2)
    rows = -(-len(settings) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.4 * rows), squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, settings):
        key = key if isinstance(key, tuple) else (key,)
        part = table[(table[list(by)] == pd.Series(dict(zip(by, key)))).all(axis=1)]
        part = part[~part.method.isin(["corrupted", "retrain"])]
        ax.axhspan(R_SHOWN[0] - 0.05, GOAL_R, xmin=0, xmax=1, color="#009E73", alpha=0.07)
        ax.axvline(GOAL_COST, color="#009E73", lw=0.8, ls=":")
        ax.axhline(0, color="#009E73", lw=1)
        ax.axhline(1, color="#999999", lw=1, ls="--")
        for method, one in part.groupby("method", sort=False):
            mean, low, high, cost = one.r.mean(), one.r.min(), one.r.max(), one.cost_share.iloc[0]
            color = METHOD_COLORS.get(method, "#333333")
            shown = float(np.clip(mean, *R_SHOWN))  # a point beyond the axis sits on its edge, as a triangle
            marker = "o" if shown == mean else ("^" if mean > shown else "v")
            low, high = max(min(low, shown), R_SHOWN[0]), min(max(high, shown), R_SHOWN[1])
            ax.errorbar([cost], [shown], yerr=[[shown - low], [high - shown]], fmt=marker, color=color, ms=7,
                        capsize=3, label=METHOD_LABELS.get(method, method))
        ax.set_ylim(R_SHOWN[0] - 0.05, R_SHOWN[1] + 0.05)
        ax.set_xscale("log")
        ax.set_title(setting_label(key, by, names), fontsize="medium")
        ax.set_xlabel("wall-clock, share of one retraining (log)")
        ax.set_ylabel("r (0: a retraining, 1: Corrupted)")
    for ax in list(axes.flat)[len(settings):]:
        ax.set_visible(False)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    return fig


def glue_judged(table: pd.DataFrame, key_of) -> None:
    """Glue what the prose quotes: ``<key>_<method>_r_<distance>`` (and ``_sd``, ``_verdict``),
    ``<key>_<method>_cost_share``, ``<key>_effect_<distance>`` (and ``_low``, ``_high``,
    ``_resolved``: "k of n seeds"), ``<key>_best``: the method with the smallest mean r."""
    from myst_nb import glue

    for (key, method), one in table.groupby([table.apply(key_of, axis=1), "method"], sort=False):
        for row in one.itertuples():
            glue(f"{key}_{method}_r_{row.distance}", float(row.r), display=False)
            glue(f"{key}_{method}_r_{row.distance}_sd", float(row.r_sd), display=False)
            glue(f"{key}_{method}_verdict_{row.distance}", row.verdict, display=False)
        glue(f"{key}_{method}_cost_share", float(one.cost_share.iloc[0]), display=False)
    for (key, distance), one in table.groupby([table.apply(key_of, axis=1), "distance"], sort=False):
        row = one.iloc[0]  # the setting's numbers, the same on every method's row
        glue(f"{key}_effect_{distance}", float(row.effect), display=False)
        glue(f"{key}_effect_{distance}_low", float(row.effect_low), display=False)
        glue(f"{key}_effect_{distance}_high", float(row.effect_high), display=False)
        glue(f"{key}_effect_{distance}_resolved", f"{row.resolved_seeds} of {row.seeds}", display=False)
    erases = table[~table.method.isin(["corrupted", "retrain"])]
    for key, part in erases.groupby(erases.apply(key_of, axis=1), sort=False):
        means = part.groupby("method", sort=False).r.mean()
        glue(f"{key}_best", METHOD_LABELS.get(means.idxmin(), means.idxmin()), display=False)
        glue(f"{key}_best_r", float(means.min()), display=False)
