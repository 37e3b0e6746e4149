"""Requests are matched against the training data by value before any work (eraserlib.matching)."""

import numpy as np
import pytest
import torch

import eraserlib
from eraserlib.matching import ExampleIndex, example_digest
from eraserlib.toy.convex import fit, logistic_loss, make_problem


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.stack([y for _, y in examples])


@pytest.fixture(scope="module")
def convex():
    problem = make_problem(60, num_features=3, seed=1)
    return fit(problem.examples, problem.weight_decay), problem


def test_digest_is_by_value_dtype_and_shape():
    a = torch.arange(4)
    assert example_digest(a) == example_digest(torch.arange(4))
    assert example_digest(a) != example_digest(a.double())
    assert example_digest(a) != example_digest(a.reshape(2, 2))
    assert example_digest(torch.tensor(1.0)) != example_digest(torch.tensor(2.0))  # 0-d tensors too
    assert example_digest((1, "x")) != example_digest([1, "x"])
    assert example_digest({"b": 1, "a": np.zeros(2)}) == example_digest({"a": np.zeros(2), "b": 1})
    assert example_digest(np.zeros(2, np.float32)) != example_digest(np.zeros(2, np.float64))


def test_locate_finds_copies_and_each_training_example_once():
    data = [torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([1, 2])]
    index = ExampleIndex(data)
    assert index.locate([torch.tensor([1, 2]), torch.tensor([1, 2])], "x") == [0, 2]
    with pytest.raises(eraserlib.InvalidRequestError, match="appears 3 times in the request but 2"):
        index.locate([data[0]] * 3, "x")


def test_apply_to_gives_the_data_the_request_leaves():
    data = [(torch.tensor([float(i)]), torch.tensor(0.0)) for i in range(5)]
    removal = eraserlib.InstanceRemoval([data[3], data[1]])
    assert removal.locate(data) == [3, 1]
    assert [float(x) for x, _ in removal.apply_to(data)] == [0.0, 2.0, 4.0]
    new = (torch.tensor([9.0]), torch.tensor(1.0))
    correction = eraserlib.ResponseCorrection([data[2]], [new])
    after = correction.apply_to(data)
    assert after[2] is new and len(after) == 5 and after[0] is data[0]


@pytest.mark.parametrize("make, message", [
    (lambda d: eraserlib.InstanceRemoval([(d[0][0] + 1e-3, d[0][1])]), "InstanceRemoval example 0 is not in train_data"),
    (lambda d: eraserlib.InstanceRemoval([d[1], d[1]]), "appears 2 times"),
    (lambda d: eraserlib.ResponseCorrection([(d[0][0], 1 - d[0][1])], [d[0]]), "old example 0 is not in train_data"),
    (lambda d: eraserlib.QueryModification([d[0], (d[1][0].float(), d[1][1])], [d[2], d[1]]),
     "old example 1 is not in train_data"),
])
def test_erase_refuses_a_request_that_is_not_in_the_data(convex, make, message):
    model, problem = convex
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(eraserlib.InvalidRequestError, match=message):
        eraserlib.erase(model, logistic_loss, problem.examples, make(problem.examples), solver="cg",
                        weight_decay=problem.weight_decay, collate_fn=collate, progress=False)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("value", ["abc", b"abc", {"input_ids": [1, 2]}, torch.zeros(2, 3), np.zeros(3), 5])
def test_one_example_or_text_is_not_a_sequence_of_examples(value):
    with pytest.raises(eraserlib.InvalidRequestError, match="sequence|one example"):
        eraserlib.InstanceRemoval(value)
    with pytest.raises(eraserlib.InvalidRequestError, match="sequence|one example"):
        eraserlib.ResponseCorrection(value, [1])


def test_requests_can_name_examples_by_index(convex):
    model, problem = convex
    data = problem.examples
    by_index = eraserlib.InstanceRemoval.from_indices(data, [4, 7])
    assert by_index.locate(data) == [4, 7]
    result = eraserlib.erase(model, logistic_loss, data, by_index, solver="cg", weight_decay=problem.weight_decay,
                             collate_fn=collate, progress=False)
    assert result.diagnostics["request_indices"] == [4, 7]
    fixed = eraserlib.ResponseCorrection.from_indices(data, [2], [(data[2][0], 1 - data[2][1])])
    assert fixed.locate(data) == [2]
    for bad, message in [([60], "outside"), ([1, 1], "twice"), ([1.5], "not an integer"), ([True], "not an integer")]:
        with pytest.raises(eraserlib.InvalidRequestError, match=message):
            eraserlib.InstanceRemoval.from_indices(data, bad)


def test_lists_of_numbers_are_hashed_packed_but_still_by_type():
    assert example_digest([1, 2]) == example_digest([1, 2])
    assert len({example_digest(v) for v in ([1, 2], [1.0, 2.0], [True, 2], (1, 2), [1, 2, 0], [2**70, 1])}) == 6
    assert example_digest({"input_ids": [1, 2]}) != example_digest({"input_ids": [1, 3]})


def test_a_hugging_face_dataset_is_training_data(tiny_facts):
    """Rows of a datasets.Dataset are dicts: matched by value as dataset[i] gives them, in either format."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eraserlib.adapters import load_adapter
    from eraserlib.toy.facts import tokenized

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_facts.base))
    rows = tokenized(tiny_facts.rows, tokenizer)
    dataset = datasets.Dataset.from_list(rows)
    for view in (dataset, dataset.with_format("torch")):
        assert ExampleIndex(view).digests == [example_digest(view[i]) for i in range(len(view))]
    assert eraserlib.InstanceRemoval(dataset.select([4, 1])).locate(dataset) == [4, 1]
    assert eraserlib.InstanceRemoval([dataset[2]]).locate(rows) == [2]  # a row equals the list's dict

    model = load_adapter(AutoModelForCausalLM.from_pretrained(str(tiny_facts.base), attn_implementation="eager"),
                         tiny_facts.adapter)
    common = dict(solver="cg", damping=0.5, batch_size=8, collate_fn=eraserlib.CausalLMCollator(0), progress=False)
    from_dataset = eraserlib.erase(model, eraserlib.causal_lm_loss, dataset,
                                   eraserlib.InstanceRemoval(dataset.select([4, 1])), **common)
    from_list = eraserlib.erase(model, eraserlib.causal_lm_loss, rows, eraserlib.InstanceRemoval([rows[4], rows[1]]),
                                **common)
    assert from_dataset.diagnostics["request_indices"] == [4, 1]
    assert from_dataset.diagnostics["train_data_sha256"] == from_list.diagnostics["train_data_sha256"]
    assert all(torch.equal(from_dataset.delta[k], from_list.delta[k]) for k in from_list.delta)
