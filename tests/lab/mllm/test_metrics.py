"""Benchmark metrics against hand-computed cases."""

import pytest

from eraserlab.mllm import metrics


@pytest.mark.parametrize(
    "answer, yes",
    [
        ("Yes", True),
        ("No", False),
        ("no", False),
        ("No.", False),
        ("No, it is not.", False),
        ("Yes, it is.", True),
        ("", True),  # an empty answer counts as yes
        ("Yes. No.", True),  # only the first sentence counts
        ("It is not", False),
        ("Not at all", True),  # "Not" (capitalised) is not one of R-Bench's words
        ("Nope", True),
        ("No!", True),  # "No!" is not the word "No" after splitting on spaces
        ("yes no", False),
    ],
)
def test_rbench_reads_answers_like_its_eval_script(answer, yes):
    assert metrics.rbench_says_yes(answer) is yes


def test_rbench_label_rule():
    assert metrics.rbench_label_is_yes("Yes") and metrics.rbench_label_is_yes("")
    assert not metrics.rbench_label_is_yes("No") and not metrics.rbench_label_is_yes("not sure")


def test_yes_no_scores_by_hand():
    # TP=2 (0,1), FP=1 (2), TN=1 (3), FN=1 (4)
    pred = [True, True, True, False, False]
    true = [True, True, False, False, True]
    s = metrics.yes_no_scores(pred, true)
    p, r = 2 / 3, 2 / 3
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(p, abs=1e-4)
    assert s["recall"] == pytest.approx(r, abs=1e-4)
    assert s["f1"] == pytest.approx(2 * p * r / (p + r), abs=1e-4)
    assert s["yes_ratio"] == pytest.approx(3 / 5)


def test_yes_no_scores_all_no_gives_zero_precision_not_an_error():
    s = metrics.yes_no_scores([False, False], [True, False])
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0 and s["accuracy"] == 0.5


def test_rbench_scores_average_over_subsets_and_skip_unanswered():
    answers = {1: "Yes", 2: "No", 3: "", 4: "No"}  # 3 is an empty answer: yes
    labels = {1: "Yes", 2: "No", 3: "No", 4: "Yes", 5: "Yes"}
    # subset A = {1, 2}: both right; subset B = {3, 4, 5}: 5 unanswered -> {3, 4} both wrong
    s = metrics.rbench_scores(answers, labels, [[1, 2], [3, 4, 5]])
    assert s["accuracy"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["yes_ratio"] == pytest.approx((0.5 + 0.5) / 2)
    assert s["recall"] == pytest.approx((1.0 + 0.0) / 2, abs=1e-4)
    with pytest.raises(ValueError, match="no question with an answer"):
        metrics.rbench_scores(answers, labels, [[5]])


def test_accuracy_by_type_all_and_average():
    correct = [True, False, True, True]
    types = [["Background"], ["Background", "Texture and Noise"], ["Texture and Noise"], ["Relative Size"]]
    acc = metrics.accuracy_by_type(correct, types)
    assert acc["Background"] == pytest.approx(0.5)
    assert acc["Texture and Noise"] == pytest.approx(0.5)
    assert acc["Relative Size"] == pytest.approx(1.0)
    assert acc["All"] == pytest.approx(0.75)  # over items, not over (item, type) pairs
    assert acc["Average"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert list(acc)[:3] == ["Background", "Texture and Noise", "Relative Size"]


def test_worst_group_accuracy():
    value, group = metrics.worst_group_accuracy(
        [True, True, False, True, False, False], ["a", "a", "b", "b", "c", "c"])
    assert (value, group) == (0.0, "c")
    assert metrics.accuracy_by_group([True, False], ["x", "x"]) == {"x": 0.5}
