"""The unlearning baselines LLMEraser is compared with, for any model and loss.

* **Retrain** (the gold standard) is not a function here: it is
  ``train(make_model(), loss_fn, corrected_data, config)`` with the same config, seed and
  initial adapter as the model being corrected (:func:`eraserlib.training.train`).
* :func:`gradient_ascent` (instance removal): ascend the loss of the examples to forget.
* :func:`finetune_on_corrected` (query modification, response correction): keep training the
  corrupted model on the corrected examples only.
* :class:`SISA` (Bourtoule et al. 2021, "Machine Unlearning"): k disjoint shards, one model per
  shard; a request retrains only the shards that hold one of its examples.

All of them modify or create models in place and return what they did and how long it took.
One module per method; a new baseline goes in its own module here and is registered for the
experiments in :mod:`eraserlab.methods`.
"""

from eraserlib.baselines.finetune import finetune_on_corrected
from eraserlib.baselines.gradient_ascent import gradient_ascent
from eraserlib.baselines.sisa import SISA

__all__ = ["SISA", "finetune_on_corrected", "gradient_ascent"]
