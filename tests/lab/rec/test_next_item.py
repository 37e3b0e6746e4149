"""The LLaRA-style next-item task: histories, fixed candidates, splits, LLaRA's pickles."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from eraserlab.rec import next_item, readers
from eraserlab.rec.next_item import build_next_item_dataset, sample_candidates
from eraserlab.rec.random_draws import random_draws

USERS = 80  # a slice of MovieLens: ~8,000 examples, built in a fraction of a second


def build(sequences, titles, seed):
    return build_next_item_dataset("movielens", sequences[:USERS], titles, seed=seed)


@pytest.fixture(scope="module")
def small(movielens_sequences, movielens_titles):
    return build(movielens_sequences, movielens_titles, seed=0)


def all_examples(dataset):
    return dataset.train + dataset.validation + dataset.test


def test_examples_are_valid_questions(small, movielens_sequences, movielens_titles):
    by_user = {s.user: s.items.tolist() for s in movielens_sequences[:USERS]}
    for e in all_examples(small):
        assert 3 <= len(e.history) <= 10
        assert len(e.candidates) == 20
        assert e.candidates.count(e.target) == 1
        assert not set(e.history) & set(e.candidates)
        assert len(set(e.candidate_titles)) == 20  # names tell the candidates apart
        negative_titles = set(e.candidate_titles) - {e.target_title}
        assert not set(e.history_titles) & negative_titles
        assert e.candidate_titles == tuple(movielens_titles[i] for i in e.candidates)
        assert e.history_titles == tuple(movielens_titles[i] for i in e.history)
        assert e.candidate_titles[e.target_index] == e.target_title
        items = by_user[e.user]
        assert items[e.position] == e.target
        assert list(e.history) == items[max(0, e.position - 10) : e.position]


def test_split_is_leave_last_out(small, movielens_sequences):
    lengths = {s.user: len(s.items) for s in movielens_sequences[:USERS]}
    assert {e.user: e.position for e in small.test} == {u: n - 1 for u, n in lengths.items()}
    assert {e.user: e.position for e in small.validation} == {u: n - 2 for u, n in lengths.items()}
    assert len(small.train) == sum(n - 5 for n in lengths.values())
    assert all(e.position < lengths[e.user] - 2 for e in small.train)
    assert small.split("test") is small.test
    with pytest.raises(KeyError):
        small.split("dev")


def test_candidates_are_fixed_by_the_seed(small, movielens_sequences, movielens_titles):
    again = build(movielens_sequences, movielens_titles, seed=0)
    assert again == small  # every field of every example, candidates included


def test_another_seed_draws_other_candidates(small, movielens_sequences, movielens_titles):
    other = build(movielens_sequences, movielens_titles, seed=1)
    pairs = list(zip(all_examples(small), all_examples(other)))
    assert all(a.history == b.history and a.target == b.target for a, b in pairs)
    changed = sum(a.candidates != b.candidates for a, b in pairs)
    assert changed == len(pairs)
    shared = np.mean([len(set(a.candidates) & set(b.candidates)) for a, b in pairs])
    assert shared < 1.6  # the target, plus ~19·19/1670 negatives in common by chance


def test_an_examples_candidates_do_not_depend_on_the_others(
    small, movielens_sequences, movielens_titles
):
    subset = build_next_item_dataset(
        "movielens", movielens_sequences[30:40], movielens_titles, seed=0, max_train_per_user=4
    )
    reference = {(e.user, e.position): e for e in all_examples(small)}
    for e in all_examples(subset):
        assert reference[(e.user, e.position)] == e


def test_target_slot_and_negatives_are_uniform(small, movielens_titles):
    examples = all_examples(small)
    slots = Counter(e.target_index for e in examples)
    expected = len(examples) / 20
    assert set(slots) == set(range(20))
    assert max(abs(c - expected) for c in slots.values()) < 5 * expected**0.5
    negatives = [i for e in examples for i in e.candidates if i != e.target]
    pool = np.array(sorted(movielens_titles))
    # Mean id of a uniform draw over 1..1682 is 841.5 (sd 486 / sqrt(n) ≈ 1.2 here).
    assert abs(np.mean(negatives) - pool.mean()) < 10


def test_movielens_full_build(data_root):
    dataset = next_item.movielens_next_item(data_root, seed=0, max_train_per_user=2)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (2 * 943, 943, 943)
    assert len(dataset.item_titles) == 1682
    assert any("leave-last-out" in note for note in dataset.notes)


def test_lastfm_build_keeps_artists_with_three_listeners(lastfm_root):
    dataset = next_item.lastfm_next_item(lastfm_root, seed=0, max_train_per_user=1)
    assert len(dataset.item_titles) == 4614
    assert (len(dataset.validation), len(dataset.test)) == (1869, 1872)
    listening = readers.read_lastfm_listening(lastfm_root)
    kept = listening[listening["item"].isin(dataset.item_titles)]
    weights = kept.set_index(["user", "item"])["weight"]
    for e in dataset.test[:100]:  # histories run up the play counts to the most-played artist
        played = [weights[(e.user, i)] for i in (*e.history, e.target)]
        assert played == sorted(played)
        assert played[-1] == weights.loc[e.user].max()


def test_sample_candidates_needs_a_large_enough_pool():
    titles = {i: f"item {i}" for i in range(10)}
    with pytest.raises(ValueError, match="negatives"):
        sample_candidates([[0, 1, 2]], [3], np.array([[0, 0]]), np.arange(10), titles, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        sample_candidates([[0]], [1], np.array([[0, 0]]), np.arange(10), titles, 0, 1)


def test_sample_candidates_skips_items_that_share_a_name():
    # Items 0..99 with ids 2k and 2k+1 sharing a name: never both among candidates.
    titles = {i: f"name {i // 2}" for i in range(100)}
    (cands,) = sample_candidates([[0, 2, 4]], [6], np.array([[1, 1]]), np.arange(100), titles, 0)
    names = [titles[i] for i in cands]
    assert len(set(names)) == 20 and not {"name 0", "name 1", "name 2"} & set(names)
    assert 1 not in cands and 7 not in cands  # twins of a history item and of the target


def test_random_draws_are_keyed_hashes():
    keys = np.array([[1, 5], [2, 5], [1, 6]])
    draws = random_draws(0, keys, 0, 4)
    assert draws.shape == (3, 4) and draws.dtype == np.uint64
    assert (random_draws(0, keys[2:], 0, 4) == draws[2:]).all()  # independent of other rows
    assert (random_draws(0, keys, 2, 2) == draws[:, 2:]).all()  # counters continue
    assert not (random_draws(1, keys, 0, 4) == draws).any()
    assert len(set(draws.ravel().tolist())) == 12
    with pytest.raises(ValueError, match="seed"):
        random_draws(-1, keys, 0, 1)


def test_llara_pickles_become_examples(tmp_path):
    pad = 4606
    titles = {i: f"artist {i}" for i in range(200)}
    rows = {
        "train_data.df": {
            "seq": [[1, 2, 3, pad], [4, 5, pad, pad]],
            "len_seq": [3, 2],
            "next": [9, 8],
        },
        "Val_data.df": {"seq": [[10, 11, 12, 13]], "len_seq": [4], "next": [14]},
        "Test_data.df": {"seq": [[20, 21, 22, pad]], "len_seq": [3], "next": [23]},
    }
    for name, columns in rows.items():
        pd.DataFrame(columns).to_pickle(tmp_path / name)
    dataset = next_item.llara_next_item(tmp_path, titles, padding_item_id=pad, seed=3)
    assert [e.history for e in dataset.train] == [(1, 2, 3)]  # len_seq 2 dropped, as LLaRA does
    assert dataset.validation[0].history == (10, 11, 12, 13) and dataset.validation[0].target == 14
    assert dataset.test[0].target_title == "artist 23"
    for e in all_examples(dataset):
        assert len(e.candidates) == 20 and e.candidates.count(e.target) == 1
        assert not set(e.history) & set(e.candidates)
    again = next_item.llara_next_item(tmp_path, titles, padding_item_id=pad, seed=3)
    assert again == dataset
