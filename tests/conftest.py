"""Test-wide runtime hygiene: set before torch is imported by any test module.

* ``OMP_WAIT_POLICY=PASSIVE``: spin-waiting OpenMP threads made torch ~10x slower whenever
  another CPU-bound process ran.
* ``HF_HUB_OFFLINE=1``: a hub name fails at once instead of retrying for ~47 s.
* ``TOKENIZERS_PARALLELISM=false``: no tokenizer thread pools (and no fork warning).
* a thread cap: small tests gain nothing from more threads on a shared 2-core machine.

Warnings are errors, except exactly the two that the libraries themselves raise and the tiny
multimodal preset's.
"""

import os

THREADS = "2"

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", THREADS)
os.environ.setdefault("MKL_NUM_THREADS", THREADS)

import torch  # noqa: E402  (after the environment above, on purpose)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Raised inside the libraries, not by our code: peft's get_peft_model calls transformers'
# deprecated is_gradient_checkpointing, and torch.func's first jvp touches torch.jit.script.
KNOWN_LIBRARY_WARNINGS = (
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning",
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning",
)


# Ours, and expected: the multimodal arm's tiny preset pre-trains its base for 40 steps, so no retrain learns
# the task and every tiny run says so. The tests check the plumbing; test_experiment.py checks the warning.
TINY_PRESET_WARNINGS = ("ignore::eraserlab.mllm.experiment.UnlearntTaskWarning",)


def pytest_configure(config):
    """Turns warnings into errors, then lets the known library warnings (and the tiny preset's) through."""
    config.addinivalue_line("filterwarnings", "error")
    for line in KNOWN_LIBRARY_WARNINGS + TINY_PRESET_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


import json  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_facts(tmp_path_factory):
    """On disk, built once: a tiny Llama base directory with its tokenizer, a LoRA adapter trained briefly on
    made-up facts, and the facts as a JSONL training file (``eraserlib.toy.facts``). Read-only for the tests."""
    from eraserlib.toy import facts

    root = tmp_path_factory.mktemp("facts")
    config = facts.FactsConfig()
    rows = facts.make_facts(config)
    facts.save_base(root / "base", rows, config)
    facts.train_adapter(root / "base", rows, root / "adapter", config)
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in rows))
    return SimpleNamespace(root=root, base=root / "base", adapter=root / "adapter", rows=rows, train=train,
                           config=config)
