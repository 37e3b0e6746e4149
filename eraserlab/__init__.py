"""eraserlab: the paper's experiments, run against retraining.

The two experimental arms (:mod:`eraserlab.rec`, recommendation on real MovieLens, Last.fm and
Book-Crossing data; :mod:`eraserlab.mllm`, multimodal on MM-SpuBench/R-Bench-like tasks), the
protocol they share (:mod:`eraserlab.protocol`), records, caches, profiling and the data folder
(:mod:`eraserlab.datasets`). It imports the library (:mod:`eraserlib`); the library never
imports it, and the two arms never import each other.
"""
