"""What one experiment is about: the data as trained on, the request, and what retraining sees.

Each arm builds a :class:`Scenario` from its own data (:func:`eraserlab.rec.scenarios.build_scenario`,
the multimodal arm's corruptions); the protocol's methods, retrains and comparisons only ever
read these fields, so they are the same for both arms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection

Request = InstanceRemoval | QueryModification | ResponseCorrection

#: The request kinds (``request.kind``), in the order the book names them.
KINDS = (InstanceRemoval.kind, QueryModification.kind, ResponseCorrection.kind)


@dataclass(frozen=True)
class Scenario:
    """The data and the request of one experiment.

    Attributes:
        train: What the adapter is trained on (Corrupted; for QM/RC the corrupted versions in
            place, for IR the full set). ``erase`` gets exactly this list.
        request: The :mod:`eraserlib` request that turns ``train`` into ``retrain_data``.
        retrain_data: The data the request leaves: what every retrain trains on.
        forget: The request's examples as trained on (QM/RC: the old versions; IR: the removed
            examples): the forget set, whose losses the comparison bootstraps.
        corrected: Their new versions (QM/RC); for IR the removed examples again (nothing
            replaces them).
        test: The evaluation examples.
        extra: Further evaluation splits of the arm (name → examples, e.g. a conflict set).
        notes: Sentences describing the data for a reader.
    """

    train: Sequence[Any]
    request: Request
    retrain_data: Sequence[Any]
    forget: Sequence[Any]
    corrected: Sequence[Any]
    test: Sequence[Any]
    extra: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("train", "retrain_data", "forget", "corrected", "test"):
            if len(getattr(self, name)) == 0:
                raise ValueError(f"The scenario's {name} is empty: every method and comparison needs it.")
        if len(self.forget) != len(self.corrected):
            raise ValueError(f"forget ({len(self.forget)}) and corrected ({len(self.corrected)}) must pair up "
                             "example by example (for IR both are the removed examples).")

    @property
    def kind(self) -> str:
        """``"instance_removal"``, ``"query_modification"`` or ``"response_correction"``."""
        return self.request.kind

    def sizes(self) -> dict[str, int]:
        """``n_train``, ``n_request``, ``n_test``: the frame's size columns."""
        return {"n_train": len(self.train), "n_request": len(self.request), "n_test": len(self.test)}
