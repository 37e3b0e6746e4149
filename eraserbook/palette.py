"""One colour and one label per method, the same in every figure of the book.

Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), and for the
paper's rivals three of Paul Tol's muted colours (the Okabe–Ito eight are taken). Plain data,
no plotting import: notebooks pass ``palette=METHOD_COLORS`` and ``hue_order=METHOD_ORDER``
to seaborn.
"""

METHOD_LABELS = {
    "corrupted": "Corrupted",
    "retrain": "Retrain",
    "llmeraser": "LLMEraser",
    "llmeraser_gn": "LLMEraser, Gauss–Newton",
    "llmeraser_gn_steps": "LLMEraser, Gauss–Newton, k steps",
    "gradient_ascent": "Gradient ascent",
    "finetune": "Fine-tune on corrected",
    "sisa": "SISA",
    "receraser": "RecEraser",
    "apa": "APA",
    "e2urec": "E2URec",
    "cg": "CG",
    "lissa": "LiSSA",
    "datainf": "DataInf",
    "exact": "Exact",
    "official": "Official code",
}

_COLORS = {
    "corrupted": "#999999",  # grey: the starting point
    "retrain": "#009E73",  # green: the gold standard
    "llmeraser": "#0072B2",  # blue: the method
    "llmeraser_gn": "#56B4E9",  # sky blue: the method with Gauss–Newton curvature
    "llmeraser_gn_steps": "#117733",  # Tol's green: ... and re-linearised steps
    "gradient_ascent": "#D55E00",
    "finetune": "#E69F00",
    "sisa": "#CC79A7",
    "receraser": "#882255",  # wine: a sharded method, as SISA
    "apa": "#332288",  # indigo: sharded, merged in parameter space
    "e2urec": "#44AA99",  # teal: distillation
    "cg": "#88CCEE",  # Tol's cyan (sky blue is the Gauss–Newton erase's)
    "lissa": "#F0E442",
    "datainf": "#8C564B",
    "exact": "#000000",
    "official": "#D62728",
}

#: Order in legends and tables.
METHOD_ORDER = list(METHOD_LABELS)

#: Colour by method key and by display label, so either can be the hue column.
METHOD_COLORS = {**_COLORS, **{METHOD_LABELS[key]: color for key, color in _COLORS.items()}}
