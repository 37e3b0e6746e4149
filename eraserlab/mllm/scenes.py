"""Procedural scenes: a description of coloured shapes, and a renderer that turns it into pixels.

The description (:class:`Scene`) is the ground truth every benchmark label is computed from; the
renderer only draws it. Tests check labels against the description, never against pixels, so a
rendering bug cannot hide a labelling bug.

Coordinates are fractions of the image side, origin top-left, ``y`` growing downwards (as in
images and in R-Bench's normalised boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

# Bright colours for objects, dark ones for backgrounds: an object never vanishes into its
# background whatever the draw. Red and green are kept out of the object palette because R-Bench
# marks the subject with a red box and the object with a green one.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "yellow": (245, 215, 40),
    "cyan": (60, 220, 230),
    "pink": (250, 140, 200),
    "orange": (250, 150, 20),
    "purple": (170, 100, 250),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "red": (140, 30, 30),
    "green": (30, 110, 40),
    "blue": (35, 50, 150),
    "brown": (110, 70, 30),
}
TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
# Main objects, then the small companion marks used as co-occurring objects.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond", "ring")
# In relation scenes each kind of object has its own colour, as real object categories have
# their own look: an 8-pixel shape alone is too little for a 32-pixel model to name reliably.
CATEGORY_COLOURS: dict[str, str] = dict(zip(SHAPES, OBJECT_COLOURS))
COMPANIONS: tuple[str, ...] = ("dot", "dash", "pole", "frame")

WORDS: tuple[str, ...] = (
    *OBJECT_COLOURS, *BACKGROUND_COLOURS, *TEXTURES, *SHAPES, *COMPANIONS,
)

_SUPERSAMPLE = 4  # draw at 4x and average down: anti-aliased edges keep small shapes legible


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene.

    Attributes:
        shape: a name from ``SHAPES`` or ``COMPANIONS``.
        colour: a name from ``OBJECT_COLOURS``.
        x: centre, fraction of the width (0 = left edge).
        y: centre, fraction of the height (0 = top edge).
        size: side of the object's bounding square, fraction of the image side.
    """

    shape: str
    colour: str
    x: float
    y: float
    size: float

    def box(self) -> list[float]:
        """The object's extent as a normalised ``[x1, y1, x2, y2]`` box (R-Bench's convention)."""
        h = self.size / 2
        return [self.x - h, self.y - h, self.x + h, self.y + h]


@dataclass(frozen=True)
class Scene:
    """A background and the objects drawn on it, in drawing order."""

    objects: tuple[SceneObject, ...]
    background: str = "black"
    texture: str = "plain"

    def with_object(self, index: int, **changes) -> "Scene":
        """A copy with ``objects[index]`` changed (e.g. ``shape="ring"``); used by corruptions."""
        objects = list(self.objects)
        objects[index] = replace(objects[index], **changes)
        return replace(self, objects=tuple(objects))


def render(scene: Scene, size: int = 32) -> np.ndarray:
    """Draw a scene.

    Args:
        scene: what to draw.
        size: side of the square image in pixels.

    Returns:
        ``(size, size, 3)`` uint8 RGB array.
    """
    big = size * _SUPERSAMPLE
    canvas = _background(scene.background, scene.texture, big)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_shape(draw, obj, big)
    pixels = np.asarray(image, dtype=np.float32)
    # (big, big, 3) -> (size, S, size, S, 3) -> mean over the S x S block
    pixels = pixels.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(pixels).astype(np.uint8)


def _background(colour: str, texture: str, side: int) -> np.ndarray:
    return _cached_background(colour, texture, side).copy()  # the caller draws on it


@lru_cache(maxsize=64)  # 5 colours x 4 textures: the mask arithmetic dominated rendering time
def _cached_background(colour: str, texture: str, side: int) -> np.ndarray:
    if colour not in BACKGROUND_COLOURS:
        raise ValueError(f"unknown background colour {colour!r}; known: {sorted(BACKGROUND_COLOURS)}")
    base = np.array(BACKGROUND_COLOURS[colour], dtype=np.float32)
    light = np.minimum(base + 70.0, 255.0)
    rows, cols = np.mgrid[0:side, 0:side] // _SUPERSAMPLE  # in final-image pixels
    if texture == "plain":
        mask = np.zeros((side, side), dtype=bool)
    elif texture == "stripes":
        mask = rows % 4 < 2
    elif texture == "dots":
        mask = (rows % 4 == 1) & (cols % 4 == 1)
    elif texture == "checks":
        mask = (rows // 4 + cols // 4) % 2 == 0
    else:
        raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")
    canvas = np.where(mask[..., None], light, base)
    return canvas.astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    if obj.colour not in OBJECT_COLOURS:
        raise ValueError(f"unknown object colour {obj.colour!r}; known: {sorted(OBJECT_COLOURS)}")
    fill = OBJECT_COLOURS[obj.colour]
    cx, cy, half = obj.x * side, obj.y * side, obj.size * side / 2
    x1, y1, x2, y2 = cx - half, cy - half, cx + half, cy + half
    thick = max(1.0, obj.size * side / 3)  # arm width of cross, wall of ring and frame
    if obj.shape == "circle":
        draw.ellipse([x1, y1, x2, y2], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([x1, y1, x2, y2], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=fill)
    elif obj.shape == "cross":
        draw.rectangle([cx - thick / 2, y1, cx + thick / 2, y2], fill=fill)
        draw.rectangle([x1, cy - thick / 2, x2, cy + thick / 2], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=fill)
    elif obj.shape == "ring":
        draw.ellipse([x1, y1, x2, y2], outline=fill, width=int(round(thick * 0.8)))
    elif obj.shape == "dot":
        draw.ellipse([x1, y1, x2, y2], fill=fill)
    elif obj.shape == "dash":
        draw.rectangle([x1, cy - half / 3, x2, cy + half / 3], fill=fill)
    elif obj.shape == "pole":
        draw.rectangle([cx - half / 3, y1, cx + half / 3, y2], fill=fill)
    elif obj.shape == "frame":
        draw.rectangle([x1, y1, x2, y2], outline=fill, width=int(round(half / 2)))
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; known: {SHAPES + COMPANIONS}")
