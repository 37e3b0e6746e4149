"""Score a model on a benchmark split: the benchmark's metrics plus the answer distribution.

The answer distribution (probabilities of the candidate answers) is what the experiments compare
between methods (JSD to Retrain); the metrics are what the benchmarks report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from eraserlab.mllm import metrics
from eraserlab.mllm.relations import rbench_subsets
from eraserlab.mllm.tasks import VQACollator, VQAExample, answer_distribution, generate_answers


@dataclass
class Evaluation:
    """What a model did on a list of examples.

    Attributes:
        metrics: flat ``{name: value}`` (fractions), ready for a tidy table.
        probabilities: ``(N, K)`` probabilities of the candidates, in candidate order.
        answers: the answers as text (argmax candidate, or generated text for yes/no).
        correct: per example, whether the answer is right.
    """

    metrics: dict[str, float]
    probabilities: torch.Tensor
    answers: list[str]
    correct: np.ndarray


def evaluate(model, collator: VQACollator, examples: Sequence[VQAExample], **options) -> Evaluation:
    """Dispatch on ``meta["benchmark"]``: :func:`evaluate_multiple_choice` or :func:`evaluate_yes_no`."""
    benchmark = examples[0].meta.get("benchmark")
    if benchmark == "mm-spubench":
        return evaluate_multiple_choice(model, collator, examples, **options)
    if benchmark == "r-bench":
        return evaluate_yes_no(model, collator, examples, **options)
    raise ValueError(f"unknown benchmark {benchmark!r} in meta; expected 'mm-spubench' or 'r-bench'")


def score(examples: Sequence[VQAExample], probabilities: torch.Tensor) -> Evaluation:
    """The benchmark's metrics of given answer probabilities, dispatching like :func:`evaluate`.

    For models whose answers are not one model's argmax, e.g. SISA's shard ensemble (the mean of
    the shards' probabilities).
    """
    benchmark = examples[0].meta.get("benchmark")
    if benchmark == "mm-spubench":
        return score_multiple_choice(examples, probabilities)
    if benchmark == "r-bench":
        return score_yes_no(examples, probabilities)
    raise ValueError(f"unknown benchmark {benchmark!r} in meta; expected 'mm-spubench' or 'r-bench'")


def evaluate_multiple_choice(model, collator: VQACollator, examples: Sequence[VQAExample],
                             batch_size: int = 64) -> Evaluation:
    """MM-SpuBench metrics; the answer is the most probable letter.

    Metrics: ``accuracy/<type>``, ``accuracy/All``, ``accuracy/Average``, and when examples carry
    ``meta["group"]``: ``worst_group_accuracy`` over (type, aligned/conflicting).
    """
    return score_multiple_choice(examples, answer_distribution(model, collator, examples, batch_size))


def score_multiple_choice(examples: Sequence[VQAExample], probabilities: torch.Tensor) -> Evaluation:
    """MM-SpuBench metrics of given answer probabilities (e.g. the mean over an ensemble's models).

    Args:
        examples: the questions.
        probabilities: ``(N, K)`` probabilities of the candidates, in candidate order.
    """
    candidates = examples[0].candidates
    answers = [candidates[k] for k in probabilities.argmax(dim=1).tolist()]
    correct = np.array([a == e.answer for a, e in zip(answers, examples)])
    by_type = metrics.accuracy_by_type(correct.tolist(), [e.meta["types"] for e in examples])
    result = {f"accuracy/{k}": v for k, v in by_type.items()}
    if all("group" in e.meta for e in examples):
        worst, _ = metrics.worst_group_accuracy(correct.tolist(), [e.meta["group"] for e in examples])
        result["worst_group_accuracy"] = worst
    return Evaluation(result, probabilities, answers, correct)


def evaluate_yes_no(model, collator: VQACollator, examples: Sequence[VQAExample],
                    subsets: Sequence[Sequence[int]] | None = None, generate: bool = False,
                    batch_size: int = 64) -> Evaluation:
    """R-Bench metrics averaged over evaluation subsets, plus accuracy per question type.

    Args:
        subsets: question-id lists; by default five random halves of the examples (seed 0),
            as R-Bench averages over five subsets.
        generate: read R-Bench's scorer from greedy generated text (slower); by default the
            answer is the more probable of Yes and No, which is the first generated token
            whenever the model puts its mass on the two.

    Metrics: ``accuracy``, ``precision``, ``recall``, ``f1``, ``yes_ratio``,
    ``accuracy/<qtype>``, and ``worst_group_accuracy`` over (qtype, aligned) when examples carry
    ``meta["aligned"]``.
    """
    probabilities = answer_distribution(model, collator, examples, batch_size)
    answers = generate_answers(model, collator, examples, batch_size=batch_size) if generate else None
    return score_yes_no(examples, probabilities, answers, subsets)


def score_yes_no(examples: Sequence[VQAExample], probabilities: torch.Tensor,
                 answers: Sequence[str] | None = None,
                 subsets: Sequence[Sequence[int]] | None = None) -> Evaluation:
    """R-Bench metrics of given answer probabilities (e.g. the mean over an ensemble's models).

    Args:
        examples: the questions.
        probabilities: ``(N, 2)`` probabilities of the candidates, in candidate order.
        answers: the answers as text (generated); by default the more probable candidate.
        subsets: as in :func:`evaluate_yes_no`.
    """
    if answers is None:
        answers = [examples[0].candidates[k] for k in probabilities.argmax(dim=1).tolist()]
    answers = list(answers)
    ids = [e.meta["question_id"] for e in examples]
    if subsets is None:
        subsets = rbench_subsets(ids, seed=0)
    result = metrics.rbench_scores(dict(zip(ids, answers)),
                                   {e.meta["question_id"]: e.answer for e in examples}, subsets)
    correct = np.array([metrics.rbench_says_yes(a) == metrics.rbench_label_is_yes(e.answer)
                        for a, e in zip(answers, examples)])
    qtypes = [e.meta["qtype"] for e in examples]
    result.update({f"accuracy/{k}": v for k, v in metrics.accuracy_by_group(correct, qtypes).items()})
    if all("aligned" in e.meta for e in examples):
        groups = [(q, e.meta["aligned"]) for q, e in zip(qtypes, examples)]
        result["worst_group_accuracy"], _ = metrics.worst_group_accuracy(correct, groups)
    return Evaluation(result, probabilities, answers, correct)
