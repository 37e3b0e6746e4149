"""An R-Bench-like benchmark: yes/no questions about the spatial relation between two objects.

Every image shows three shapes, each in its category's colour (``scenes.CATEGORY_COLOURS``): a
subject, an object and a distractor. Each image gets two
questions about the same subject and object: a *Positive* one ("Is the circle left of the
square?", answer Yes) and a negative one, either *Opposite* (the opposite relation, No) or
*Random* (an object that is not in the image, No). Yes and No are balanced,
so chance is 50% and a yes-biased model shows a yes-ratio above 0.5 (relation hallucination).

Two families, as in R-Bench:

* **instance level** (the main family): the subject is framed by a red box and the object by a
  green box; the question names them "circle in red bounding box" (R-Bench's
  ``instance_qs_construct``). The boxes are stored in the record and drawn at example time,
  exactly as R-Bench's ``draw_box`` does. For Random questions the named object is absent and
  its green box frames an empty place (our choice: it keeps the question answerable from the
  image; a tiny model cannot check free-form names).
* **image level**: the same questions without boxes; the model must find the named shapes.

A relation holds along the dominant axis of the displacement (see :func:`relation_holds`); the
generator keeps the two axes far apart so no question is ambiguous. A *conflict* scene puts the
subject on the side of the image that suggests the opposite relation (a subject "left of" its
object but in the right half), which exposes models that read absolute position instead of the
relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from eraserlab.mllm.formats import rbench_examples
from eraserlab.mllm.scenes import CATEGORY_COLOURS, SHAPES, Scene, SceneObject, render
from eraserlab.mllm.tasks import VQAExample, split_by_image

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
QUESTION_TYPES: tuple[str, ...] = ("Positive", "Opposite", "Random")
LEVELS: tuple[str, ...] = ("instance", "image")
BACKGROUNDS: tuple[str, ...] = ("black", "brown")  # no red or green: the boxes use them
WORDS: tuple[str, ...] = ("Is", "the", "left", "right", "of", "above", "below", "?", "Yes", "No")

_LOW, _HIGH = 0.16, 0.84  # object centres stay here so boxes stay inside the image
_MIN_GAP = 0.3  # along the relation's axis
_MAX_OFF_AXIS = 0.12  # across it: keeps the dominant axis unambiguous
_BOX_MARGIN = 0.05
_SIZE_RANGE = (0.22, 0.28)  # object sides, fraction of the image
_GHOST_CLEARANCE = 0.28  # a ghost's box (half side <= 0.19) holds no object's centre  # boxes sit just outside the shape so the outline does not cover it


@dataclass(frozen=True)
class RelationItem:
    """One generated question with the scene it asks about.

    Attributes:
        record: the question in R-Bench's JSON fields for its level.
        scene: the ground truth (what is drawn).
        subject_index: index of the subject in ``scene.objects`` (framed red).
        target: what the question's object refers to (framed green): a drawn object, or for a
            Random question an absent *ghost* (a shape not in the scene, at an empty place).
        target_index: index of ``target`` in ``scene.objects``; None for a ghost.
        relation: the relation the question asks about.
        aligned: False for a conflict scene (subject on the side suggesting the opposite relation).
    """

    record: dict
    scene: Scene
    subject_index: int
    target: SceneObject
    target_index: int | None
    relation: str
    aligned: bool


def relation_holds(subject: SceneObject, obj: SceneObject, relation: str) -> bool:
    """Whether ``subject`` is ``relation`` ``obj``, along the dominant axis of their displacement.

    Args:
        subject: the first object.
        obj: the second object.
        relation: one of ``RELATIONS``.

    Returns:
        True if the relation holds.
    """
    dx, dy = subject.x - obj.x, subject.y - obj.y
    horizontal = abs(dx) >= abs(dy)
    if relation == "left of":
        return horizontal and dx < 0
    if relation == "right of":
        return horizontal and dx > 0
    if relation == "above":
        return not horizontal and dy < 0  # y grows downwards
    if relation == "below":
        return not horizontal and dy > 0
    raise ValueError(f"unknown relation {relation!r}; known: {RELATIONS}")


def position_agrees(subject: SceneObject, relation: str) -> bool:
    """Whether the subject's absolute position suggests ``relation`` (left half for "left of")."""
    if relation == "left of":
        return subject.x < 0.5
    if relation == "right of":
        return subject.x > 0.5
    if relation == "above":
        return subject.y < 0.5
    if relation == "below":
        return subject.y > 0.5
    raise ValueError(f"unknown relation {relation!r}; known: {RELATIONS}")


def question_text(subject: str, relation: str, obj: str) -> str:
    """The plain question, as in R-Bench's ``text`` field."""
    return f"Is the {subject} {relation} the {obj}?"


def generate_relations(
    n_images: int,
    seed: int | Sequence[int],
    level: str = "instance",
    conflict: bool = False,
    p_opposite: float = 0.7,
    image_size: int = 32,
    first_image: int = 0,
    first_question: int = 0,
) -> tuple[list[RelationItem], dict[str, np.ndarray]]:
    """Generate two questions per image.

    Args:
        n_images: number of images; there are ``2 * n_images`` questions.
        seed: everything is a function of this seed (an int or a list of ints, numpy-style).
        level: ``"instance"`` (records with boxes) or ``"image"``.
        conflict: place every subject on the side of the image suggesting the opposite relation.
        p_opposite: probability that an image's negative question is Opposite rather than Random.
            0.7 gives question types close to 50% / 35% / 15% (R-Bench has more Positives).
        image_size: side of the images in pixels.
        first_image: number of the first image (names are ``f"{number:06d}.png"``).
        first_question: ``question_id`` of the first question.

    Returns:
        The items and the images by file name. Images carry no boxes: R-Bench draws them at
        inference time (``formats.rbench_examples``).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; known: {LEVELS}")
    rng = np.random.default_rng(seed)
    items, images = [], {}
    question_id = first_question
    for i in range(n_images):
        relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
        scene = _scene(rng, relation, conflict)
        name = f"{first_image + i:06d}.png"
        images[name] = render(scene, image_size)
        subject, obj = scene.objects[0], scene.objects[1]
        aligned = position_agrees(subject, relation)
        ghost = _ghost(rng, scene) if rng.random() >= p_opposite else None
        for qtype in ("Positive", "Random" if ghost else "Opposite"):
            target, target_index, asked = obj, 1, relation
            if qtype == "Opposite":
                asked = OPPOSITE[relation]
            elif qtype == "Random":
                target, target_index = ghost, None
                asked = next(r for r in RELATIONS if relation_holds(subject, ghost, r))
            record = {
                "question_id": question_id,
                "qtype": qtype,
                "image": name,
                "text": question_text(subject.shape, asked, target.shape),
                "label": "Yes" if qtype == "Positive" else "No",
            }
            if level == "instance":
                record.update(subject=subject.shape, object=target.shape,
                              sub_box=object_box(subject), obj_box=object_box(target))
            items.append(RelationItem(record, scene, 0, target, target_index, asked, aligned))
            question_id += 1
    return items, images


def _ghost(rng: np.random.Generator, scene: Scene) -> SceneObject | None:
    """An absent shape at an empty place (its green box frames background), or None if the
    scene has no room for one (the image then gets an Opposite question instead)."""
    present = {o.shape for o in scene.objects}
    absent = [s for s in SHAPES if s not in present]
    shape = absent[int(rng.integers(len(absent)))]
    for _ in range(100):
        x, y = rng.uniform(_LOW, _HIGH, size=2)
        if all(max(abs(x - o.x), abs(y - o.y)) > _GHOST_CLEARANCE for o in scene.objects):
            size = float(rng.uniform(*_SIZE_RANGE))
            return SceneObject(shape, CATEGORY_COLOURS[shape], float(x), float(y), size)
    return None


def rbench_subsets(
    question_ids: list[int], seed: int, n_subsets: int = 5, fraction: float = 0.5
) -> list[list[int]]:
    """Five random evaluation subsets, like R-Bench's ``*_ids_{1..5}.json``.

    Args:
        question_ids: the pool (e.g. the test split's questions).
        seed: sampling seed.
        n_subsets: number of subsets.
        fraction: share of the pool in each subset, drawn without replacement.

    Returns:
        ``n_subsets`` sorted lists of question ids.
    """
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(question_ids))
    size = max(1, int(round(fraction * len(ids))))
    return [sorted(int(q) for q in rng.choice(ids, size=size, replace=False)) for _ in range(n_subsets)]


def object_box(obj: SceneObject) -> list[float]:
    """The normalised ``[x1, y1, x2, y2]`` box R-Bench records for an object: its extent plus a
    margin, so that the box outline does not cover the shape."""
    x1, y1, x2, y2 = obj.box()
    m = _BOX_MARGIN
    return [round(max(0.0, x1 - m), 4), round(max(0.0, y1 - m), 4),
            round(min(1.0, x2 + m), 4), round(min(1.0, y2 + m), 4)]


def _scene(rng: np.random.Generator, relation: str, conflict: bool) -> Scene:
    """Subject, object and a distractor with distinct shapes; the subject-object pair satisfies
    ``relation`` with a clear margin, and the distractor overlaps neither."""
    names = [SHAPES[k] for k in rng.permutation(len(SHAPES))[:3]]
    sub_along, obj_along = _along_axis(rng, relation, conflict)
    across = rng.uniform(_LOW, _HIGH)
    sub_across = across
    obj_across = float(np.clip(across + rng.uniform(-_MAX_OFF_AXIS, _MAX_OFF_AXIS), _LOW, _HIGH))
    if relation in ("left of", "right of"):
        sub_xy, obj_xy = (sub_along, sub_across), (obj_along, obj_across)
    else:
        sub_xy, obj_xy = (sub_across, sub_along), (obj_across, obj_along)
    sizes = rng.uniform(*_SIZE_RANGE, size=3)
    subject = SceneObject(names[0], CATEGORY_COLOURS[names[0]], *sub_xy, sizes[0])
    obj = SceneObject(names[1], CATEGORY_COLOURS[names[1]], *obj_xy, sizes[1])
    while True:  # rejection: the distractor must stay clear of both
        x, y = rng.uniform(_LOW, _HIGH, size=2)
        if all(max(abs(x - o.x), abs(y - o.y)) > 0.3 for o in (subject, obj)):
            break
    distractor = SceneObject(names[2], CATEGORY_COLOURS[names[2]], x, y, sizes[2])
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return Scene((subject, obj, distractor), background, "plain")


def _along_axis(rng: np.random.Generator, relation: str, conflict: bool) -> tuple[float, float]:
    """Coordinates of subject and object along the relation's axis, subject first."""
    before = relation in ("left of", "above")  # subject has the smaller coordinate
    while True:
        a, b = rng.uniform(_LOW, _HIGH, size=2)
        low, high = min(a, b), max(a, b)
        if high - low < _MIN_GAP:
            continue
        sub, obj = (low, high) if before else (high, low)
        # Conflict: the subject sits on the far side of the centre from its relation.
        if conflict and (sub < 0.5) == before:
            continue
        return float(sub), float(obj)


def relation_examples(
    items: list[RelationItem], images: dict[str, np.ndarray], level: str = "instance"
) -> list[VQAExample]:
    """Examples through R-Bench's own path (boxes drawn, question rewritten), plus ground truth.

    ``meta`` gains ``scene``, ``aligned``, ``relation``, ``subject_index``, ``target`` and
    ``target_index`` so corruptions can re-render the scene and tests can check the labels.
    """
    examples = rbench_examples([it.record for it in items], images, level)
    for e, it in zip(examples, items):
        e.meta.update(scene=it.scene, aligned=it.aligned, relation=it.relation,
                      subject_index=it.subject_index, target=it.target,
                      target_index=it.target_index)
    return examples


def relation_task(
    seed: int,
    n_images: int = 500,
    level: str = "instance",
    n_conflict_images: int = 200,
    p_opposite: float = 0.7,
    image_size: int = 32,
) -> dict[str, list[VQAExample]]:
    """The relation benchmark ready for an experiment: 60/20/20 by image plus a conflict set.

    Args:
        seed: the benchmark's seed (its streams are disjoint from pre-training's).
        n_images: images of the main pool (two questions each).
        level: ``"instance"`` (boxes; the main family) or ``"image"``.
        n_conflict_images: images of the conflict set (subject on the misleading side).
        p_opposite: share of negative questions that are Opposite rather than Random.
        image_size: side of the images in pixels.

    Returns:
        ``{"train", "val", "test", "conflict"}`` lists of examples.
    """
    items, images = generate_relations(n_images, [seed, 2], level, False, p_opposite, image_size)
    task = split_by_image(relation_examples(items, images, level), seed)
    items, images = generate_relations(
        n_conflict_images, [seed, 3], level, True, p_opposite, image_size,
        first_image=n_images, first_question=2 * n_images,
    )
    task["conflict"] = relation_examples(items, images, level)
    return task
