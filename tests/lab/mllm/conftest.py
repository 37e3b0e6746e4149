"""A tiny untrained LLaVA shared by the model-level tests (built from configs in a second)."""

import pytest

from eraserlab.mllm import model as tiny, pretrain

SMALL = tiny.TinyLlavaConfig(vision_hidden_size=32, vision_intermediate_size=64, vision_layers=1,
                             vision_heads=2, hidden_size=32, intermediate_size=64, layers=1, heads=2)


@pytest.fixture(scope="session")
def small_processor():
    return tiny.build_processor(tiny.build_tokenizer(pretrain.vocabulary()), SMALL)


@pytest.fixture
def small_model(small_processor):
    return tiny.build_model(SMALL, small_processor.tokenizer, seed=0)
