"""Problems with known answers, for tests, benchmarks and the book.

* :mod:`eraserlib.toy.convex`: L2-regularised logistic regression, where retraining has an exact
  optimum that the influence update must approach.
* :mod:`eraserlib.toy.tiny_lora`: a tiny Llama with a peft LoRA adapter, small enough to form
  its Hessian densely.
"""
