"""The tiny LLaVA: built from configs, eager attention, LoRA on the language model only, the
pre-training cache round-trips."""

import torch

from eraserlab.mllm import model as tiny, pretrain, spurious, tasks
from eraserlib.training import TrainConfig, train

from .conftest import SMALL


def test_default_model_size_and_eager_attention(small_processor):
    model = tiny.build_model(tiny.TinyLlavaConfig(), small_processor.tokenizer)
    assert 0.7e6 < tiny.count_parameters(model)["total"] < 0.9e6
    assert model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config._attn_implementation == "eager"


def test_lora_adapts_only_the_language_model(small_model):
    lora = tiny.add_lora(small_model, r=4, alpha=8)
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "language_model" in n for n in names)
    # q, k, v, o, gate, up, down of each language layer get an A and a B
    assert len(names) == 2 * 7 * SMALL.layers


def test_same_seed_same_model(small_processor):
    a = tiny.build_model(SMALL, small_processor.tokenizer, seed=1)
    b = tiny.build_model(SMALL, small_processor.tokenizer, seed=1)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q)


def test_hessian_vector_product_through_the_adapter(small_processor, small_model):
    """Double backward works: the eraser's solver needs it (eager attention everywhere)."""
    lora = tiny.add_lora(small_model, r=2, alpha=4)
    collate = tasks.VQACollator(small_processor)
    batch = collate(spurious.spurious_task(0, n_images=10, n_conflict=1)["train"][:2])
    params = [p for p in lora.parameters() if p.requires_grad]
    grads = torch.autograd.grad(tasks.answer_loss(lora, batch), params, create_graph=True)
    vector = [torch.ones_like(p) for p in params]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), params)
    assert all(torch.isfinite(h).all() for h in hvp)


def test_lora_training_lowers_the_loss(small_processor, small_model):
    lora = tiny.add_lora(small_model, r=4, alpha=8)
    collate = tasks.VQACollator(small_processor)
    data = spurious.spurious_task(0, n_images=20, n_conflict=1)["train"][:8]
    before = tasks.answer_loss(lora, collate(data)).item()
    train(lora, tasks.answer_loss, data, TrainConfig(epochs=20, lr=5e-2, batch_size=8), collate, progress=False)
    # Only a modest drop is possible: on a random model the final RMSNorm and the small random
    # lm_head bound how far an adapter can move the logits (about 4.2 -> 3.9 here).
    assert tasks.answer_loss(lora, collate(data)).item() < before - 0.1
    assert all(p.abs().sum() > 0 for n, p in lora.named_parameters() if "lora_B" in n)


def test_pretraining_is_cached_and_reloaded(tmp_path):
    settings = pretrain.PretrainConfig(steps=2, batch_size=4, warmup_steps=1)
    first = pretrain.load_or_pretrain(SMALL, settings, seed=0, cache_dir=tmp_path, progress=False)
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]  # the cache entries (beside a hidden lock file)
    assert len(folders) == 1 and folders[0].name == pretrain.cache_key(SMALL, settings, 0)
    again = pretrain.load_or_pretrain(SMALL, settings, seed=0, cache_dir=tmp_path, progress=False)
    for (name, p), (_, q) in zip(first.model.named_parameters(), again.model.named_parameters()):
        torch.testing.assert_close(p, q, msg=name)
        assert not q.requires_grad
    assert again.model.config.text_config._attn_implementation == "eager"
    assert again.pretrain_config == settings and again.config == SMALL
    assert again.processor.tokenizer.get_vocab() == first.processor.tokenizer.get_vocab()
    assert set(again.manifest["heldout_accuracy"]) == {*pretrain.PRETRAIN_TASKS, "describe/shape"}
    assert pretrain.cache_key(SMALL, settings, 1) != pretrain.cache_key(SMALL, settings, 0)


def test_new_adapter_starts_equal_to_the_base_and_leaves_it_untouched(tmp_path, small_processor):
    from eraserlab.mllm import finetune

    settings = pretrain.PretrainConfig(steps=1, batch_size=2, warmup_steps=1)
    base = pretrain.load_or_pretrain(SMALL, settings, seed=0, cache_dir=tmp_path, progress=False)
    adapter = finetune.new_adapter(base, seed=0, r=2, alpha=4)
    collate = tasks.VQACollator(base.processor)
    batch = collate(spurious.spurious_task(0, n_images=10, n_conflict=1)["train"][:2])
    torch.testing.assert_close(tasks.answer_loss(adapter, batch), tasks.answer_loss(base.model, batch))
    with torch.no_grad():
        for p in adapter.parameters():
            if p.requires_grad:
                p.add_(0.1)
    assert not torch.allclose(tasks.answer_loss(adapter, batch), tasks.answer_loss(base.model, batch))
    assert not any(p.requires_grad for p in base.model.parameters())
