"""Corrupted training sets and the requests that undo them.

Each function picks a share of the training examples, makes corrupted copies, and returns the
training set as the corrupted adapter sees it together with the pairs an unlearning request
needs: ``old`` (the corrupted examples, the very objects in the corrupted training list) and
``new`` (their clean versions, the very objects of the clean list). So

* Corrupted trains on ``corruption.train``;
* Retrain trains on the clean list;
* LLMEraser gets ``ResponseCorrection(corruption.old, corruption.new)`` or
  ``QueryModification(corruption.old, corruption.new)``.

Response correction flips answers (the paper flips 40%). Query modification corrupts images
(noise, occlusion, a swapped object) or alters questions, keeping the answer, which is then wrong
or unsupported for what the model is shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from eraserlab.mllm import formats, relations, spurious
from eraserlab.mllm.scenes import render
from eraserlab.mllm.tasks import VQAExample

QUERY_CORRUPTIONS: tuple[str, ...] = ("noise", "occlusion", "swap", "question")


@dataclass
class Corruption:
    """A corrupted training set and the request that would restore it.

    Attributes:
        train: the training list with ``old[j]`` at position ``indices[j]``.
        old: the corrupted examples (objects shared with ``train``).
        new: their clean versions (the original objects).
        indices: positions in the training list, increasing.
        kind: ``"flip"`` or one of ``QUERY_CORRUPTIONS``.
    """

    train: list[VQAExample]
    old: list[VQAExample]
    new: list[VQAExample]
    indices: list[int]
    kind: str


def flip_answers(train: Sequence[VQAExample], share: float = 0.4, seed: int = 0) -> Corruption:
    """Replace the answer of a share of the examples by another candidate, chosen uniformly.

    For yes/no questions the flip is the other answer; for four options it is one of the three
    wrong letters.

    Args:
        train: clean training examples.
        share: fraction flipped (rounded to a whole number of examples).
        seed: which examples and which wrong answers.
    """
    rng = np.random.default_rng([seed, 10])
    indices = _choose(len(train), share, rng)
    old = []
    for i in indices:
        e = train[i]
        wrong = [c for c in e.candidates if c != e.answer]
        if not wrong:
            raise ValueError(f"example {i} has no wrong candidate to flip to: {e.candidates}")
        old.append(e.replaced(answer=wrong[int(rng.integers(len(wrong)))],
                              meta={"corruption": "flip", "clean_answer": e.answer}))
    return _assemble(train, indices, old, "flip")


def corrupt_queries(
    train: Sequence[VQAExample], share: float = 0.4, seed: int = 0, kind: str = "swap"
) -> Corruption:
    """Corrupt the query (image or question) of a share of the examples; answers are kept.

    Kinds:
        ``noise``: strong Gaussian pixel noise (σ = 80 on 0..255).
        ``occlusion``: a grey square over the main object (MM-SpuBench) or the subject (R-Bench).
        ``swap``: the scene redrawn with another main shape (MM-SpuBench), or with subject and
            object exchanging places, boxes following them (R-Bench; the relation reverses, so a
            Positive or Opposite answer becomes wrong; a Random one stays right, its object
            being absent). Needs the scene of generated data.
        ``question``: the choices permuted so each letter names another shape (MM-SpuBench), or
            the relation replaced by its opposite (R-Bench).

    Args:
        train: clean training examples.
        share: fraction corrupted.
        seed: which examples, and the noise.
        kind: one of ``QUERY_CORRUPTIONS``.
    """
    if kind not in QUERY_CORRUPTIONS:
        raise ValueError(f"unknown query corruption {kind!r}; known: {QUERY_CORRUPTIONS}")
    rng = np.random.default_rng([seed, 11])
    indices = _choose(len(train), share, rng)
    corrupt = {"noise": _noise, "occlusion": _occlusion, "swap": _swap, "question": _question}[kind]
    old = [corrupt(train[i], rng).replaced(meta={"corruption": kind}) for i in indices]
    return _assemble(train, indices, old, kind)


def _choose(n: int, share: float, rng: np.random.Generator) -> list[int]:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return sorted(int(i) for i in rng.choice(n, size=int(round(share * n)), replace=False))


def _assemble(train, indices, old, kind) -> Corruption:
    corrupted = list(train)
    for i, e in zip(indices, old):
        corrupted[i] = e
    return Corruption(corrupted, old, [train[i] for i in indices], list(indices), kind)


def _noise(e: VQAExample, rng: np.random.Generator) -> VQAExample:
    noisy = e.image.astype(np.float32) + rng.normal(0.0, 80.0, size=e.image.shape)
    return e.replaced(image=np.clip(noisy, 0, 255).round().astype(np.uint8))


def _occlusion(e: VQAExample, rng: np.random.Generator) -> VQAExample:
    h, w = e.image.shape[:2]
    if e.meta.get("benchmark") == "r-bench" and "sub_box" in e.meta["record"]:
        x1, y1, x2, y2 = e.meta["record"]["sub_box"]
    elif "scene" in e.meta:
        x1, y1, x2, y2 = e.meta["scene"].objects[0].box()
    else:  # real MM-SpuBench image: the object is usually central
        x1, y1, x2, y2 = 0.25, 0.25, 0.75, 0.75
    image = e.image.copy()
    rows = slice(max(0, int(np.floor(y1 * h))), int(np.ceil(y2 * h)))
    cols = slice(max(0, int(np.floor(x1 * w))), int(np.ceil(x2 * w)))
    image[rows, cols] = 128
    return e.replaced(image=image)


def _swap(e: VQAExample, rng: np.random.Generator) -> VQAExample:
    scene = e.meta.get("scene")
    if scene is None:
        raise ValueError("the 'swap' corruption re-renders the scene; this example has none "
                         "(real data): use 'noise', 'occlusion' or 'question'")
    size = e.image.shape[0]
    if e.meta["benchmark"] == "mm-spubench":
        main = scene.objects[0]
        others = [c for c in spurious.CLASSES if c != main.shape]
        new_scene = scene.with_object(0, shape=others[int(rng.integers(len(others)))])
        return e.replaced(image=render(new_scene, size), meta={"scene": new_scene})
    # Subject and target exchange places (a Random question's target is an undrawn ghost).
    s, target, t = e.meta["subject_index"], e.meta["target"], e.meta["target_index"]
    subject = scene.objects[s]
    new_scene = scene.with_object(s, x=target.x, y=target.y)
    if t is not None:
        new_scene = new_scene.with_object(t, x=subject.x, y=subject.y)
    new_target = dataclasses.replace(target, x=subject.x, y=subject.y)
    image = render(new_scene, size)
    record = dict(e.meta["record"])
    if e.meta["level"] == "instance":
        record["sub_box"] = relations.object_box(new_scene.objects[s])
        record["obj_box"] = relations.object_box(new_target)
        image = formats.draw_box(image, record)
    return e.replaced(image=image, meta={"scene": new_scene, "target": new_target, "record": record})


def _question(e: VQAExample, rng: np.random.Generator) -> VQAExample:
    if e.meta["benchmark"] == "mm-spubench":
        record = e.meta["record"]
        texts = [c.partition(".")[2].strip() for c in record["choices"]]
        # A cyclic shift is a derangement: every letter now names another shape.
        shift = int(rng.integers(1, len(texts)))
        shifted = texts[shift:] + texts[:shift]
        choices = [f"{letter}. {t}" for letter, t in zip(e.candidates, shifted)]
        return e.replaced(question=e.question.replace("\n".join(record["choices"]), "\n".join(choices)))
    relation = e.meta.get("relation") or next(
        r for r in relations.RELATIONS if f" {r} " in e.question)
    return e.replaced(question=e.question.replace(f" {relation} ", f" {relations.OPPOSITE[relation]} ", 1))
