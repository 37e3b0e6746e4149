"""The shared protocol on a problem whose answer is known: a third, toy arm.

L2-regularised logistic regression, trained like the adapters (Adam, a few epochs, a seeded
random initialisation and data order), so retraining has a real seed noise. Known answers:
Corrupted scores r = 1 exactly; a method that returns a fresh retrain (another seed, a draw
from the retrain distribution) scores r ≈ 0 inside its interval; a request that changes
nothing has an effect size whose interval includes 0, and the frame says no method can be
judged. Plus the formulas of the comparison on hand-made evaluations, the registry, the record.
"""

import json
import math
from itertools import combinations

import numpy as np
import pytest
import torch

import eraserlib
from eraserlab import protocol
from eraserlab.protocol import Context, Evaluation, MethodSettings, Scenario
from eraserlab.protocol.methods import REGISTRY
from eraserlib.metrics import bernoulli_distributions, jensen_shannon_divergence
from eraserlib.toy.convex import LogisticRegression, logistic_loss, make_problem
from eraserlib.errors import NegligibleUpdateWarning
from eraserlib.training import TrainConfig

FEATURES, FRESH_SEEDS = 8, (777, 778, 779)


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


def toy_scenario(changes_nothing: bool = False) -> Scenario:
    """Response correction of 10% of 400 examples (flipped labels), or a "correction" that changes nothing
    that matters: the labels kept, the features moved by 1e-9 (eraserlib refuses new == old outright)."""
    data = make_problem(400, num_features=FEATURES, seed=0).examples
    chosen = sorted(torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:40].tolist())
    old = [(data[i][0], data[i][1] if changes_nothing else 1 - data[i][1]) for i in chosen]
    new = [(data[i][0] + 1e-9, data[i][1]) if changes_nothing else data[i] for i in chosen]
    train = list(data)
    for i, example in zip(chosen, old):
        train[i] = example
    return Scenario(train=train, request=eraserlib.ResponseCorrection(old, new), retrain_data=data, forget=old,
                    corrected=new, test=make_problem(300, num_features=FEATURES, seed=1).examples)


def make_model(seed: int) -> LogisticRegression:
    model = LogisticRegression(FEATURES)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


class ToyEvaluator:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario

    def _p(self, models, examples) -> np.ndarray:
        features = torch.stack([x for x, _ in examples])
        with torch.no_grad():
            return torch.stack([torch.sigmoid(m(features)) for m in models]).mean(0).numpy()

    def __call__(self, models) -> Evaluation:
        forget = self.scenario.forget
        labels = np.array([float(y) for _, y in forget])
        p = self._p(models, forget)
        losses = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        correct = (p > 0.5) == (labels == 1)
        return Evaluation({"forget_loss": float(losses.mean()), "forget_accuracy": float(correct.mean())},
                          {"test": bernoulli_distributions(self._p(models, self.scenario.test)),
                           "corrected": bernoulli_distributions(self._p(models, self.scenario.corrected))},
                          forget_losses=losses, forget_correct=correct)


@pytest.fixture
def fresh_retrains():
    """Methods that return a retrain at another seed: draws from the retrain distribution."""
    for offset in FRESH_SEEDS:
        protocol.register(f"fresh_{offset}")(lambda c, offset=offset: REGISTRY["retrain"].run(c.with_seed(offset)))
    yield [f"fresh_{offset}" for offset in FRESH_SEEDS]
    for offset in FRESH_SEEDS:
        protocol.unregister(f"fresh_{offset}")


def run_toy(methods, retrains: int, changes_nothing: bool = False):
    scenario = toy_scenario(changes_nothing)
    context = Context(scenario, make_model, logistic_loss, TrainConfig(epochs=3, lr=0.05, batch_size=16,
                                                                       weight_decay=1e-2),
                      MethodSettings(erase_solver="exact", erase_damping=0.0), collate_fn=collate)
    methods = protocol.resolve_methods("toy", scenario.kind, methods)
    outcome = protocol.run_protocol(context, ToyEvaluator(scenario), methods, retrains=retrains)
    return protocol.tidy_frame(outcome, head={"seed": 0}, tail={}, device="cpu").set_index("method"), outcome


DISTANCES = ("jsd_test", "jsd_corrected", "forget_loss")


def test_corrupted_scores_one_and_fresh_retrains_score_zero_within_their_intervals(fresh_retrains):
    # K = 6: the noise floor of three pairs (K = 3) is itself uncertain by tens of percent
    frame, outcome = run_toy(["retrain", "llmeraser", *fresh_retrains], retrains=6)
    for d in DISTANCES:
        assert frame.loc["corrupted", [f"r/{d}", f"r_low/{d}", f"r_high/{d}"]].tolist() == [1.0, 1.0, 1.0]
        for method in ["retrain", *fresh_retrains]:
            r, low, high = frame.loc[method, [f"r/{d}", f"r_low/{d}", f"r_high/{d}"]]
            assert low <= 0 <= high and abs(r) < 0.1, (method, d, r, low, high)
        assert frame[f"effect_resolved/{d}"].all() and frame[f"effect_low/{d}"].iloc[0] > 1  # a clear request
    assert frame["effect_resolved"].all() and frame["effect_note"].iloc[0] == "" and outcome.notes == []
    # the exact influence update lands far closer to retraining than Corrupted: r well below 1
    assert frame.loc["llmeraser", "r_high/jsd_test"] < 0.5
    assert frame.loc["llmeraser", "certificate_ratio"] < 1 and np.isnan(frame.loc["retrain", "certificate_ratio"])
    assert frame.loc["retrain", "jsd_test"] == 0.0 and frame.loc["retrain", "delta_relative_error"] == 0.0
    # the retrains' spread of the forget loss makes Corrupted an outlier, the retrains not
    assert abs(frame.loc["retrain", "z/forget_loss"]) < 3 < abs(frame.loc["corrupted", "z/forget_loss"])
    table = protocol.comparison_table(frame.reset_index())
    assert set(table.loc[table.method == "corrupted", "verdict"]) == {"doing nothing (r = 1 by definition)"}
    assert set(table.loc[table.method.isin(fresh_retrains), "verdict"]) == {"as close as another retraining"}


def test_a_request_that_changes_nothing_cannot_be_judged():
    frame, outcome = run_toy(["retrain", "llmeraser", "finetune"], retrains=3, changes_nothing=True)
    # the erase itself says its update is nothing; the protocol keeps that in the record, not on the page
    assert NegligibleUpdateWarning.__name__ in frame.loc["llmeraser", "warnings"]
    for d in DISTANCES:
        assert frame[f"effect_low/{d}"].iloc[0] <= 0 <= frame[f"effect_high/{d}"].iloc[0], d
        assert not frame[f"effect_resolved/{d}"].any()
    assert not frame["effect_resolved"].any()
    assert "below retraining's own noise" in frame["effect_note"].iloc[0] and outcome.notes
    table = protocol.comparison_table(frame.reset_index())
    assert set(table["verdict"]) == {"not judged: the request's effect is below retraining's noise"}


def test_the_same_parameters_give_the_same_numbers():
    first, _ = run_toy(["retrain", "llmeraser", "sisa"], retrains=3)
    again, _ = run_toy(["retrain", "llmeraser", "sisa"], retrains=3)
    timings = [c for c in first.columns if c.endswith("time_s") or c in ("peak_memory_mb", "load_1min")]
    assert first.drop(columns=timings).equals(again.drop(columns=timings))


def fake(test, losses) -> Evaluation:
    test = np.asarray(test, dtype=float)
    return Evaluation({"forget_loss": float(np.mean(losses)), "forget_accuracy": 0.5},
                      {"test": test, "corrected": test}, forget_losses=np.asarray(losses, dtype=float))


def test_the_comparison_follows_its_formulas():
    """d_RR over all pairs, d_UR and d_OR over the retrains of other seeds than the run's, r and the effect."""
    retrains = [fake([[0.5, 0.5], [0.6, 0.4]], [1.0, 2.0]), fake([[0.6, 0.4], [0.5, 0.5]], [1.2, 2.0]),
                fake([[0.55, 0.45], [0.7, 0.3]], [1.0, 2.4])]
    corrupted = fake([[0.9, 0.1], [0.2, 0.8]], [0.2, 0.4])
    method = fake([[0.7, 0.3], [0.5, 0.5]], [0.8, 1.6])
    result = protocol.compare({"corrupted": corrupted, "retrain": retrains[0], "method": method}, retrains,
                              resamples=200, seed=0)

    def jsd(a, b):
        return float(np.mean(jensen_shannon_divergence(a.distributions["test"], b.distributions["test"])))

    pairs = [jsd(a, b) for a, b in combinations(retrains, 2)]
    d_rr, d_or = np.mean(pairs), np.mean([jsd(corrupted, r) for r in retrains[1:]])
    d_ur = np.mean([jsd(method, r) for r in retrains[1:]])
    assert result.setting["d_rr/jsd_test"] == pytest.approx(d_rr, rel=1e-12)
    assert result.setting["d_rr_sd/jsd_test"] == pytest.approx(np.std(pairs, ddof=1), rel=1e-12)
    assert result.setting["d_or/jsd_test"] == pytest.approx(d_or, rel=1e-12)
    assert result.setting["effect/jsd_test"] == pytest.approx((d_or - d_rr) / d_rr, rel=1e-12)
    assert result.columns["method"]["r/jsd_test"] == pytest.approx((d_ur - d_rr) / (d_or - d_rr), rel=1e-12)
    # the run seed's Retrain: its mean distance to the other retrains
    own = np.mean([jsd(retrains[0], r) for r in retrains[1:]])
    assert result.columns["retrain"]["d_ur/jsd_test"] == pytest.approx(own, rel=1e-12)
    assert result.columns["corrupted"]["r/jsd_test"] == 1.0
    # forget loss: |difference of the mean losses|; z-scores against the retrains' mean and sd
    means = [r.row["forget_loss"] for r in retrains]
    loss_pairs = [abs(a - b) for a, b in combinations(means, 2)]
    assert result.setting["d_rr/forget_loss"] == pytest.approx(np.mean(loss_pairs), rel=1e-12)
    assert result.columns["method"]["z/forget_loss"] == pytest.approx(
        (method.row["forget_loss"] - np.mean(means)) / np.std(means, ddof=1), rel=1e-12)
    assert result.columns["method"]["z/forget_accuracy"] == 0.0  # all agree exactly
    assert result.columns["method"]["r_low/jsd_test"] <= result.columns["method"]["r/jsd_test"] <= \
        result.columns["method"]["r_high/jsd_test"]


@pytest.mark.parametrize("low, high, expected", [
    (-0.1, 0.2, "as close as another retraining"), (-0.2, 1.3, "undecided"), (0.2, 0.7, "part of the way"),
    (0.8, 1.2, "no better than doing nothing"), (1.1, 1.5, "harm"), (-0.5, -0.1, "closer than the retrains"),
])
def test_each_interval_gets_its_verdict(low, high, expected):
    row = {"method": "m", "effect_resolved": True, "r_low": low, "r_high": high}
    assert protocol.verdict(row).startswith(expected)
    assert protocol.verdict({**row, "effect_resolved": False}).startswith("not judged")


@pytest.mark.parametrize("learnt", [False, np.bool_(False)])
def test_a_task_retrain_did_not_learn_is_not_judged(learnt):
    row = {"method": "m", "effect_resolved": True, "r_low": 0.1, "r_high": 0.3}
    assert protocol.verdict({**row, "task_learnt": learnt}).startswith("not judged: Retrain is no better")
    for unknown in (None, math.nan, True, np.bool_(True)):  # the arm does not say, or the task was learnt
        assert protocol.verdict({**row, "task_learnt": unknown}).startswith("part of the way")


def test_fewer_than_two_retrains_judge_nothing_and_say_why():
    retrains = [fake([[0.5, 0.5]], [1.0])]
    result = protocol.compare({"corrupted": fake([[0.9, 0.1]], [0.2]), "retrain": retrains[0]}, retrains)
    assert math.isnan(result.columns["corrupted"]["r/jsd_test"]) and not result.setting["effect_resolved"]
    assert "1 retrain(s)" in result.setting["effect_note"]


def test_methods_are_registered_once_with_their_request_kinds():
    ir, qm, rc = protocol.KINDS
    assert protocol.method_names() == ("corrupted", "retrain", "llmeraser", "llmeraser_gn", "llmeraser_gn_steps",
                                       "gradient_ascent", "finetune", "sisa", "receraser", "apa", "e2urec")
    rivals = ("receraser", "apa", "e2urec")  # the paper's rivals: the recommendation arm only, every kind
    assert all(m in protocol.method_names("rec", k) for m in rivals for k in (ir, qm, rc))
    assert not any(m in protocol.method_names("mllm", k) for m in rivals for k in (ir, qm, rc))
    assert "gradient_ascent" not in protocol.method_names("rec", rc)  # the rec arm's IR baseline only
    assert "gradient_ascent" in protocol.method_names("mllm", rc) and "finetune" not in protocol.method_names("rec", ir)
    assert protocol.resolve_methods("rec", rc, ["sisa", "retrain"]) == ["corrupted", "retrain", "sisa"]
    with pytest.raises(ValueError, match="Unknown methods"):
        protocol.resolve_methods("rec", rc, ["recraser"])
    with pytest.raises(ValueError, match="applies to"):
        protocol.resolve_methods("rec", rc, ["gradient_ascent"], task="rc")
    # a budget's cut: every method that applies except those left out; naming one both ways is an error
    every = protocol.resolve_methods("mllm", rc, None)
    assert protocol.resolve_methods("mllm", rc, None, leave_out=["llmeraser_gn_steps", "sisa"]) == [
        m for m in every if m not in ("llmeraser_gn_steps", "sisa")]
    with pytest.raises(ValueError, match="both asked for and left out"):
        protocol.resolve_methods("rec", rc, ["sisa", "retrain"], leave_out=["sisa"])
    with pytest.raises(ValueError, match="Unknown methods"):
        protocol.resolve_methods("rec", rc, None, leave_out=["sysa"])
    with pytest.raises(ValueError, match="registered already"):
        protocol.register("sisa")(lambda context: None)
    with pytest.raises(ValueError, match="Unknown request kinds"):
        protocol.register("other", kinds=("removal",))
    with pytest.raises(ValueError, match="retrains must be"):
        run_toy(["retrain"], retrains=0)


def test_without_retrain_nothing_is_compared():
    frame, outcome = run_toy(["llmeraser"], retrains=3)
    assert list(frame.index) == ["corrupted", "llmeraser"] and (frame["retrains"] == 0).all()
    assert not any(c.startswith(("r/", "jsd_", "delta_")) for c in frame.columns)
    assert outcome.record["retrains"] == [] and np.isfinite(frame.loc["llmeraser", "certificate_ratio"])


def test_the_record_is_written_atomically_as_strict_json(tmp_path):
    frame, outcome = run_toy(["retrain", "llmeraser"], retrains=2)
    frame = frame.reset_index()
    protocol.write_run(tmp_path, "toy", frame, {"note": math.nan, **outcome.record})
    saved = json.loads((tmp_path / "toy.json").read_text())
    assert saved["note"] is None and [row["method"] for row in saved["rows"]] == ["corrupted", "retrain", "llmeraser"]
    assert len(saved["comparison"]) == 3 * len(DISTANCES) and [r["seed"] for r in saved["retrains"]] == [0, 1000]
    assert "2 retrains" in saved["comparison_notes"][0]
    assert (tmp_path / "toy-comparison.csv").read_text().startswith("seed,method,distance,d_ur,r,r_low,r_high")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-comparison.csv", "toy.csv", "toy.json"]
