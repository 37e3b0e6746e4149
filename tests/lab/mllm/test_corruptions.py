"""Corrupted training sets: the asked share, old/new pairing, and what each corruption does."""

import numpy as np
import pytest

from eraserlab.mllm import corruptions, relations, spurious
from eraserlab.mllm.spurious import CLASSES, LETTERS


@pytest.fixture(scope="module")
def mc_train():
    return spurious.spurious_task(0, n_images=100, n_conflict=1)["train"]


@pytest.fixture(scope="module")
def rel_train():
    return relations.relation_task(0, n_images=50, n_conflict_images=1)["train"]


def _shape_of_letter(question, letter):
    line = next(line for line in question.splitlines() if line.startswith(f"{letter}. "))
    return line.split(". ", 1)[1]


@pytest.mark.parametrize("which", ["mc", "rel"])
def test_flip_changes_the_answer_of_the_asked_share(which, mc_train, rel_train):
    train = mc_train if which == "mc" else rel_train
    c = corruptions.flip_answers(train, share=0.4, seed=0)
    assert len(c.indices) == round(0.4 * len(train)) and c.kind == "flip"
    for i, old, new in zip(c.indices, c.old, c.new):
        assert c.train[i] is old and train[i] is new
        assert old.answer != new.answer and old.answer in new.candidates
        assert old.question == new.question and (old.image == new.image).all()
    untouched = set(range(len(train))) - set(c.indices)
    assert all(c.train[i] is train[i] for i in untouched)
    assert corruptions.flip_answers(train, 0.4, seed=0).indices == c.indices
    assert corruptions.flip_answers(train, 0.4, seed=1).indices != c.indices


@pytest.mark.parametrize("kind", corruptions.QUERY_CORRUPTIONS)
@pytest.mark.parametrize("which", ["mc", "rel"])
def test_query_corruptions_keep_answers_and_change_the_query(kind, which, mc_train, rel_train):
    train = mc_train if which == "mc" else rel_train
    c = corruptions.corrupt_queries(train, share=0.2, seed=0, kind=kind)
    assert len(c.old) == round(0.2 * len(train))
    for old, new in zip(c.old, c.new):
        assert old.answer == new.answer
        changed_image = not np.array_equal(old.image, new.image)
        changed_question = old.question != new.question
        assert changed_image != changed_question  # exactly one of the two changes
        assert changed_question == (kind == "question")


def test_swap_makes_the_image_contradict_a_multiple_choice_answer(mc_train):
    c = corruptions.corrupt_queries(mc_train, share=0.3, seed=0, kind="swap")
    for old, new in zip(c.old, c.new):
        assert old.meta["scene"].objects[0].shape != new.meta["scene"].objects[0].shape
        assert _shape_of_letter(old.question, old.answer) == new.meta["scene"].objects[0].shape


def test_swap_reverses_the_relation_and_moves_the_boxes(rel_train):
    c = corruptions.corrupt_queries(rel_train, share=0.5, seed=0, kind="swap")
    for old, new in zip(c.old, c.new):
        s, r = new.meta["subject_index"], new.meta["relation"]
        before, after = new.meta["scene"].objects[s], old.meta["scene"].objects[s]
        assert (after.x, after.y) == (new.meta["target"].x, new.meta["target"].y)
        assert relations.relation_holds(after, old.meta["target"], relations.OPPOSITE[r]) == \
            relations.relation_holds(before, new.meta["target"], r)
        assert old.meta["record"]["sub_box"] == relations.object_box(after)
        assert old.meta["record"]["obj_box"] == relations.object_box(old.meta["target"])


def test_question_corruption_points_each_letter_at_another_shape(mc_train):
    c = corruptions.corrupt_queries(mc_train, share=0.3, seed=0, kind="question")
    for old, new in zip(c.old, c.new):
        assert sorted(_shape_of_letter(old.question, x) for x in LETTERS) == sorted(CLASSES)
        assert all(_shape_of_letter(old.question, x) != _shape_of_letter(new.question, x) for x in LETTERS)


def test_question_corruption_flips_the_relation_word(rel_train):
    c = corruptions.corrupt_queries(rel_train, share=0.3, seed=0, kind="question")
    for old, new in zip(c.old, c.new):
        r = new.meta["relation"]
        assert old.question == new.question.replace(f" {r} ", f" {relations.OPPOSITE[r]} ")


def test_swap_on_real_data_names_the_problem(mc_train):
    real = [e.replaced() for e in mc_train[:3]]
    for e in real:
        del e.meta["scene"]
    with pytest.raises(ValueError, match="re-renders the scene"):
        corruptions.corrupt_queries(real, share=1.0, kind="swap")
    with pytest.raises(ValueError, match="unknown query corruption"):
        corruptions.corrupt_queries(mc_train, kind="blur")
