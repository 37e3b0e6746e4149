"""The pre-training curriculum: deterministic, answers right from the scene descriptions."""

import pytest

from eraserlab.mllm import pretrain, relations, spurious


def test_curriculum_is_deterministic_and_follows_the_mixture():
    a = pretrain.curriculum_batch([0, 1], 40, {"describe": 1.0, "where_box": 1.0}, 32)
    b = pretrain.curriculum_batch([0, 1], 40, {"describe": 1.0, "where_box": 1.0}, 32)
    assert [(e.question, e.answer) for e in a] == [(e.question, e.answer) for e in b]
    assert all((x.image == y.image).all() for x, y in zip(a, b))
    assert {e.meta["task"] for e in a} == {"describe", "where_box"}
    with pytest.raises(ValueError, match="unknown pre-training tasks"):
        pretrain.curriculum_batch([0], 4, ("spell",), 32)


def test_curriculum_answers_follow_from_the_description():
    batch = pretrain.curriculum_batch([3], 200, pretrain.PRETRAIN_TASKS, 32)
    seen = set()
    for e in batch:
        task = e.meta["task"]
        seen.add(task)
        if task == "describe":
            a = e.meta["attributes"]
            assert e.answer.split()[1:4] == [a["Relative Size"], a["Colorization"], a["shape"]]
        elif task == "choose":
            kind = e.meta["asked"]
            value = e.meta["attributes"][kind]
            assert f"{e.answer}. {value}" in e.question.splitlines()
            assert kind != "shape"  # the shape question is the benchmark's, never pre-trained
        else:
            item = e.meta["item"]
            subject = item.scene.objects[item.subject_index]
            if task == "where_box":
                assert item.target_index is not None
                assert any(r.startswith(e.answer) and relations.relation_holds(subject, item.target, r)
                           for r in relations.RELATIONS)
            else:
                assert f" {item.relation} " in e.question and e.answer == item.record["label"]
    assert seen == set(pretrain.PRETRAIN_TASKS)


def test_curriculum_never_uses_the_benchmarks_wording():
    batch = pretrain.curriculum_batch([4], 200, pretrain.PRETRAIN_TASKS, 32)
    for e in batch:
        assert "bounding box" not in e.question  # R-Bench's instance wording
        assert spurious.QUESTION not in e.question  # MM-SpuBench stand-in's question


def test_stage_shares_must_match_the_stages():
    with pytest.raises(ValueError, match="stage_shares"):
        pretrain.pretrain(pretrain.TinyLlavaConfig(), pretrain.PretrainConfig(stage_shares=(0.5, 0.5)),
                          progress=False)
