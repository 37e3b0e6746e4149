"""The MM-SpuBench-like generator: deterministic, right labels, the shortcut at the asked rate."""

import numpy as np
import pytest

from eraserlab.mllm import spurious
from eraserlab.mllm.spurious import CLASSES, LETTERS, SPURIOUS_TYPES, SPURIOUS_VALUES


def test_same_seed_same_items_other_seed_other_items():
    a, b = spurious.generate_spurious(20, seed=3), spurious.generate_spurious(20, seed=3)
    assert [x.record for x in a] == [y.record for y in b]
    assert all((x.image == y.image).all() for x, y in zip(a, b))
    c = spurious.generate_spurious(20, seed=4)
    assert [x.scene for x in a] != [y.scene for y in c]


def test_answer_names_the_main_objects_shape_in_the_description():
    for item in spurious.generate_spurious(200, seed=0, shuffle_choices=True):
        r = item.record
        chosen = r["choices"][LETTERS.index(r["answer"])]
        # "B. square" -> the shape named by the correct choice, parsed from the text
        assert chosen.split(". ", 1)[1] == item.scene.objects[0].shape
        assert r["core_attributes"] == [f"{item.scene.objects[0].shape} shape"]


def test_aligned_means_the_spurious_value_is_the_answers_associate():
    for item in spurious.generate_spurious(200, seed=1):
        shape = item.scene.objects[0].shape
        value = spurious.spurious_value(item.scene, item.spurious_type)
        associate = SPURIOUS_VALUES[item.spurious_type][CLASSES.index(shape)]
        assert item.aligned == (value == associate)
        assert (spurious.shortcut_answer(item.scene, item.spurious_type) == shape) == item.aligned
        assert item.record["spurious_correlation_type"] == [item.spurious_type]
        assert value in item.record["spurious_attributes"][0]


def test_rho_sets_the_aligned_share_and_zero_gives_a_conflict_set():
    items = spurious.generate_spurious(2000, seed=2, rho=0.9)
    assert np.mean([i.aligned for i in items]) == pytest.approx(0.9, abs=0.02)
    assert not any(i.aligned for i in spurious.generate_spurious(300, seed=2, rho=0.0))


def test_types_and_classes_are_balanced():
    items = spurious.generate_spurious(1000, seed=5)
    types = [i.spurious_type for i in items]
    assert {t: types.count(t) for t in SPURIOUS_TYPES} == {t: 200 for t in SPURIOUS_TYPES}
    answers = [i.record["answer"] for i in items]
    assert all(abs(answers.count(letter) - 250) < 50 for letter in LETTERS)


def test_choices_carry_no_lexical_cue():
    """Every question has the same choice texts (fixed order): text alone cannot give the answer."""
    items = spurious.generate_spurious(50, seed=0)
    assert len({tuple(i.record["choices"]) for i in items}) == 1
    assert len({i.record["question"] for i in items}) == 1
    shuffled = spurious.generate_spurious(50, seed=0, shuffle_choices=True)
    assert all(sorted(c.split(". ")[1] for c in i.record["choices"]) == sorted(CLASSES) for i in shuffled)


def test_spurious_task_splits_60_20_20_and_adds_a_conflict_set():
    task = spurious.spurious_task(0, n_images=100, n_conflict=40)
    assert {k: len(v) for k, v in task.items()} == {"train": 60, "val": 20, "test": 20, "conflict": 40}
    images = [{e.meta["image"] for e in task[k]} for k in task]
    assert sum(len(s) for s in images) == len(set().union(*images))  # no image in two parts
    assert not any(e.meta["aligned"] for e in task["conflict"])
    e = task["train"][0]
    assert e.candidates == LETTERS and e.answer in LETTERS and e.image.shape == (32, 32, 3)
