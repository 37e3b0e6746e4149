"""The renderer draws what the description says, deterministically."""

import numpy as np
import pytest

from eraserlab.mllm.scenes import COMPANIONS, SHAPES, Scene, SceneObject, render


def _scene(shape="circle", background="black", texture="plain"):
    return Scene((SceneObject(shape, "white", 0.5, 0.5, 0.5),), background, texture)


def test_render_shape_dtype_and_determinism():
    image = render(_scene(), size=32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, render(_scene(), size=32))


def test_object_is_drawn_where_the_description_puts_it():
    image = render(_scene("square"), size=32).astype(int)
    assert image[16, 16].min() > 200  # inside the white square
    assert image[2, 2].max() < 40  # black background in the corner


@pytest.mark.parametrize("shape", SHAPES + COMPANIONS)
def test_every_shape_draws_something(shape):
    assert (render(_scene(shape), 32) != render(Scene((), "black"), 32)).any()


def test_shapes_differ_from_each_other():
    images = {s: render(_scene(s), 32) for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (images[a] != images[b]).any(), (a, b)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown shape"):
        render(_scene("hexagon"))
    with pytest.raises(ValueError, match="unknown background"):
        render(_scene(background="mauve"))
    with pytest.raises(ValueError, match="unknown texture"):
        render(_scene(texture="plaid"))


def test_box_is_centre_plus_minus_half_size():
    assert SceneObject("circle", "white", 0.5, 0.25, 0.2).box() == pytest.approx([0.4, 0.15, 0.6, 0.35])
