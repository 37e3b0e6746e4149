"""Seeded corruptions: exact counts, determinism, and exactly what changed."""

import dataclasses

import pytest

from eraserlab.rec import corruption
from eraserlab.rec.next_item import build_next_item_dataset

USERS = 40


@pytest.fixture(scope="module")
def dataset(movielens_sequences, movielens_titles):
    sequences = movielens_sequences[:USERS]
    return build_next_item_dataset("movielens", sequences, movielens_titles, seed=0)


@pytest.fixture(scope="module")
def train(dataset):
    return dataset.train


def changed_positions(result):
    return tuple(i for i, (a, b) in enumerate(zip(result.clean, result.corrupted)) if a != b)


@pytest.mark.parametrize("ratio", [0.05, 0.10])
def test_query_removal(train, ratio):
    result = corruption.remove_last_history_item(train, ratio, seed=0)
    assert result.clean == tuple(train)
    assert len(result.indices) == int(ratio * len(train))
    assert changed_positions(result) == result.indices  # nothing else moved
    for old, new in zip(result.old, result.new):
        assert old.history == new.history[:-1] and old.history_titles == new.history_titles[:-1]
        assert len(old.history) >= 3
        restored = dataclasses.replace(old, history=new.history, history_titles=new.history_titles)
        assert restored == new


@pytest.mark.parametrize("ratio", [0.05, 0.10])
def test_query_replacement(train, dataset, ratio):
    titles = dataset.item_titles
    result = corruption.replace_last_history_item(train, ratio, seed=0, item_titles=titles)
    assert len(result.indices) == int(ratio * len(train))
    assert changed_positions(result) == result.indices
    for old, new in zip(result.old, result.new):
        noise = old.history[-1]
        assert old.history[:-1] == new.history[:-1] and noise != new.history[-1]
        assert noise not in new.history and noise not in new.candidates
        assert old.history_titles[-1] == dataset.item_titles[noise]
        assert old.history_titles[-1] not in set(new.history_titles) | set(new.candidate_titles)
        assert (old.target, old.candidates) == (new.target, new.candidates)


def test_response_correction(train):
    result = corruption.replace_targets(train, 0.1, seed=0)
    assert len(result.indices) == int(0.1 * len(train))
    assert changed_positions(result) == result.indices
    for old, new in zip(result.old, result.new):
        assert old.target != new.target and old.target in new.candidates
        assert old.target_title == new.candidate_titles[new.candidates.index(old.target)]
        assert (old.history, old.candidates) == (new.history, new.candidates)


@pytest.mark.parametrize(
    "make",
    [
        lambda train, titles, seed: corruption.remove_last_history_item(train, 0.1, seed),
        lambda train, titles, seed: corruption.replace_last_history_item(train, 0.1, seed, titles),
        lambda train, titles, seed: corruption.replace_targets(train, 0.1, seed),
    ],
    ids=["removal", "replacement", "response"],
)
def test_corruptions_are_seeded(train, dataset, make):
    a = make(train, dataset.item_titles, 0)
    assert make(train, dataset.item_titles, 0) == a
    b = make(train, dataset.item_titles, 1)
    assert a.indices != b.indices
    assert a.corrupted != b.corrupted


def test_kinds_with_one_seed_choose_different_examples(train, dataset):
    removal = corruption.remove_last_history_item(train, 0.1, seed=0)
    response = corruption.replace_targets(train, 0.1, seed=0)
    assert removal.indices != response.indices


def test_removal_refuses_more_than_the_eligible(train):
    three = [e for e in train if len(e.history) == 3][:5]
    short = three + [e for e in train if len(e.history) == 10][:5]
    with pytest.raises(ValueError, match="only 5 are eligible"):
        corruption.remove_last_history_item(short, 0.6, seed=0)


def test_corruption_count():
    assert corruption.corruption_count(0.1, 30) == 3
    assert corruption.corruption_count(0.05, 8575) == 428
    assert corruption.corruption_count(0.1, 9) == 0
    with pytest.raises(ValueError, match="ratio"):
        corruption.corruption_count(1.5, 10)


def test_instance_removal_by_share(train):
    result = corruption.remove_examples(train, share=0.02, seed=0)
    assert len(result.indices) == int(0.02 * len(train))
    assert len(result.retained) + len(result.removed) == len(train)
    assert not set(result.removed) & set(result.retained)
    assert corruption.remove_examples(train, share=0.02, seed=0) == result
    assert corruption.remove_examples(train, share=0.02, seed=1).indices != result.indices


def test_instance_removal_by_user(train):
    users = sorted({e.user for e in train})[:3]
    result = corruption.remove_examples(train, users=users)
    assert {e.user for e in result.removed} == set(users)
    assert len(result.removed) == sum(e.user in users for e in train)
    assert not any(e.user in users for e in result.retained)


def test_instance_removal_arguments(train):
    with pytest.raises(ValueError, match="exactly one"):
        corruption.remove_examples(train)
    with pytest.raises(ValueError, match="exactly one"):
        corruption.remove_examples(train, share=0.1, users=[1], seed=0)
    with pytest.raises(ValueError, match="needs a seed"):
        corruption.remove_examples(train, share=0.1)
    with pytest.raises(ValueError, match="999999"):
        corruption.remove_examples(train, users=[999999])
