"""The one record writer of both arms: the tidy frame, its comparison table, and a strict-JSON record.

For a run named ``stem`` in ``results_dir``:

* ``<stem>.csv``: the tidy frame, one row per method;
* ``<stem>-comparison.csv``: :func:`~eraserlab.protocol.compare.comparison_table` of it, one row
  per method × distance (what the book plots);
* ``<stem>.json``: ``rows`` (the frame), ``comparison`` (the table) and the arm's and the
  methods' record entries, strict JSON (NaN → null, :func:`eraserlib.storage.write_json`).

Every file is written atomically (a reader sees the old file or the new one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from eraserlib.storage import write_atomically, write_json
from eraserlab.protocol.compare import comparison_table


def cost_share(frame: pd.DataFrame) -> pd.Series:
    """Each row's wall-clock over its seed's Retrain (the protocol's cost column: 1 is one retraining)."""
    retrain = frame[frame.method == "retrain"].set_index("seed")["time_s"]
    return frame["time_s"] / frame["seed"].map(retrain)


def write_run(results_dir: str | os.PathLike, stem: str, frame: pd.DataFrame, record: Mapping[str, Any]) -> None:
    """Write the run's frame, comparison table and record (see the module docstring)."""
    results_dir = Path(results_dir)
    table = comparison_table(frame)
    write_atomically(results_dir / f"{stem}.csv", frame.to_csv(index=False))
    write_atomically(results_dir / f"{stem}-comparison.csv", table.to_csv(index=False))
    write_json(results_dir / f"{stem}.json", {"rows": frame.to_dict(orient="records"),
                                              "comparison": table.to_dict(orient="records"), **record})
