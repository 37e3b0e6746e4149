"""The unlearning baselines LLMEraser is compared with, for any model and loss.

* **Retrain** (the gold standard) is not a function here: it is
  ``train(make_model(), loss_fn, corrected_data, config)`` with the same config, seed and
  initial adapter as the model being corrected (:func:`eraserlib.training.train`).
* :func:`gradient_ascent` (instance removal): ascend the loss of the examples to forget.
* :func:`finetune_on_corrected` (query modification, response correction): keep training the
  corrupted model on the corrected examples only.
* :class:`SISA` (Bourtoule et al. 2021, "Machine Unlearning"): k disjoint shards, one model per
  shard; a request retrains only the shards that hold one of its examples.
* :func:`balanced_kmeans` (:mod:`~eraserlib.baselines.partition`): RecEraser's balanced partition
  by similarity, shared by RecEraser and APA (``SISA.fit(data, assignment)`` trains its shards).
* :class:`AttentionAggregate` / :func:`fit_aggregator` (RecEraser, Chen et al. 2022): attention
  over the frozen shard models' hidden states, trained on the training data.
* :class:`SampleAdaptiveLoRA` (APA, Hu et al. 2025): the shard adapters merged in parameter space
  per test sample, ΔW(x) = Σᵢ wᵢ(x) sᵢBᵢAᵢ.
* :func:`e2urec` (Wang et al. 2024): LoRA-only distillation from a forgetting and a remembering
  teacher.

All of them modify or create models in place and return what they did and how long it took.
One module per method; a new baseline goes in its own module here and is registered for the
experiments in :mod:`eraserlab.methods`.
"""

from eraserlib.baselines.apa import SampleAdaptiveLoRA, centred_cosine_weights
from eraserlib.baselines.e2urec import e2urec, forced_teacher_logits
from eraserlib.baselines.finetune import finetune_on_corrected
from eraserlib.baselines.gradient_ascent import gradient_ascent
from eraserlib.baselines.partition import balanced_kmeans, group_assignment, group_embeddings
from eraserlib.baselines.receraser import AttentionAggregate, fit_aggregator
from eraserlib.baselines.sisa import SISA

__all__ = ["SISA", "AttentionAggregate", "SampleAdaptiveLoRA", "balanced_kmeans", "centred_cosine_weights", "e2urec",
           "finetune_on_corrected", "fit_aggregator", "forced_teacher_logits", "gradient_ascent", "group_assignment",
           "group_embeddings"]
