"""The recommendation arm's evaluator for the protocol: a model set's metrics, answer distributions, forget losses.

``Evaluator(scenario, encoder, batch_size)(models)`` returns a
:class:`~eraserlab.protocol.compare.Evaluation`:

* next-item tasks (QM/RC): ``hit_ratio_at_1``, ``valid_ratio`` (greedy decoding, LLaRA's
  definitions), ``candidate_accuracy`` (the most likely candidate is the target), ``test_loss``;
  ``forget_loss``/``forget_accuracy`` on the examples as trained on (RC: accuracy = "still
  answers the wrong target"), ``corrected_loss``/``corrected_accuracy`` on their corrected
  versions; the distributions over the 20 candidates of the test and the corrected examples;
* IR: ``auc`` (of P(yes)), ``accuracy`` (P(yes) > ½ agrees with the label), ``test_loss``,
  ``forget_loss``/``forget_accuracy`` on the removed examples; the yes/no distributions of the
  test and of the removed examples (``corrected`` = the removed examples, as in the scenario).

With several models (SISA's shards) every output is their mean (:mod:`eraserlab.rec.evaluate`).
RecEraser's and APA's ensembles are one model each, aggregating inside: RecEraser's attention
over the shards' hidden states, APA's adapter merged per sample (``condition(examples)``, which
:mod:`eraserlab.rec.evaluate` calls before every batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eraserlib import metrics
from eraserlab.protocol import Evaluation, Scenario
from eraserlab.rec import evaluate
from eraserlab.rec import metrics as rec_metrics
from eraserlab.rec.task import PromptEncoder


class Evaluator:
    """Evaluates model sets on one scenario's examples (see the module docstring).

    Args:
        scenario: The protocol's scenario (its test, forget and corrected examples).
        encoder: The prompt encoder of the run.
        batch_size: Examples per evaluation pass.
        next_item: True for QM/RC (candidate ranking), False for IR (yes/no preference).
    """

    def __init__(self, scenario: Scenario, encoder: PromptEncoder, batch_size: int, next_item: bool):
        self.scenario, self.encoder, self.batch_size, self.next_item = scenario, encoder, batch_size, next_item

    def _candidate_view(self, models, examples: Sequence) -> dict[str, Any]:
        """Candidate distributions, and each example's loss and correctness for its target."""
        ll = evaluate.candidate_log_likelihoods(models, self.encoder, examples, self.batch_size)  # (M, E, C)
        distribution = evaluate.candidate_distributions(ll)  # (E, C)
        index = np.array([e.candidates.index(e.target) for e in examples])
        lengths = np.array([len(self.encoder.answer_ids(e.target, e.candidate_titles[i]))
                            for e, i in zip(examples, index)])
        # mean answer-token loss of the target, the log-likelihood averaged over models (as evaluate.losses)
        losses = -ll[:, np.arange(len(examples)), index].mean(0) / lengths
        return {"distribution": distribution, "losses": losses, "correct": distribution.argmax(1) == index}

    def _preference_view(self, models, examples: Sequence) -> dict[str, Any]:
        p_yes = evaluate.yes_probabilities(models, self.encoder, examples, self.batch_size)
        labels = np.array([e.label for e in examples])
        return {"distribution": metrics.bernoulli_distributions(p_yes), "p_yes": p_yes, "labels": labels,
                "losses": evaluate.losses(models, self.encoder, examples, self.batch_size),
                "correct": (p_yes > 0.5) == (labels == 1)}

    def __call__(self, models) -> Evaluation:
        s = self.scenario
        row: dict[str, float] = {}
        if self.next_item:
            answers = evaluate.greedy_answers(models, self.encoder, s.test, batch_size=self.batch_size * 2)
            candidates = [e.candidate_titles for e in s.test]
            row["hit_ratio_at_1"] = rec_metrics.hit_ratio_at_1(answers, candidates, [e.target_title for e in s.test])
            row["valid_ratio"] = rec_metrics.valid_ratio(answers, candidates)
            test = self._candidate_view(models, s.test)
            row.update(candidate_accuracy=float(np.mean(test["correct"])), test_loss=float(np.mean(test["losses"])))
            forget = self._candidate_view(models, s.forget)
            corrected = self._candidate_view(models, s.corrected)
            row.update(forget_loss=float(np.mean(forget["losses"])), forget_accuracy=float(np.mean(forget["correct"])),
                       corrected_loss=float(np.mean(corrected["losses"])),
                       corrected_accuracy=float(np.mean(corrected["correct"])))
        else:
            test = self._preference_view(models, s.test)
            row.update(auc=metrics.auc(test["labels"], test["p_yes"]), accuracy=float(np.mean(test["correct"])),
                       test_loss=float(np.mean(test["losses"])))
            forget = corrected = self._preference_view(models, s.forget)
            row.update(forget_loss=float(np.mean(forget["losses"])), forget_accuracy=float(np.mean(forget["correct"])))
        return Evaluation(row, {"test": test["distribution"], "corrected": corrected["distribution"]},
                          forget_losses=forget["losses"], forget_correct=forget["correct"])
