"""An MM-SpuBench-like benchmark: which shape is the object, when something else predicts it too.

Each image shows one main object whose shape (the *core* attribute, one of four classes) is the
answer to a four-option question. Each image also belongs to one *spurious correlation type*; the
attribute of that type (background colour, object colour, background texture, a small companion
object, object size) takes the value associated with the answer in a share ``rho`` of the images
and another value otherwise. With ``rho = 0.9`` the spurious attribute is a shortcut that works on
nine images in ten; a conflict set (``rho = 0``) shows whether a model took it.

The records use MM-SpuBench's field names (see ``formats.py``). The four choices name the four
shapes in the same words and, by default, in the same order in every question, so the text of the
question carries no cue to the answer (the real benchmark's correct choice is often lexically
marked; a stand-in should not copy that leak).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from eraserlab.mllm.formats import mmspubench_examples
from eraserlab.mllm.scenes import COMPANIONS, Scene, SceneObject, render
from eraserlab.mllm.tasks import VQAExample, split_by_image

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
SIZES: dict[str, float] = {"small": 0.32, "medium": 0.42, "large": 0.52, "huge": 0.6}

# The attribute each spurious type controls, its four values, and value i is the one associated
# with CLASSES[i] (the shortcut). Names follow MM-SpuBench's nine types where one applies.
SPURIOUS_VALUES: dict[str, tuple[str, ...]] = {
    "Background": ("red", "green", "blue", "brown"),
    "Colorization": ("white", "yellow", "cyan", "pink"),
    "Texture and Noise": ("plain", "stripes", "dots", "checks"),
    "Co-occurring Objects": COMPANIONS,
    "Relative Size": tuple(SIZES),
}
SPURIOUS_TYPES: tuple[str, ...] = tuple(SPURIOUS_VALUES)
_ATTRIBUTE_NOUN = {
    "Background": "{} background",
    "Colorization": "{} colour",
    "Texture and Noise": "{} texture",
    "Co-occurring Objects": "nearby {}",
    "Relative Size": "{} size",
}
QUESTION = "What is the shape of the main object?"
WORDS: tuple[str, ...] = (
    *CLASSES, *LETTERS, *SIZES, "What", "is", "the", "shape", "of", "main", "object", "?", ".",
)


@dataclass(frozen=True)
class SpuriousItem:
    """One generated question with its image and the scene it was drawn from.

    Attributes:
        record: the question in MM-SpuBench's JSON fields.
        image: ``(H, W, 3)`` uint8 rendering of ``scene``.
        scene: the ground truth: ``scene.objects[0]`` is the main object.
        spurious_type: the type whose attribute may agree with the answer.
        aligned: whether the spurious attribute takes the value associated with the answer.
    """

    record: dict
    image: np.ndarray
    scene: Scene
    spurious_type: str
    aligned: bool


def spurious_value(scene: Scene, spurious_type: str) -> str:
    """The value a scene shows for one spurious type, read from the description.

    Args:
        scene: a scene made by :func:`generate_spurious` (main object first, companion second).
        spurious_type: one of ``SPURIOUS_TYPES``.

    Returns:
        The attribute's value, e.g. ``"blue"`` for ``"Background"``.
    """
    main, companion = scene.objects[0], scene.objects[1]
    if spurious_type == "Background":
        return scene.background
    if spurious_type == "Colorization":
        return main.colour
    if spurious_type == "Texture and Noise":
        return scene.texture
    if spurious_type == "Co-occurring Objects":
        return companion.shape
    if spurious_type == "Relative Size":
        return min(SIZES, key=lambda name: abs(SIZES[name] - main.size))
    raise ValueError(f"unknown spurious type {spurious_type!r}; known: {SPURIOUS_TYPES}")


def shortcut_answer(scene: Scene, spurious_type: str) -> str:
    """The class a model relying only on the spurious attribute would answer."""
    return CLASSES[SPURIOUS_VALUES[spurious_type].index(spurious_value(scene, spurious_type))]


def generate_spurious(
    n_images: int,
    seed: int | Sequence[int],
    rho: float = 0.9,
    types: tuple[str, ...] = SPURIOUS_TYPES,
    image_size: int = 32,
    shuffle_choices: bool = False,
    first_index: int = 0,
) -> list[SpuriousItem]:
    """Generate questions, one per image.

    Types are assigned in turn (balanced); the class and every attribute other than the spurious
    one are uniform, independently of each other.

    Args:
        n_images: number of images (and questions).
        seed: everything is a function of this seed (an int or a list of ints, numpy-style).
        rho: probability that the spurious attribute takes the value associated with the answer;
            0 gives a conflict set where it never does.
        types: spurious types to use.
        image_size: side of the images in pixels.
        shuffle_choices: permute the four choices per question. Off by default: with a fixed order
            the letter is a pure function of the shape, so a tiny model need not learn to bind
            letters to option texts.
        first_index: number of the first image (image names are ``f"{index:06d}.png"``).

    Returns:
        ``n_images`` items.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    unknown = set(types) - set(SPURIOUS_TYPES)
    if unknown:
        raise ValueError(f"unknown spurious types {sorted(unknown)}; known: {SPURIOUS_TYPES}")
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_images):
        spurious_type = types[i % len(types)]
        label = int(rng.integers(len(CLASSES)))
        aligned = bool(rng.random() < rho)
        values = SPURIOUS_VALUES[spurious_type]
        if aligned:
            value = values[label]
        else:
            others = [v for j, v in enumerate(values) if j != label]
            value = others[int(rng.integers(len(others)))]
        scene = _scene(rng, CLASSES[label], spurious_type, value)
        choices_order = rng.permutation(len(CLASSES)) if shuffle_choices else np.arange(len(CLASSES))
        choices = [f"{LETTERS[k]}. {CLASSES[c]}" for k, c in enumerate(choices_order)]
        answer = LETTERS[int(np.flatnonzero(choices_order == label)[0])]
        name = f"{first_index + i:06d}.png"
        record = {
            "core_attributes": [f"{CLASSES[label]} shape"],
            "spurious_attributes": [_ATTRIBUTE_NOUN[spurious_type].format(value)],
            "spurious_correlation_type": [spurious_type],
            "question": QUESTION,
            "choices": choices,
            "answer": answer,
            "image": name,
        }
        items.append(SpuriousItem(record, render(scene, image_size), scene, spurious_type, aligned))
    return items


def _scene(rng: np.random.Generator, shape: str, spurious_type: str, value: str) -> Scene:
    """Draw every attribute uniformly, then set the spurious one to ``value``."""

    def pick(options):
        return options[int(rng.integers(len(options)))]

    attributes = {t: pick(v) for t, v in SPURIOUS_VALUES.items()}
    attributes[spurious_type] = value
    size = SIZES[attributes["Relative Size"]]
    jitter = rng.uniform(-0.05, 0.05, size=2)
    main = SceneObject(shape, attributes["Colorization"], 0.5 + jitter[0], 0.42 + jitter[1], size)
    # The companion sits in a bottom corner, below the largest main object (y <= 0.77).
    corner_x = pick((0.14, 0.86))
    companion = SceneObject(attributes["Co-occurring Objects"], "white", corner_x, 0.88, 0.2)
    return Scene((main, companion), attributes["Background"], attributes["Texture and Noise"])


def spurious_examples(items: list[SpuriousItem]) -> list[VQAExample]:
    """Examples through MM-SpuBench's own path, plus the ground truth.

    ``meta`` gains ``scene``, ``aligned`` and ``group`` (``"<type>/aligned"`` or
    ``"<type>/conflicting"``, for worst-group accuracy).
    """
    images = {it.record["image"]: it.image for it in items}
    examples = mmspubench_examples([it.record for it in items], images)
    for e, it in zip(examples, items):
        kind = "aligned" if it.aligned else "conflicting"
        e.meta.update(scene=it.scene, aligned=it.aligned, group=f"{it.spurious_type}/{kind}")
    return examples


def spurious_task(
    seed: int,
    n_images: int = 1000,
    rho: float = 0.9,
    n_conflict: int = 500,
    types: tuple[str, ...] = SPURIOUS_TYPES,
    image_size: int = 32,
) -> dict[str, list[VQAExample]]:
    """The spurious-correlation benchmark ready for an experiment.

    Args:
        seed: the benchmark's seed (its streams are disjoint from pre-training's).
        n_images: the main pool, split 60/20/20 by image (train/val/test share ``rho``).
        rho: share of aligned images in the main pool.
        n_conflict: images of the conflict set (``rho = 0``: the shortcut is always wrong).
        types: spurious types.
        image_size: side of the images in pixels.

    Returns:
        ``{"train", "val", "test", "conflict"}`` lists of examples.
    """
    items = generate_spurious(n_images, [seed, 0], rho, types, image_size)
    task = split_by_image(spurious_examples(items), seed)
    conflict = generate_spurious(n_conflict, [seed, 1], 0.0, types, image_size, first_index=n_images)
    task["conflict"] = spurious_examples(conflict)
    return task
