"""Code the chapter notebooks share, so that each notebook's cells keep only what is its own.

The three recommendation chapters (instance removal, query modification, response correction)
run one experiment function over (data set, request, share) settings and seeds, and report
them alike: :func:`run_settings`, :func:`glue_settings`, :func:`settings_tables`,
:func:`methods_figure`. The prose of a chapter quotes the glued numbers by key
(``<data set>_<request>_<percent>_<method>_<column>``, e.g. ``movielens_ir_10_llmeraser_jsd_test``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from eraserbook.palette import METHOD_LABELS
from eraserbook.report import compact, folded, method_means, ordered_methods, plot_by_method, summary_table

DATASET_NAMES = {"movielens": "MovieLens-100K", "lastfm": "Last.fm-2K", "bookcrossing": "Book-Crossing"}
TASK_NAMES = {"ir": "instance removal", "qm_removal": "history-item removal",
              "qm_replacement": "history-item replacement", "rc": "response correction"}
#: The columns every recommendation chapter reports as closeness to Retrain and cost; the others a
#: chapter lists are its quality measures. The two topics are two tables, narrow enough to read.
CLOSENESS_AND_COST = ("jsd_test", "jsd_corrected", "delta_cosine", "time_s")
#: Columns whose means over seeds each setting glues for the prose.
GLUED_COLUMNS = ("jsd_test", "jsd_corrected", "time_s", "delta_cosine", "forget_loss", "forget_accuracy",
                 "corrected_accuracy")
SETTING = ["dataset", "task", "ratio"]


def start_chapter(results_dir: str) -> Path:
    """A chapter's set-up: no progress bars, one torch thread, the book's plot style; the results folder.

    One thread beat two on a shared 2-core machine, and the runner runs two chapters at once.
    """
    import seaborn as sns
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    torch.set_num_threads(1)
    sns.set_theme(style="whitegrid", context="notebook")
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    return results


def setting_name(dataset: str, task: str, ratio: float) -> str:
    """E.g. "MovieLens-100K, instance removal 10%"."""
    return f"{DATASET_NAMES[dataset]}, {TASK_NAMES[task]} {ratio:.0%}"


def run_seeds(experiment: Callable[..., pd.DataFrame], *arguments: Any, seeds: Sequence[int],
              request_seed: int | None = 0, **options: Any) -> pd.DataFrame:
    """``experiment(*arguments, seed=s, ...)`` for every seed of one request; one frame.

    The request is the same for every seed (``request_seed``; None: each seed draws its own), so
    the seeds differ only by what training varies — the adapter's initialisation, the data
    order, the solver's mini-batches — and share their retrains: seed s trains the retrain of
    seed s, and every other seed compares with it (:class:`eraserlab.protocol.RetrainPool`), so
    K = len(seeds) retrains cost what one retrain per seed costs.
    """
    from eraserlab.protocol import RetrainPool

    pool = RetrainPool(seeds) if request_seed is not None else None
    return pd.concat([experiment(*arguments, seed=seed, request_seed=request_seed, retrain_pool=pool, **options)
                      for seed in seeds], ignore_index=True)


def run_settings(experiment: Callable[..., pd.DataFrame], settings: Sequence[Sequence[Any]], seeds: Sequence[int],
                 results: Path, **options: Any) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Runs ``experiment`` for every setting and seed (:func:`run_seeds`); writes ``all_runs.csv``.

    Args:
        experiment: ``eraserlab.rec.experiment.run_experiment`` (or a function like it).
        settings: ``(data set, request, share)`` triples, or ``(data set, request, share, left out)``
            with a list of methods that setting does not run (``run_experiment``'s ``leave_out``).
        seeds: run seeds.
        results: the chapter's results folder; each run's record goes to ``results/runs``.
        **options: passed to every call (``model_size``, ``data_dir``, ``base_model``, ``device``,
            ``request_seed``).

    Returns:
        The tidy frame of all runs (one row per method, setting and seed), and the runs' records
        (JSON) by file stem.
    """
    frames = [run_seeds(experiment, setting[0], setting[1], ratio=setting[2], seeds=seeds, results_dir=results / "runs",
                        progress=False, **({"leave_out": list(setting[3])} if len(setting) > 3 else {}), **options)
              for setting in (tuple(s) for s in settings)]
    runs = pd.concat(frames, ignore_index=True)
    runs.to_csv(results / "all_runs.csv", index=False)
    records = {path.stem: json.loads(path.read_text()) for path in sorted((results / "runs").glob("*.json"))}
    return runs, records


def judge_settings(runs: pd.DataFrame, results: Path) -> pd.DataFrame:
    """Every method against retraining's noise, per setting (:func:`eraserbook.judging.judged`).

    Writes ``judged.csv`` and glues what the prose quotes, keyed by setting as the other numbers
    (``movielens_rc_10_llmeraser_r_forget_loss``, ``movielens_rc_10_effect_jsd_test_low``...).
    """
    from myst_nb import glue

    from eraserbook import judging

    table = judging.judged(runs, SETTING)
    table.to_csv(results / "judged.csv", index=False)
    glue("n_retrains", int(runs["retrains"].max()), display=False)
    judging.glue_judged(table, lambda row: f"{row.dataset}_{row.task}_{int(round(row.ratio * 100))}")
    return table


def judging_displays(table: pd.DataFrame) -> list:
    """The effect sizes, the residuals r and (folded) the verdicts: ``display(*judging_displays(t))``."""
    from eraserbook import judging

    return [judging.effect_table(table, SETTING, setting_name), judging.residual_table(table, SETTING, setting_name),
            folded(judging.verdict_table(table, SETTING, setting_name), "Verdicts per method and distance")]


def glance_figure(table: pd.DataFrame):
    """r against cost per method, one panel per setting (:func:`eraserbook.judging.glance_figure`)."""
    from eraserbook import judging

    return judging.glance_figure(table, SETTING, setting_name)


def seed_counts(runs: pd.DataFrame):
    """How many seeds each method ran in each setting, folded away (bookkeeping)."""
    counts = {}
    for (dataset, task, ratio), part in runs.groupby(SETTING, sort=False):
        by_method = part.groupby("method")["time_s"].count()
        counts[setting_name(dataset, task, ratio)] = {
            METHOD_LABELS.get(m, m): int(by_method[m]) for m in ordered_methods(part)}
    table = pd.DataFrame(counts)
    table.index.name = "method"
    return folded(table, "Runs: seeds per method and setting")


def glue_setting(key: str, part: pd.DataFrame, score: str) -> None:
    """Glue the numbers the prose quotes for one setting (means over seeds).

    Args:
        key: the setting's prefix, e.g. ``movielens_ir_10``.
        part: the runs of that setting.
        score: the chapter's quality column (``auc``, ``hit_ratio_at_1``).
    """
    from myst_nb import glue

    means = {column: method_means(part, column) for column in (*GLUED_COLUMNS, score) if column in part}
    for column, values in means.items():
        for method, value in values.items():
            glue(f"{key}_{method}_{column}", float(value), display=False)
    closer = means["jsd_test"]["llmeraser"] < means["jsd_test"]["corrupted"]
    glue(f"{key}_closer_test", "closer to" if closer else "farther from", display=False)
    closer = means["jsd_corrected"]["llmeraser"] < means["jsd_corrected"]["corrupted"]
    glue(f"{key}_closer_corrected", "closer to" if closer else "farther from", display=False)
    seeds_closer = int(sum(
        part[(part.method == "llmeraser") & (part.seed == s)]["jsd_test"].iloc[0]
        < part[(part.method == "corrupted") & (part.seed == s)]["jsd_test"].iloc[0] for s in part.seed.unique()))
    glue(f"{key}_seeds_closer", f"{seeds_closer} of {part.seed.nunique()}", display=False)
    by_seed = {method: part[part.method == method].set_index("seed") for method in ("llmeraser", "retrain")}
    gap = by_seed["llmeraser"][score] - by_seed["retrain"][score]
    glue(f"{key}_gap", float(gap.mean()), display=False)
    glue(f"{key}_gap_sd", float(gap.std(ddof=1)) if len(gap) > 1 else float("nan"), display=False)
    ratio_time = by_seed["llmeraser"]["time_s"] / by_seed["retrain"]["time_s"]
    glue(f"{key}_time_ratio", float(ratio_time.mean()), display=False)
    glue(f"{key}_time_ratio_max", float(ratio_time.max()), display=False)
    glue(f"{key}_n_train", int(part.n_train.iloc[0]), display=False)
    glue(f"{key}_n_request", int(part.n_request.iloc[0]), display=False)
    glue(f"{key}_n_test", int(part.n_test.iloc[0]), display=False)


def glue_settings(runs: pd.DataFrame, score: str, seeds: Sequence[int]) -> None:
    """:func:`glue_setting` for every setting in ``runs``, and ``n_seeds``."""
    from myst_nb import glue

    for (dataset, task, ratio), part in runs.groupby(SETTING, sort=False):
        glue_setting(f"{dataset}_{task}_{int(round(ratio * 100))}", part, score)
    glue("n_seeds", len(seeds), display=False)


def settings_tables(runs: pd.DataFrame, metrics: dict[str, str], results: Path) -> list:
    """Mean ± sd per method and setting: ``summary.csv`` with every metric, two tables to show.

    Args:
        runs: the frame :func:`run_settings` returned.
        metrics: column -> header, in order (the chapter's quality measures and
            ``CLOSENESS_AND_COST``).
        results: the chapter's results folder.

    Returns:
        Two compact tables, the quality measures and the closeness to Retrain with the cost,
        rows (setting, method); ``display(*tables)`` shows them.
    """
    tables = []
    for (dataset, task, ratio), part in runs.groupby(SETTING, sort=False):
        table = summary_table(part, metrics)
        table.insert(0, "setting", setting_name(dataset, task, ratio))
        tables.append(table)
    table = pd.concat(tables)
    table.to_csv(results / "summary.csv")
    shown = table.reset_index().set_index(["setting", "method"])
    closeness = [header for column, header in metrics.items() if column in CLOSENESS_AND_COST]
    quality = [header for column, header in metrics.items() if column not in CLOSENESS_AND_COST]
    return [compact(shown[quality], "How well each method answers"),
            compact(shown[closeness], "How close each method comes to Retrain, and its wall-clock")]


def methods_figure(runs: pd.DataFrame, score: str, score_label: str):
    """One row of panels per setting: ``score``, the JSD to Retrain on the test set, the wall-clock.

    Each row is headed by its setting and each panel by its measure, so no axis needs a long
    rotated label.

    Returns:
        The matplotlib figure (the caller glues and closes it: :func:`glue_figure`).
    """
    import matplotlib.pyplot as plt

    settings = list(runs.groupby(SETTING, sort=False).groups)
    fig = plt.figure(figsize=(12, 3.9 * len(settings)), layout="constrained")
    for row, (dataset, task, ratio) in zip(fig.subfigures(len(settings), 1, squeeze=False)[:, 0], settings):
        part = runs[(runs.dataset == dataset) & (runs.task == task) & (runs.ratio == ratio)]
        axes = row.subplots(1, 3)
        row.suptitle(setting_name(dataset, task, ratio), fontweight="bold")
        plot_by_method(part, score, axes[0], score_label, title=score_label)
        plot_by_method(part[part.method != "retrain"], "jsd_test", axes[1], "", title="JSD to Retrain, test (bits)")
        plot_by_method(part, "time_s", axes[2], "", log=True, title="wall-clock of the method (s, log scale)")
    return fig


def glue_figure(name: str, fig) -> None:
    """Glues ``fig`` under ``name`` for a ``{glue:figure}`` and closes it (so it shows only there)."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)
