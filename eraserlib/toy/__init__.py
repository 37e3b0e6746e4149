"""Problems with known answers, for tests, benchmarks and the book.

* :mod:`eraserlib.toy.convex`: L2-regularised logistic regression, where retraining has an exact
  optimum that the influence update must approach.
* :mod:`eraserlib.toy.tiny_lora`: a tiny Llama with a peft LoRA adapter, small enough to form
  its Hessian densely.
* :mod:`eraserlib.toy.facts`: made-up facts on a tiny Llama saved to disk with its tokenizer and
  a trained LoRA adapter (what the command line and its tests run on).
"""
