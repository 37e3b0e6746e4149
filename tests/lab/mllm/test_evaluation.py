"""Scoring given answer probabilities (SISA's shard ensemble) agrees with scoring a model."""

import numpy as np
import pytest
import torch

from eraserlab.mllm import relations, spurious
from eraserlab.mllm.evaluation import evaluate, score, score_yes_no
from eraserlab.mllm.tasks import VQACollator


@pytest.fixture(scope="module")
def tasks_():
    return (spurious.spurious_task(0, n_images=30, n_conflict=4)["test"],
            relations.relation_task(0, n_images=20, n_conflict_images=2)["test"])


def test_scoring_a_models_probabilities_is_evaluating_the_model(small_processor, small_model, tasks_):
    collate = VQACollator(small_processor)
    for examples in tasks_:
        evaluation = evaluate(small_model, collate, examples)
        again = score(examples, evaluation.probabilities)
        assert again.metrics == evaluation.metrics
        assert again.answers == evaluation.answers
        np.testing.assert_array_equal(again.correct, evaluation.correct)


def test_yes_no_scores_of_given_probabilities_by_hand(tasks_):
    pool = tasks_[1]
    yes = [e for e in pool if e.answer == "Yes"][:2]
    no = [e for e in pool if e.answer == "No"][:2]
    examples = yes + no
    # answers Yes, No, Yes, No: one true positive, one false negative, one false positive, one
    # true negative
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    ids = [e.meta["question_id"] for e in examples]
    result = score_yes_no(examples, probabilities, subsets=[ids])
    assert result.answers == ["Yes", "No", "Yes", "No"]
    np.testing.assert_array_equal(result.correct, [True, False, False, True])
    for key in ("accuracy", "precision", "recall", "yes_ratio"):
        assert result.metrics[key] == pytest.approx(0.5, abs=1e-4), key
    # score() dispatches to the same scorer with R-Bench's five random halves
    assert score(examples, probabilities).metrics == score_yes_no(examples, probabilities).metrics


def test_multiple_choice_answer_is_the_argmax_of_the_mean_distribution(tasks_):
    examples = tasks_[0][:2]
    first = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    second = torch.tensor([[0.0, 0.9, 0.05, 0.05], [0.1, 0.1, 0.1, 0.7]])
    result = score(examples, (first + second) / 2)  # SISA's aggregation: row 0 → B (0.5 > 0.35)
    assert result.answers == ["B", "D"]
    expected = np.mean([e.answer == a for e, a in zip(examples, ["B", "D"])])
    assert result.metrics["accuracy/All"] == pytest.approx(expected)
