"""Tokenizer, prompt encoding, the loss and the evaluation passes, on a tiny model and synthetic examples."""

import pytest
import torch

from eraserlab.rec import prompts
from eraserlab.rec.evaluate import candidate_log_likelihoods, greedy_answers, yes_probabilities
from eraserlib.adapters import clone_adapter_model
from eraserlab.rec.model import LoraSettings, ModelConfig, add_lora, build_small_llama
from eraserlab.rec.next_item import NextItemExample
from eraserlab.rec.preference import PreferenceExample
from eraserlab.rec.task import PromptEncoder, answer_loss, answer_token_losses, example_losses
from eraserlab.rec.tokenizer import item_token, load_tokenizer, save_tokenizer, train_tokenizer

TITLES = {i: name for i, name in enumerate(
    ["Heat", "Casino", "Fargo", "Toy Story", "The Usual Suspects", "Star Wars", "Alien", "Aliens", "Babe",
     "Twelve Monkeys", "Se7en", "Braveheart"], start=1)}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TITLES.values(), prompts.template_texts("movielens"), vocab_size=300,
                           item_ids=TITLES, atomic_texts=(prompts.YES, prompts.NO))


def next_item(user, history, target, candidates):
    return NextItemExample(user=user, position=len(history), history=tuple(history),
                           history_titles=tuple(TITLES[i] for i in history), target=target,
                           target_title=TITLES[target], candidates=tuple(candidates),
                           candidate_titles=tuple(TITLES[i] for i in candidates))


EXAMPLES = [
    next_item(1, [1, 2, 3], 4, [4, 5, 6, 7]),
    next_item(2, [5, 6, 7, 8, 9, 10], 11, [12, 11, 1, 2]),
    next_item(3, [9, 10, 11, 12], 5, [3, 4, 5, 6]),
]


def tiny_model(tokenizer, seed=0):
    base = build_small_llama(ModelConfig(hidden_size=16, layers=2, heads=2, intermediate_size=32,
                                         max_positions=128), tokenizer, seed=seed)
    return add_lora(base, LoraSettings(rank=2, alpha=4, init_scale=0.3), seed=seed)


@pytest.mark.parametrize("item_text", ["token", "title", "title+token"])
def test_tokenizer_round_trip_through_a_folder(tokenizer, tmp_path, item_text):
    save_tokenizer(tokenizer, tmp_path / "tok")
    reloaded = load_tokenizer(tmp_path / "tok")
    first = PromptEncoder(tokenizer, "movielens", TITLES, item_text=item_text)
    second = PromptEncoder(reloaded, "movielens", TITLES, item_text=item_text)
    for example in EXAMPLES:
        assert first.encode(example) == second.encode(example)
    ids = reloaded(prompts.YES + item_token(5), add_special_tokens=False)["input_ids"]
    assert len(ids) == 2  # " Yes" and every item token are single tokens
    assert second.readable(reloaded.decode(ids)).strip() == "Yes" + TITLES[5]
    assert reloaded.pad_token == "<pad>" and reloaded.padding_side == "left"


def test_item_tokens_make_short_prompts_and_one_token_answers(tokenizer):
    tokens = PromptEncoder(tokenizer, "movielens", TITLES, item_text="token")
    titles = PromptEncoder(tokenizer, "movielens", TITLES, item_text="title")
    encoded = tokens.encode(EXAMPLES[0])
    assert encoded.answer == (tokenizer.convert_tokens_to_ids(item_token(4)), tokenizer.eos_token_id)
    assert len(encoded.prompt) < len(titles.encode(EXAMPLES[0]).prompt)
    assert "Toy Story" in tokenizer.decode(titles.encode(EXAMPLES[0]).answer)


@pytest.mark.parametrize("item_text", ["token", "title"])
def test_loss_is_the_mean_of_per_example_means_whatever_the_batching(tokenizer, item_text):
    model = tiny_model(tokenizer)
    encoder = PromptEncoder(tokenizer, "movielens", TITLES, item_text=item_text)
    with torch.no_grad():
        singles = torch.stack([answer_loss(model, encoder([e])) for e in EXAMPLES])
        together = answer_loss(model, encoder(EXAMPLES))
        per_example = example_losses(model, encoder(EXAMPLES))
        tokens = answer_token_losses(model, encoder([EXAMPLES[1]]))
    torch.testing.assert_close(together, singles.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_example, singles, rtol=1e-5, atol=1e-6)
    # and it is the per-example *mean* over answer tokens, not the sum
    assert tokens.shape[1] == len(encoder.encode(EXAMPLES[1]).answer)
    torch.testing.assert_close(singles[1], tokens.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("item_text", ["token", "title"])
def test_cached_candidate_scores_equal_full_sequence_scores(tokenizer, item_text):
    model = tiny_model(tokenizer, seed=1)
    encoder = PromptEncoder(tokenizer, "movielens", TITLES, item_text=item_text)
    scores = candidate_log_likelihoods([model], encoder, EXAMPLES, batch_size=2)  # (1, E, C)
    for e, example in enumerate(EXAMPLES):
        for c, item in enumerate(example.candidates):
            as_target = next_item(example.user, example.history, item, example.candidates)
            with torch.no_grad():
                expected = -answer_token_losses(model, encoder([as_target])).sum()
            assert scores[0, e, c] == pytest.approx(float(expected), rel=1e-4, abs=1e-4)


def test_greedy_answers_equal_step_by_step_argmax_without_cache(tokenizer):
    model = tiny_model(tokenizer, seed=2)
    encoder = PromptEncoder(tokenizer, "movielens", TITLES, item_text="title")
    answers = greedy_answers([model], encoder, EXAMPLES, max_new_tokens=4, batch_size=2)
    for example, answer in zip(EXAMPLES, answers):
        ids = list(encoder.encode(example).prompt)
        generated = []
        with torch.no_grad():
            for _ in range(4):
                token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if token == tokenizer.eos_token_id:
                    break
                generated.append(token)
                ids.append(token)
        assert answer == tokenizer.decode(generated, skip_special_tokens=True).strip().split("\n")[0]


def test_ensembles_average_probabilities(tokenizer):
    first, second = tiny_model(tokenizer, seed=3), tiny_model(tokenizer, seed=4)
    encoder = PromptEncoder(tokenizer, "movielens", TITLES)
    question = PreferenceExample(user=1, position=3, history=(1, 2, 3), history_titles=("Heat", "Casino", "Fargo"),
                                 history_liked=(True, False, True), item=4, item_title="Toy Story", label=1, rating=5)
    p = [yes_probabilities([m], encoder, [question])[0] for m in (first, second)]
    assert yes_probabilities([first, second], encoder, [question])[0] == pytest.approx(sum(p) / 2)


def test_clones_share_the_frozen_base_but_not_the_adapter(tokenizer):
    model = tiny_model(tokenizer)
    clone = clone_adapter_model(model)
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    for name, p in clone.named_parameters():
        if p.requires_grad:
            assert p is not dict(model.named_parameters())[name]
        else:
            assert p is frozen[name]
