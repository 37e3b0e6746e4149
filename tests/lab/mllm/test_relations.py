"""The R-Bench-like generator: deterministic, labels right from the scene description."""

import re

import numpy as np
import pytest

from eraserlab.mllm import relations
from eraserlab.mllm.relations import OPPOSITE, RELATIONS
from eraserlab.mllm.scenes import SceneObject

_QUESTION = re.compile(r"^Is the (\w+) (left of|right of|above|below) the (\w+)\?$")


def _obj(x, y):
    return SceneObject("circle", "white", x, y, 0.2)


@pytest.mark.parametrize(
    "subject, obj, holds",
    [
        (_obj(0.2, 0.5), _obj(0.8, 0.5), {"left of"}),
        (_obj(0.8, 0.5), _obj(0.2, 0.5), {"right of"}),
        (_obj(0.5, 0.2), _obj(0.5, 0.8), {"above"}),  # y grows downwards
        (_obj(0.5, 0.8), _obj(0.5, 0.2), {"below"}),
        (_obj(0.2, 0.4), _obj(0.8, 0.6), {"left of"}),  # dominant axis decides
    ],
)
def test_relation_holds_by_hand(subject, obj, holds):
    assert {r for r in RELATIONS if relations.relation_holds(subject, obj, r)} == holds


def test_same_seed_same_questions():
    a, ia = relations.generate_relations(10, seed=7)
    b, ib = relations.generate_relations(10, seed=7)
    assert [x.record for x in a] == [y.record for y in b]
    assert all((ia[k] == ib[k]).all() for k in ia)
    c, _ = relations.generate_relations(10, seed=8)
    assert [x.record for x in a] != [y.record for y in c]


@pytest.mark.parametrize("conflict", [False, True])
def test_labels_follow_from_the_scene(conflict):
    items, images = relations.generate_relations(150, seed=0, conflict=conflict)
    for item in items:
        r = item.record
        subject_name, relation, object_name = _QUESTION.match(r["text"]).groups()
        scene = item.scene
        subject = scene.objects[item.subject_index]
        assert subject_name == subject.shape == r["subject"] and object_name == r["object"]
        present = [o for o in scene.objects if o.shape == object_name]
        # Yes iff the named object is drawn, is the one in the green box, and the relation holds
        truth = bool(present) and relations.relation_holds(subject, present[0], relation) \
            and r["obj_box"] == relations.object_box(present[0])
        assert r["label"] == ("Yes" if truth else "No")
        if r["qtype"] == "Random":
            assert not present and item.target_index is None
            x1, y1, x2, y2 = r["obj_box"]  # the green box frames no drawn object's centre
            assert not any(x1 <= o.x <= x2 and y1 <= o.y <= y2 for o in scene.objects)
        else:
            real = scene.objects[item.target_index]
            assert real.shape == object_name and r["obj_box"] == relations.object_box(real)
            flipped = relation if r["qtype"] == "Positive" else OPPOSITE[relation]
            assert relations.relation_holds(subject, real, flipped)
        assert r["sub_box"] == relations.object_box(subject)
        true_relation = next(x for x in RELATIONS if relations.relation_holds(subject, scene.objects[1], x))
        assert item.aligned == relations.position_agrees(subject, true_relation)
        if conflict:
            assert not item.aligned
        assert r["image"] in images


def test_question_mix_is_balanced_and_names_are_distinct():
    items, _ = relations.generate_relations(400, seed=1)
    labels = [i.record["label"] for i in items]
    assert labels.count("Yes") == labels.count("No") == 400
    qtypes = [i.record["qtype"] for i in items]
    # 30% of images are meant to get a Random question; a few lack room for the empty box
    assert qtypes.count("Random") / 400 == pytest.approx(0.3, abs=0.06)
    for item in items:
        assert len({o.shape for o in item.scene.objects}) == 3


def test_image_level_records_have_only_the_image_level_fields():
    items, _ = relations.generate_relations(3, seed=0, level="image")
    assert set(items[0].record) == {"question_id", "qtype", "image", "text", "label"}


def test_relation_task_groups_by_image_and_numbers_uniquely():
    task = relations.relation_task(0, n_images=50, n_conflict_images=10)
    assert {k: len(v) for k, v in task.items()} == {"train": 60, "val": 20, "test": 20, "conflict": 20}
    ids = [e.meta["question_id"] for part in task.values() for e in part]
    assert len(ids) == len(set(ids))
    parts = {}
    for name, part in task.items():
        for e in part:
            assert parts.setdefault(e.meta["image"], name) == name
    e = task["train"][0]
    assert "in red bounding box" in e.question and e.candidates == ("Yes", "No")


def test_subsets_are_seeded_samples_of_the_pool():
    ids = list(range(100))
    subsets = relations.rbench_subsets(ids, seed=0)
    assert len(subsets) == 5 and all(len(s) == 50 and set(s) <= set(ids) for s in subsets)
    assert subsets == relations.rbench_subsets(ids, seed=0)
    assert np.mean([len(set(subsets[0]) & set(s)) for s in subsets[1:]]) < 40
