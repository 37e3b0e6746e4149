"""Batching, the answer-only loss, answer distributions, generation and the split by image."""

import pytest
import torch
import torch.nn.functional as F

from eraserlab.mllm import pretrain, relations, spurious, tasks


@pytest.fixture(scope="module")
def examples():
    task = spurious.spurious_task(0, n_images=20, n_conflict=4)
    rel = relations.relation_task(0, n_images=10, n_conflict_images=2)
    return task["train"][:4], rel["train"][:4]


def test_every_generated_text_is_in_the_vocabulary(small_processor):
    tokenizer = small_processor.tokenizer
    texts = []
    for level in ("instance", "image"):
        task = relations.relation_task(0, n_images=30, level=level, n_conflict_images=5)
        texts += [f"{e.question} {e.answer}" for part in task.values() for e in part]
    task = spurious.spurious_task(0, n_images=30, n_conflict=5)
    texts += [f"{e.question} {e.answer}" for part in task.values() for e in part]
    batch = pretrain.curriculum_batch([0], 64, pretrain.PRETRAIN_TASKS, 32)
    texts += [f"{e.question} {e.answer}" for e in batch]
    texts.append(tasks.PROMPT_TEMPLATE.format(question="Is the circle left of the square?"))
    for text in texts:
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text


def test_labels_cover_exactly_the_answer_and_eos(small_processor, examples):
    collate = tasks.VQACollator(small_processor)
    mc, yes_no = examples
    batch = collate(list(mc[:2]) + list(yes_no[:2]))
    tokenizer = small_processor.tokenizer
    for row, e in zip(batch["labels"], list(mc[:2]) + list(yes_no[:2])):
        kept = row[row != -100].tolist()
        assert kept == tokenizer(f"{e.answer}</s>", add_special_tokens=False)["input_ids"]
    n_image = (batch["input_ids"] == small_processor.image_token_id).sum(dim=1)
    assert n_image.tolist() == [16] * 4  # (32 / 8)^2 patches
    assert batch["pixel_values"].shape == (4, 3, 32, 32)


def test_answer_loss_is_the_mean_of_per_example_answer_nll(small_processor, small_model, examples):
    collate = tasks.VQACollator(small_processor)
    batch = collate(examples[1])
    loss = tasks.answer_loss(small_model, batch)
    logits = small_model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    per_example = []
    for b in range(len(examples[1])):
        positions = (batch["labels"][b] != -100).nonzero().flatten()
        nll = F.cross_entropy(logits[b, positions - 1], batch["labels"][b, positions])
        per_example.append(nll)
    torch.testing.assert_close(loss, torch.stack(per_example).mean())


def test_padding_does_not_change_an_examples_loss(small_processor, small_model, examples):
    """Right padding beside a longer question must leave an example's loss unchanged."""
    collate = tasks.VQACollator(small_processor)
    mc, yes_no = examples
    alone = tasks.answer_loss(small_model, collate([yes_no[0]]))
    with_longer = collate([yes_no[0], mc[0]])
    assert with_longer["attention_mask"][0].sum() < with_longer["attention_mask"].shape[1]
    both = tasks.answer_loss(small_model, with_longer)
    other = tasks.answer_loss(small_model, collate([mc[0]]))
    torch.testing.assert_close(both, (alone + other) / 2, rtol=1e-5, atol=1e-5)


def test_answer_distribution_rows_are_probabilities_and_match_batch_size(small_processor, small_model, examples):
    collate = tasks.VQACollator(small_processor)
    mc = examples[0]
    p = tasks.answer_distribution(small_model, collate, mc, batch_size=4)
    assert p.shape == (4, 4)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(p, tasks.answer_distribution(small_model, collate, mc, batch_size=1),
                               rtol=1e-4, atol=1e-5)


def test_batched_generation_equals_one_at_a_time(small_processor, small_model, examples):
    collate = tasks.VQACollator(small_processor)
    mixed = list(examples[0][:2]) + list(examples[1][:2])  # different prompt lengths: left padding
    together = tasks.generate_answers(small_model, collate, mixed, max_new_tokens=3)
    alone = [tasks.generate_answers(small_model, collate, [e], max_new_tokens=3)[0] for e in mixed]
    assert together == alone


def test_candidate_tokens_must_be_single_tokens(small_processor):
    collate = tasks.VQACollator(small_processor)
    assert len(tasks.candidate_token_ids(collate, ("Yes", "No"))) == 2
    with pytest.raises(ValueError, match="not one token"):
        tasks.candidate_token_ids(collate, ("left of", "above"))


def test_split_by_image_keeps_questions_of_an_image_together(examples):
    task = relations.relation_task(1, n_images=40, n_conflict_images=1)
    everything = task["train"] + task["val"] + task["test"]
    again = tasks.split_by_image(everything, seed=1)
    assert {k: len(v) for k, v in again.items()} == {"train": 48, "val": 16, "test": 16}
    for part in again.values():
        for e in part:
            assert all(f.meta["image"] != e.meta["image"] for other in again.values() if other is not part
                       for f in other)
    with pytest.raises(ValueError, match="fractions"):
        tasks.split_by_image(everything, seed=0, fractions=(0.5, 0.5))


def test_left_padding_leaves_answer_distributions_unchanged(small_processor, small_model):
    """Relation questions differ in length ("left of" vs "above"); batching pads them on the left."""
    collate = tasks.VQACollator(small_processor)
    rel = relations.relation_task(0, n_images=10, n_conflict_images=1)["train"]
    lengths = {len(e.question.split()) for e in rel[:8]}
    assert len(lengths) > 1
    together = tasks.answer_distribution(small_model, collate, rel[:8], batch_size=8)
    alone = torch.cat([tasks.answer_distribution(small_model, collate, [e]) for e in rel[:8]])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
