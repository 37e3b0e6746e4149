"""The multimodal arm: LLaVA-style unlearning experiments that run offline on a CPU.

Stand-ins for the paper's MM-SpuBench and R-Bench runs, generated procedurally in the real
benchmarks' file formats, and a tiny LLaVA built from configs, pre-trained once (cached) and
then fine-tuned with a LoRA adapter. The same code reads the real benchmark files.

Modules, in the order an experiment meets them:

* ``scenes``       scene descriptions (the ground truth) and the renderer
* ``spurious``     MM-SpuBench-like generator: ``spurious_task(seed, ...)``
* ``relations``    R-Bench-like generator: ``relation_task(seed, level="instance", ...)``
* ``formats``      the real benchmarks' JSON layouts: writers, readers, examples
* ``tasks``        ``VQAExample``, ``VQACollator``, ``answer_loss``, answer distributions
* ``model``        the tiny LLaVA and its LoRA adapter
* ``pretrain``     ``load_or_pretrain(...)``: the cached base model
* ``corruptions``  ``flip_answers`` (response correction), ``corrupt_queries`` (query modification)
* ``metrics``      R-Bench scoring, MM-SpuBench per-type accuracy, worst-group accuracy
* ``evaluation``   ``evaluate(model, collator, examples)``
* ``finetune``     the laptop defaults for the LoRA fine-tune
"""
