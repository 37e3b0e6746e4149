"""Loaders read files written in the real benchmarks' formats; generated data round-trips."""

import json

import numpy as np
import pytest
from PIL import Image

from eraserlab.mllm import formats, relations, spurious


def _png(path, colour, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def mmspubench_dir(tmp_path):
    """Two records as MM-SpuBench ships them: annotation.json plus images/."""
    records = [
        {
            "core_attributes": ["compact design", "branding", "cosmetic container"],
            "spurious_attributes": ["round shape", "marble-like background", "shiny surface"],
            "spurious_correlation_type": ["Shape", "Background"],
            "question": "Which feature best indicates the identity of the round object on the marble-like surface?",
            "choices": ["A. The branding on it", "B. The marble-like background", "C. The round shape",
                        "D. Its shiny surface"],
            "answer": "A",
            "image": "000000.png",
        },
        {
            "core_attributes": ["keys"],
            "spurious_attributes": ["wooden table"],
            "spurious_correlation_type": ["Co-occurring Objects"],
            "question": "Which feature best indicates the identity of the object?",
            "choices": ["A. The table", "B. The metal teeth", "C. The lighting", "D. The angle"],
            "answer": "B",
            "image": "000001.png",
        },
    ]
    (tmp_path / "annotation.json").write_text(json.dumps(records))
    _png(tmp_path / "images" / "000000.png", (255, 0, 0))
    _png(tmp_path / "images" / "000001.png", (0, 0, 255))
    return tmp_path


@pytest.fixture
def rbench_dir(tmp_path):
    """Instance- and image-level files as R-Bench ships them, two subset files each."""
    instance = [
        {"question_id": 10, "qtype": "Positive", "image": "0a1b.jpg", "text": "Is the man riding the horse?",
         "label": "Yes", "subject": "man", "object": "horse", "sub_box": [0.1, 0.1, 0.5, 0.9],
         "obj_box": [0.4, 0.3, 0.9, 0.95]},
        {"question_id": 11, "qtype": "Opposite", "image": "0a1b.jpg", "text": "Is the horse riding the man?",
         "label": "No", "subject": "horse", "object": "man", "sub_box": [0.4, 0.3, 0.9, 0.95],
         "obj_box": [0.1, 0.1, 0.5, 0.9]},
    ]
    image_level = [{k: r[k] for k in ("question_id", "qtype", "image", "text", "label")} for r in instance]
    image_level.append({"question_id": 12, "qtype": "Random", "image": "0a1b.jpg",
                        "text": "Is the man holding the umbrella?", "label": "No"})
    (tmp_path / "instance-level_filterd.json").write_text(json.dumps(instance))
    (tmp_path / "image-level_filterd.json").write_text(json.dumps(image_level))
    for k, ids in ((1, [10, 11]), (2, [11])):
        (tmp_path / f"instance-level_ids_{k}.json").write_text(json.dumps(ids))
        (tmp_path / f"nocaps_image-level_rel_ids_{k}.json").write_text(json.dumps(ids + [12]))
    _png(tmp_path / "images" / "0a1b.jpg", (200, 200, 200), size=(512, 384))
    return tmp_path


def test_mmspubench_loader_reads_the_real_layout(mmspubench_dir):
    records = formats.read_mmspubench(mmspubench_dir)
    examples = formats.mmspubench_examples(records, mmspubench_dir)
    assert [e.answer for e in examples] == ["A", "B"]
    assert examples[0].candidates == ("A", "B", "C", "D")
    assert examples[0].question.splitlines()[:2] == [records[0]["question"], "A. The branding on it"]
    assert examples[0].meta["types"] == ["Shape", "Background"]
    assert examples[0].image.shape == (30, 40, 3) and tuple(examples[0].image[0, 0]) == (255, 0, 0)


def test_mmspubench_loader_names_a_missing_field(tmp_path):
    (tmp_path / "annotation.json").write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(ValueError, match="lacks fields"):
        formats.read_mmspubench(tmp_path)


def test_rbench_instance_level_draws_boxes_and_rewrites_the_question(rbench_dir):
    records, subsets = formats.read_rbench(rbench_dir, "instance")
    assert subsets == [[10, 11], [11]]
    examples = formats.rbench_examples(records, rbench_dir, "instance")
    e = examples[0]
    assert e.question == "Is the man in red bounding box riding the horse in green bounding box?"
    assert (e.answer, examples[1].answer) == ("Yes", "No")
    # R-Bench's draw_box: 4-pixel outlines on a 512x384 image, subject red, object green
    assert tuple(e.image[int(0.5 * 384), int(0.1 * 512) + 1]) == (255, 0, 0)
    assert tuple(e.image[int(0.6 * 384), int(0.9 * 512) - 1]) == (0, 128, 0)
    assert tuple(e.image[5, 5]) == (200, 200, 200)


def test_rbench_image_level_keeps_image_and_text(rbench_dir):
    records, subsets = formats.read_rbench(rbench_dir, "image")
    examples = formats.rbench_examples(records, rbench_dir, "image")
    assert [e.meta["qtype"] for e in examples] == ["Positive", "Opposite", "Random"]
    assert examples[2].question == "Is the man holding the umbrella?" and examples[2].answer == "No"
    assert (examples[0].image == 200).all()
    assert subsets == [[10, 11, 12], [11, 12]]


def test_rbench_loader_rejects_an_unknown_level(rbench_dir):
    with pytest.raises(ValueError, match="unknown R-Bench level"):
        formats.read_rbench(rbench_dir, "pixel")


def test_generated_spurious_data_round_trips_through_the_real_format(tmp_path):
    items = spurious.generate_spurious(8, seed=0)
    images = {i.record["image"]: i.image for i in items}
    formats.write_mmspubench(tmp_path, [i.record for i in items], images)
    loaded = formats.mmspubench_examples(formats.read_mmspubench(tmp_path), tmp_path)
    direct = spurious.spurious_examples(items)
    for a, b in zip(loaded, direct):
        assert (a.question, a.answer, a.candidates) == (b.question, b.answer, b.candidates)
        np.testing.assert_array_equal(a.image, b.image)  # PNG is lossless


@pytest.mark.parametrize("level", ["instance", "image"])
def test_generated_relation_data_round_trips_through_the_real_format(tmp_path, level):
    items, images = relations.generate_relations(4, seed=0, level=level)
    subsets = relations.rbench_subsets([i.record["question_id"] for i in items], seed=0)
    formats.write_rbench(tmp_path, [i.record for i in items], images, level, subsets)
    records, read_subsets = formats.read_rbench(tmp_path, level)
    assert read_subsets == subsets
    loaded = formats.rbench_examples(records, tmp_path, level)
    direct = relations.relation_examples(items, images, level)
    for a, b in zip(loaded, direct):
        assert (a.question, a.answer) == (b.question, b.answer)
        np.testing.assert_array_equal(a.image, b.image)


def test_instance_question_matches_rbench_construct():
    record = {"text": "Is the circle left of the square?", "subject": "circle", "object": "square"}
    assert formats.instance_question(record) == (
        "Is the circle in red bounding box left of the square in green bounding box?")
    assert formats.instance_question(record, mode="mask") == (
        "Is the circle in red mask left of the square in green mask?")


def test_label_rule_reads_no_anywhere_in_the_label(rbench_dir):
    records, _ = formats.read_rbench(rbench_dir, "image")
    records[0]["label"] = "no"
    records[1]["label"] = "Yes"
    examples = formats.rbench_examples(records[:2], rbench_dir, "image")
    assert [e.answer for e in examples] == ["No", "Yes"]
