"""The multimodal arm's evaluator for the protocol: a model set's scores, answer distributions, forget losses.

``Evaluator(collate, scenario, batch_size, columns)(models)`` returns a
:class:`~eraserlab.protocol.compare.Evaluation` whose row holds

* the benchmark's metrics on the evaluation split (spurious: ``accuracy/<type>``,
  ``accuracy/All``, ``accuracy/Average``; relation: ``accuracy, precision, recall, f1,
  yes_ratio``, ``accuracy/<qtype>``) and ``test_loss``;
* ``conflict_accuracy``, ``worst_group_accuracy`` on the conflict set (NaN without one);
* ``corrected_accuracy``, ``corrected_loss`` on the corrected versions of the request's
  examples, ``forget_accuracy``, ``forget_loss`` on the examples as Corrupted was trained on
  them (share that still gets the trained, wrong answer);

and the answer distributions of the test, corrected and conflict examples (``None`` without a
conflict set). With several models (SISA's shards) answers come from the mean of their
distributions and losses are averaged over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eraserlab.mllm.evaluation import score
from eraserlab.mllm.tasks import VQACollator, VQAExample, answer_distribution
from eraserlab.protocol import Evaluation, Scenario


class OnDevice:
    """A collator whose batches land on the model's device (evaluation and training alike)."""

    def __init__(self, collator: VQACollator, device: torch.device):
        self.collator, self.device = collator, device

    def __call__(self, examples):
        return {k: v.to(self.device) for k, v in self.collator(examples).items()}

    def prompts(self, examples, padding_side: str = "left"):
        return {k: v.to(self.device) for k, v in self.collator.prompts(examples, padding_side).items()}

    def __getattr__(self, name):  # tokenizer, template, ... of the wrapped collator
        return getattr(self.collator, name)


def example_answer_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each example's mean negative log-likelihood of its answer tokens, shape (B,).

    :func:`eraserlab.mllm.tasks.answer_loss` is the mean of these over the batch.
    """
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (B, T, V)
    labels = batch["labels"][:, 1:]  # token t predicts token t + 1
    token_nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                reduction="none").view(labels.shape)
    return token_nll.sum(dim=1) / (labels != -100).sum(dim=1)


class Evaluator:
    """Scores a method's models (one, or SISA's shards) on a scenario's example sets.

    Args:
        collate: The run's collator (on the device).
        scenario: The protocol's scenario; ``extra["conflict"]`` is the conflict set (may be empty).
        batch_size: Examples per forward pass.
        columns: Metric columns every row has (NaN where the split lacks a group).
    """

    def __init__(self, collate, scenario: Scenario, batch_size: int, columns: Sequence[str] = ()):
        self.collate, self.scenario, self.batch_size, self.columns = collate, scenario, batch_size, columns

    def _probabilities(self, models, examples) -> torch.Tensor:
        # SISA: the mean of the shards' distributions (a single model: its own)
        return torch.stack([answer_distribution(m, self.collate, examples, self.batch_size).cpu()
                            for m in models]).mean(0)

    @torch.no_grad()
    def _losses(self, models, examples: Sequence[VQAExample]) -> np.ndarray:
        """Each example's answer loss, averaged over the models: (E,)."""
        total = np.zeros(len(examples))
        for m in models:
            m.eval()
            total += np.concatenate([example_answer_losses(m, self.collate(examples[start:start + self.batch_size]))
                                     .double().cpu().numpy() for start in range(0, len(examples), self.batch_size)])
        return total / len(models)

    def __call__(self, models) -> Evaluation:
        s = self.scenario
        row: dict[str, float] = dict.fromkeys(self.columns, math.nan)
        probabilities = self._probabilities(models, s.test)
        row.update({k: v for k, v in score(s.test, probabilities).metrics.items() if k != "worst_group_accuracy"})
        row["test_loss"] = float(np.mean(self._losses(models, s.test)))
        test_distribution, conflict_distribution = probabilities.numpy(), None
        conflict = s.extra.get("conflict", [])
        row["conflict_accuracy"] = row["worst_group_accuracy"] = math.nan
        if conflict:
            probabilities = self._probabilities(models, conflict)
            evaluation = score(conflict, probabilities)
            row["conflict_accuracy"] = float(evaluation.correct.mean())
            row["worst_group_accuracy"] = evaluation.metrics["worst_group_accuracy"]
            conflict_distribution = probabilities.numpy()
        views = {}
        for name, examples in (("corrected", s.corrected), ("forget", s.forget)):
            probabilities = self._probabilities(models, examples)
            answers = [examples[0].candidates[k] for k in probabilities.argmax(dim=1).tolist()]
            correct = np.array([a == e.answer for a, e in zip(answers, examples)])
            losses = self._losses(models, examples)
            row[f"{name}_accuracy"], row[f"{name}_loss"] = float(correct.mean()), float(losses.mean())
            views[name] = (probabilities.numpy(), losses, correct)
        distributions = {"test": test_distribution, "corrected": views["corrected"][0],
                         "conflict": conflict_distribution}
        return Evaluation(row, distributions, forget_losses=views["forget"][1], forget_correct=views["forget"][2])
