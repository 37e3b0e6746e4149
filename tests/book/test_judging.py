"""eraserbook.judging folds the protocol's per-seed judgement into a chapter's tables: known inputs, known folds."""

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from eraserbook import judging  # noqa: E402

BY = ["dataset", "task", "ratio"]


def _row(dataset, seed, method, r, time_s, resolved=True, effect=(2.0, 1.0, 3.0)):
    row = {"dataset": dataset, "task": "rc", "ratio": 0.1, "seed": seed, "method": method, "time_s": time_s}
    for d in judging.DISTANCES:
        row.update({f"r/{d}": r, f"r_low/{d}": r - 0.1, f"r_high/{d}": r + 0.1, f"effect/{d}": effect[0] + seed,
                    f"effect_low/{d}": effect[1] + seed, f"effect_high/{d}": effect[2] + seed,
                    f"effect_resolved/{d}": resolved})
    return row


def _runs(second_seed_resolved=True):
    rows = []
    for seed, r in ((0, 0.4), (1, 0.6)):
        resolved = True if seed == 0 else second_seed_resolved
        rows += [_row("movielens", seed, "corrupted", 1.0, 10.0, resolved),
                 _row("movielens", seed, "retrain", 0.0, 20.0, resolved),
                 _row("movielens", seed, "llmeraser", r, 2.0 * (seed + 1), resolved)]
    return pd.DataFrame(rows)


def test_seeds_fold_into_mean_sd_envelope_cost_and_verdict():
    table = judging.judged(_runs(), BY)
    one = table[(table.method == "llmeraser") & (table.distance == "forget_loss")].iloc[0]
    assert one.r == pytest.approx(0.5) and one.r_sd == pytest.approx(math.sqrt(0.02))
    assert (one.r_low, one.r_high) == pytest.approx((0.4, 0.6))
    assert (one.effect, one.effect_low, one.effect_high) == pytest.approx((2.5, 1.0, 4.0))  # envelope of the seeds
    assert one.cost_share == pytest.approx((2 / 20 + 4 / 20) / 2) and one.resolved_seeds == 2
    assert one.verdict.startswith("part of the way")
    corrupted = table[table.method == "corrupted"].iloc[0]
    assert corrupted.verdict.startswith("doing nothing") and corrupted.cost_share == pytest.approx(0.5)


def test_one_unresolved_seed_leaves_the_setting_unjudged():
    table = judging.judged(_runs(second_seed_resolved=False), BY)
    assert set(table.verdict) == {"not judged: the request's effect is below retraining's noise"}
    assert set(table.resolved_seeds) == {1}


def test_a_seed_whose_retrain_did_not_learn_the_task_leaves_the_setting_unjudged():
    runs = _runs().assign(task_learnt=lambda f: f.seed == 0)
    assert set(judging.judged(runs, BY).verdict) == {
        "not judged: Retrain is no better than a constant answer (the task was not learnt)"}
    assert not judging.judged(_runs().assign(task_learnt=True), BY).verdict.str.startswith("not judged").any()
    # runs of both arms read back together: the recommendation arm's rows do not say
    mixed = pd.concat([_runs().assign(task_learnt=np.nan), _runs().assign(dataset="spurious", task_learnt=False)])
    verdicts = judging.judged(mixed, BY).groupby("dataset").verdict.agg(lambda v: v.str.startswith("not judged").all())
    assert verdicts.to_dict() == {"movielens": False, "spurious": True}


def test_tables_and_figure_render():
    table = judging.judged(_runs(), BY)
    names = lambda *key: f"{key[0]} {key[1]} {key[2]:.0%}"  # noqa: E731
    html = judging.residual_table(table, BY, names).to_html()
    assert "0.50 ± 0.14" in html and "movielens rc 10%" in html and "0.150" in html
    assert "[1.00, 4.00]" in judging.effect_table(table, BY, names).to_html()
    assert "Retrain" not in set(judging.verdict_table(table, BY, names).index.get_level_values("method"))
    fig = judging.glance_figure(table, BY, names)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
