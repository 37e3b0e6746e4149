"""The performance suite: how much work each solver needs for a given accuracy, and what erasing costs.

Benchmarks are not tests (``tests/test_benchmarks.py`` only checks that each one runs at a tiny
size). Each module runs with one command and writes a JSON record plus a printed table::

    python -m benchmarks.solver_accuracy   [--size tiny|default] [--out FILE]
    python -m benchmarks.erase_vs_retrain  [--size tiny|default] [--out FILE]
    python -m benchmarks.hessian_subsample [--size tiny|default] [--out FILE]
    python -m benchmarks.scaling           [--size tiny|default] [--out FILE]
    python -m benchmarks.throughput        [--size tiny|default] [--out FILE]
    python -m benchmarks.gpu_path          [--size tiny|llama-7b] [--checkpoint DIR] [--out FILE]

Results go to ``benchmarks/results/<name>-<size>.json`` unless ``--out`` says otherwise.

The environment variables below are set here, before any benchmark imports torch:
spin-waiting OpenMP threads made torch ~10× slower next to another busy process, and a hub
name must fail at once rather than retry for about 47 s.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
