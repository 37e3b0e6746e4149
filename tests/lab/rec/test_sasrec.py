"""LLaRA's hybrid prompt: SASRec's training data, the placeholder ids, the wrapper, an experiment."""

import dataclasses
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eraserlib.objective import trainable_parameters
from eraserlab.rec.experiment import PRESETS, run_experiment
from eraserlab.rec.pretrain import load_task_data, pretrain_base
from eraserlab.rec.sasrec import (
    HybridPromptModel,
    SASRecConfig,
    sasrec_item_embeddings,
    train_sasrec,
    training_sequences,
)
from eraserlab.rec.next_item import NextItemExample
from eraserlab.rec.task import PromptEncoder

TINY = PRESETS["tiny"]
SMALL_SASREC = SASRecConfig(dim=8, layers=1, epochs=3, batch_size=16, negatives=8, max_length=6)


def _example(user, position, history, target):
    return NextItemExample(user=user, position=position, history=tuple(history),
                           history_titles=tuple(f"t{i}" for i in history), target=target, target_title=f"t{target}",
                           candidates=(target, 9), candidate_titles=(f"t{target}", "t9"))


def test_training_sequences_rebuild_each_users_sequence_from_its_examples():
    examples = [_example(1, 2, [5, 6], 7), _example(1, 3, [6, 7], 8), _example(2, 1, [3], 4), _example(3, 1, [2], 2)]
    assert training_sequences(examples) == [(5, 6, 7, 8), (3, 4), (2, 2)]
    assert training_sequences(examples, users={2}) == [(3, 4)]


def test_sasrec_training_is_deterministic_lowers_its_loss_and_refuses_bad_ids():
    sequences = [tuple((u + k) % 11 + 1 for k in range(10)) for u in range(20)]
    learning = dataclasses.replace(SMALL_SASREC, epochs=20, lr=1e-2)  # cyclic sequences: easy to learn
    first, info = train_sasrec(sequences, 12, learning, seed=3)
    second, _ = train_sasrec(sequences, 12, learning, seed=3)
    assert torch.equal(first.item_embedding.weight, second.item_embedding.weight)
    assert info["losses"][-1] < 0.5 * info["losses"][0]
    assert not any(p.requires_grad for p in first.parameters())
    with pytest.raises(ValueError, match="not below num_items"):
        train_sasrec(sequences, 5, SMALL_SASREC)
    with pytest.raises(ValueError, match="no sequence"):
        train_sasrec([(1,)], 12, SMALL_SASREC)


def test_item_table_is_cached_by_everything_that_determines_it(tmp_path):
    sequences = [(1, 2, 3, 4), (2, 3, 4, 5)]
    table, info = sasrec_item_embeddings(sequences, 6, SMALL_SASREC, seed=0, cache_dir=tmp_path)
    again, info_again = sasrec_item_embeddings(sequences, 6, SMALL_SASREC, seed=0, cache_dir=tmp_path)
    other, info_other = sasrec_item_embeddings(sequences, 6, SMALL_SASREC, seed=1, cache_dir=tmp_path)
    assert (info["cache_hit"], info_again["cache_hit"], info_other["cache_hit"]) == (False, True, False)
    assert torch.equal(table, again) and not torch.equal(table, other)
    assert torch.all(table[0] == 0) and table[1:].pow(2).mean().item() == pytest.approx(1.0, rel=1e-5)


def _tiny_llama(vocab):
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def test_wrapper_replaces_exactly_the_placeholder_positions():
    llm = _tiny_llama(20).requires_grad_(False)  # frozen, as the base under a LoRA adapter is
    table = torch.randn(5, 4)
    model = HybridPromptModel(llm, table, "linear", seed=0)
    assert model.offset == 20
    ids = torch.tensor([[1, 2, 20 + 3, 4]])
    embeds = model.embed(ids)
    tokens = llm.get_input_embeddings()(torch.tensor([[1, 2, 0, 4]]))
    assert torch.equal(embeds[0, [0, 1, 3]], tokens[0, [0, 1, 3]])
    assert torch.allclose(embeds[0, 2], model.projector(table[3]))
    # token-only input: the wrapper is the language model
    plain = torch.tensor([[1, 2, 3]])
    assert torch.allclose(model(plain).logits, llm(plain).logits)
    # the projector trains (gradient reaches it) and is what erase changes; the SASRec table is not
    names, _ = trainable_parameters(model)
    assert names == [f"projector.{n}" for n, _ in model.projector.named_parameters()] != []
    model(ids).logits.sum().backward()
    assert model.projector.weight.grad is not None and model.item_embeddings.grad is None
    with pytest.raises(ValueError, match="projector must be one of"):
        HybridPromptModel(llm, table, "attention")


@pytest.fixture(scope="module")
def tiny_base(data_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("rec-hybrid-cache")
    base = pretrain_base("movielens", data_root, TINY.model, TINY.pretrain, cache_dir=cache, device="cpu",
                         progress=False)
    return base, cache


def test_hybrid_prompt_ids_are_the_text_prompt_plus_one_placeholder_per_item(data_root, tiny_base):
    base, _ = tiny_base
    data = load_task_data("movielens", data_root, 20, TINY.data_seed, tasks=("next_item",))["next_item"]
    offset = base.model.get_input_embeddings().num_embeddings
    text = PromptEncoder(base.tokenizer, "movielens", data.item_titles)
    hybrid = PromptEncoder(base.tokenizer, "movielens", data.item_titles, item_embedding_offset=offset)
    example = data.train[0]
    ids = hybrid.hybrid_prompt_ids(example)
    placeholders = [i - offset for i in ids if i >= offset]
    assert placeholders == [*example.history, *example.candidates]  # every item shown, in order
    assert tuple(i for i in ids if i < offset) == tuple(text.ids(text.prompt_text(example)))
    with pytest.raises(ValueError, match="overlaps"):
        PromptEncoder(base.tokenizer, "movielens", data.item_titles, item_embedding_offset=3)


def test_hybrid_experiment_erases_the_projector_with_the_adapter(data_root, tiny_base, tmp_path):
    _, cache = tiny_base
    config = dataclasses.replace(TINY, hybrid=True)
    frame = run_experiment("movielens", "rc", ratio=0.1, seed=0, methods=["corrupted", "retrain", "llmeraser"],
                           device="cpu", data_dir=data_root, results_dir=tmp_path, config=config, cache_dir=cache,
                           retrains=2, progress=False)
    assert list(frame["method"]) == ["corrupted", "retrain", "llmeraser"] and frame["hybrid"].all()
    saved = json.loads((tmp_path / "movielens-rc-0.1-seed0.json").read_text())
    assert saved["hybrid"]["projector"] == "mlp" and saved["hybrid"]["projector_parameters"] > 0
    erased = frame.set_index("method").loc["llmeraser"]
    assert 0 < erased["delta_norm_ratio"] and torch.isfinite(torch.tensor(erased["jsd_test"]))
    # the same run again gives the same numbers (seeded SASRec, projector, adapter, solver)
    again = run_experiment("movielens", "rc", ratio=0.1, seed=0, methods=["corrupted", "retrain", "llmeraser"],
                           device="cpu", data_dir=data_root, results_dir=None, config=config, cache_dir=cache,
                           retrains=2, progress=False)
    assert again["jsd_test"].tolist() == frame["jsd_test"].tolist()
