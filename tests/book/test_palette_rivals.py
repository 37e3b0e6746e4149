"""Every registered method has one label and one colour in the book's palette, all distinct."""

from eraserbook.palette import METHOD_COLORS, METHOD_LABELS, METHOD_ORDER
from eraserlab.protocol import method_names


def test_every_registered_method_has_a_distinct_label_and_colour():
    for name in method_names():
        assert name in METHOD_LABELS and name in METHOD_COLORS and METHOD_LABELS[name] in METHOD_COLORS
    colours = [METHOD_COLORS[name] for name in METHOD_ORDER]
    assert len(set(colours)) == len(colours) and len(set(METHOD_LABELS.values())) == len(METHOD_LABELS)
