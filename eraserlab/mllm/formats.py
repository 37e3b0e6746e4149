"""The real benchmarks' file formats: writers for generated data, readers, and the mapping to examples.

Generated benchmarks go through the same path as the real files, so pointing an experiment at a
downloaded MM-SpuBench or R-Bench folder changes the data, not the code.

MM-SpuBench (Ye et al. 2024)::

    <root>/annotation.json     JSON list of {core_attributes, spurious_attributes,
                               spurious_correlation_type, question, choices, answer, image}
    <root>/images/000000.png ...

R-Bench (Wu et al. 2024, github.com/mrwu-mac/R-Bench)::

    <root>/image-level_filterd.json      JSON list of {question_id, qtype, image, text, label}
    <root>/instance-level_filterd.json   ... plus subject, object, sub_box, obj_box
    <root>/nocaps_image-level_rel_ids_{1..5}.json, <root>/instance-level_ids_{1..5}.json
                                         JSON lists of question ids (the five evaluation subsets)
    <root>/images/<image>

(The real release spells "filterd" so; so do we. Its instance masks are not written: the box
variant needs none.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from eraserlab.mllm.tasks import VQAExample

MMSPUBENCH_FIELDS = (
    "core_attributes", "spurious_attributes", "spurious_correlation_type", "question", "choices",
    "answer", "image",
)
RBENCH_FIELDS = {
    "image": ("question_id", "qtype", "image", "text", "label"),
    "instance": ("question_id", "qtype", "image", "text", "label", "subject", "object", "sub_box",
                 "obj_box"),
}
RBENCH_QUESTION_FILE = {"image": "image-level_filterd.json", "instance": "instance-level_filterd.json"}
RBENCH_SUBSET_FILE = {"image": "nocaps_image-level_rel_ids_{}.json", "instance": "instance-level_ids_{}.json"}
MC_INSTRUCTION = "Answer with the letter."
WORDS: tuple[str, ...] = ("in", "red", "green", "bounding", "box", "mask", "Answer", "with", "the",
                          "letter", ".")

Images = Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray], str, Path]


# ---------------------------------------------------------------- MM-SpuBench


def write_mmspubench(root: str | Path, records: Sequence[dict], images: Mapping[str, np.ndarray]) -> Path:
    """Write records and their images in MM-SpuBench's layout.

    Args:
        root: folder to create (or fill).
        records: MM-SpuBench records.
        images: image arrays by the records' ``image`` names.

    Returns:
        The path of ``annotation.json``.
    """
    root = Path(root)
    _check_fields(records, MMSPUBENCH_FIELDS, "MM-SpuBench")
    _write_images(root / "images", images, {r["image"] for r in records})
    path = root / "annotation.json"
    path.write_text(json.dumps(list(records), indent=1))
    return path


def read_mmspubench(root: str | Path) -> list[dict]:
    """Read ``<root>/annotation.json`` and check every record has MM-SpuBench's fields."""
    path = Path(root) / "annotation.json"
    if not path.exists():
        raise FileNotFoundError(f"no MM-SpuBench annotation file at {path}")
    records = json.loads(path.read_text())
    _check_fields(records, MMSPUBENCH_FIELDS, f"MM-SpuBench ({path})")
    return records


def mmspubench_examples(
    records: Sequence[dict], images: Images, instruction: str = MC_INSTRUCTION
) -> list[VQAExample]:
    """Multiple-choice examples: the question, the four choices on their own lines, the letter.

    Args:
        records: MM-SpuBench records.
        images: a mapping or a callable from the ``image`` field to an array, or the benchmark's
            root folder (images are looked up there and in ``images/``).
        instruction: appended after the choices (LLaVA's multiple-choice prompts end so).

    Returns:
        Examples with ``meta``: ``benchmark``, ``question_id`` (position in the file), ``image``,
        ``types`` (the spurious correlation types), ``record``.
    """
    load = image_loader(images)
    examples = []
    for i, r in enumerate(records):
        letters = tuple(_choice_letter(c) for c in r["choices"])
        if r["answer"] not in letters:
            raise ValueError(f"record {i}: answer {r['answer']!r} is not one of the choices {letters}")
        question = "\n".join([r["question"], *r["choices"], instruction]).strip()
        meta = {"benchmark": "mm-spubench", "question_id": i, "image": r["image"],
                "types": list(r["spurious_correlation_type"]), "record": r}
        examples.append(VQAExample(load(r["image"]), question, r["answer"], letters, meta))
    return examples


def _choice_letter(choice: str) -> str:
    letter, dot, _ = choice.partition(".")
    if not dot or len(letter.strip()) != 1:
        raise ValueError(f"choice {choice!r} does not start with 'X.' as MM-SpuBench's do")
    return letter.strip()


# ---------------------------------------------------------------- R-Bench


def write_rbench(
    root: str | Path,
    records: Sequence[dict],
    images: Mapping[str, np.ndarray],
    level: str,
    subsets: Sequence[Sequence[int]] = (),
) -> Path:
    """Write records, their images and the evaluation subsets in R-Bench's layout.

    Args:
        root: folder to create (or fill).
        records: R-Bench records of one level.
        images: image arrays by name (without boxes; they are drawn at example time).
        level: ``"image"`` or ``"instance"``.
        subsets: lists of question ids, written as ``..._ids_{1..}.json``.

    Returns:
        The path of the question file.
    """
    root = Path(root)
    _check_level(level)
    _check_fields(records, RBENCH_FIELDS[level], f"R-Bench {level}-level")
    _write_images(root / "images", images, {r["image"] for r in records})
    path = root / RBENCH_QUESTION_FILE[level]
    path.write_text(json.dumps(list(records), indent=1))
    for k, ids in enumerate(subsets, start=1):
        (root / RBENCH_SUBSET_FILE[level].format(k)).write_text(json.dumps([int(i) for i in ids]))
    return path


def read_rbench(root: str | Path, level: str) -> tuple[list[dict], list[list[int]]]:
    """Read an R-Bench question file and its evaluation subsets (those present, in order).

    Returns:
        ``(records, subsets)``; ``subsets`` is empty when no subset file exists.
    """
    root = Path(root)
    _check_level(level)
    path = root / RBENCH_QUESTION_FILE[level]
    if not path.exists():
        raise FileNotFoundError(f"no R-Bench {level}-level question file at {path}")
    records = json.loads(path.read_text())
    _check_fields(records, RBENCH_FIELDS[level], f"R-Bench ({path})")
    subsets = []
    k = 1
    while (root / RBENCH_SUBSET_FILE[level].format(k)).exists():
        subsets.append(json.loads((root / RBENCH_SUBSET_FILE[level].format(k)).read_text()))
        k += 1
    return records, subsets


def instance_question(record: dict, mode: str = "bounding box") -> str:
    """R-Bench's ``instance_qs_construct``: name the box colours after subject and object.

    Args:
        record: an instance-level record (``text``, ``subject``, ``object``).
        mode: ``"bounding box"`` or ``"mask"``.

    Returns:
        e.g. "Is the circle in red bounding box left of the square in green bounding box?"
    """
    text, subject, obj = record["text"], record["subject"].lower(), record["object"].lower()
    text = text.replace(subject, f"{subject} in red {mode}")
    return text.replace(obj, f"{obj} in green {mode}")


def draw_box(image: np.ndarray, record: dict, width: int | None = None) -> np.ndarray:
    """R-Bench's ``draw_box``: subject box in red, object box in green, over the image.

    Args:
        image: ``(H, W, 3)`` uint8.
        record: an instance-level record with normalised ``sub_box`` and ``obj_box``.
        width: outline width in pixels; by default R-Bench's 4 on photographs and 1 on
            images under 128 pixels (generated ones), where 4 would cover the objects.

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    h, w = image.shape[:2]
    if width is None:
        width = 4 if min(h, w) >= 128 else 1
    canvas = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(canvas)
    for key, colour in (("sub_box", "red"), ("obj_box", "green")):
        x1, y1, x2, y2 = (b * s for b, s in zip(record[key], (w, h, w, h)))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
    return np.asarray(canvas)


def rbench_examples(
    records: Sequence[dict], images: Images, level: str, box_width: int | None = None
) -> list[VQAExample]:
    """Yes/no examples; at the instance level the boxes are drawn and the question rewritten.

    Returns:
        Examples with candidates ``("Yes", "No")`` and ``meta``: ``benchmark``, ``level``,
        ``question_id``, ``qtype``, ``image``, ``record``.
    """
    _check_level(level)
    load = image_loader(images)
    examples = []
    for r in records:
        image, question = load(r["image"]), r["text"]
        if level == "instance":
            image, question = draw_box(image, r, box_width), instance_question(r)
        answer = "No" if "no" in str(r["label"]).lower() else "Yes"  # R-Bench's label rule
        meta = {"benchmark": "r-bench", "level": level, "question_id": r["question_id"],
                "qtype": r["qtype"], "image": r["image"], "record": r}
        examples.append(VQAExample(image, question, answer, ("Yes", "No"), meta))
    return examples


# ---------------------------------------------------------------- shared


def image_loader(images: Images) -> Callable[[str], np.ndarray]:
    """A function from an image name to an ``(H, W, 3)`` uint8 array.

    Args:
        images: a mapping (generated data), a callable, or a folder: names are looked up in the
            folder and in its ``images/`` subfolder.
    """
    if isinstance(images, Mapping):
        return lambda name: images[name]
    if callable(images):
        return images
    root = Path(images)

    def load(name: str) -> np.ndarray:
        for path in (root / name, root / "images" / name):
            if path.exists():
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB"))
        raise FileNotFoundError(f"image {name!r} is neither in {root} nor in {root / 'images'}")

    return load


def _write_images(folder: Path, images: Mapping[str, np.ndarray], names: set[str]) -> None:
    missing = names - set(images)
    if missing:
        raise KeyError(f"no image array for {sorted(missing)[:5]} ({len(missing)} missing)")
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(names):
        Image.fromarray(images[name]).save(folder / name)


def _check_fields(records: Sequence[dict], fields: Sequence[str], what: str) -> None:
    if not isinstance(records, list | tuple):
        raise ValueError(f"{what}: expected a JSON list of records, got {type(records).__name__}")
    for i, r in enumerate(records):
        missing = [f for f in fields if f not in r]
        if missing:
            raise ValueError(f"{what}: record {i} lacks fields {missing}")


def _check_level(level: str) -> None:
    if level not in RBENCH_FIELDS:
        raise ValueError(f"unknown R-Bench level {level!r}; known: {tuple(RBENCH_FIELDS)}")
