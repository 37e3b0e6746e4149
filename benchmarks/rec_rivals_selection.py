"""Choose RecEraser's, APA's and E2URec's settings on the validation split (never the test split).

One request (MovieLens RC 10%, request and run seed 0, ``eval_split="val"``: every metric on the
task users' validation examples), three candidate runs. The methods' settings are independent of
each other, so run i sets candidate i of every method's one searched setting at once:

* APA's temperature τ and RecEraser's aggregator learning rate: the largest validation HR@1 (the
  methods are exact by construction; their papers choose these for utility);
* E2URec's weight w of the remembering terms: the smallest validation residual r, the mean of
  ``r/jsd_test`` and ``r/jsd_corrected`` (it trades forgetting against utility, and r measures
  both against retraining).

The K retrains are shared by the three runs (:class:`eraserlab.protocol.RetrainPool`). At
``--size default`` the choice and the evidence are written to :mod:`eraserlab.rec.rival_settings`
(which the "small" preset reads) and to ``benchmarks/results/rec_rivals_selection-default.json``;
``--size tiny`` only writes its record.

    python -m benchmarks.rec_rivals_selection [--size tiny|default] [--cache-dir DIR]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from benchmarks import reporting

CANDIDATES = {"apa_temperature": [0.03, 0.1, 0.3], "receraser_lr": [5e-4, 2e-3, 8e-3],
              "e2urec_weight": [0.3, 0.5, 0.8]}
RULES = {"apa_temperature": ("apa", "max validation hit_ratio_at_1, then min validation loss"),
         "receraser_lr": ("receraser", "max validation hit_ratio_at_1, then min validation loss"),
         "e2urec_weight": ("e2urec", "min validation mean(r/jsd_test, r/jsd_corrected), then min validation loss")}
COLUMNS = ("hit_ratio_at_1", "valid_ratio", "test_loss", "r/jsd_test", "r/jsd_corrected", "r/forget_loss", "time_s")
SETTINGS_MODULE = Path(__file__).resolve().parents[1] / "eraserlab" / "rec" / "rival_settings.py"
TASK = {"dataset": "movielens", "task": "rc", "ratio": 0.1}


def score(setting: str, row: dict[str, Any]) -> tuple[float, float]:
    """What the rule of ``setting`` maximises (ties: the lower validation loss)."""
    if setting == "e2urec_weight":
        return -(row["r/jsd_test"] + row["r/jsd_corrected"]) / 2, -row["test_loss"]
    return row["hit_ratio_at_1"], -row["test_loss"]


def select(size: str, seed: int, cache_dir: str | None) -> dict[str, Any]:
    from eraserlab.protocol import RetrainPool
    from eraserlab.rec.experiment import PRESETS, run_experiment

    preset = "small" if size == "default" else "tiny"
    base = PRESETS[preset]
    pool = RetrainPool([seed])
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in CANDIDATES}
    for i in range(len(next(iter(CANDIDATES.values())))):
        values = {name: candidates[i] for name, candidates in CANDIDATES.items()}
        config = dataclasses.replace(base, settings=dataclasses.replace(base.settings, **values))
        start = time.perf_counter()
        frame = run_experiment(TASK["dataset"], TASK["task"], ratio=TASK["ratio"], seed=seed, model_size=preset,
                               config=config, methods=["retrain", "receraser", "apa", "e2urec"], cache_dir=cache_dir,
                               progress=False, retrain_pool=pool, eval_split="val").set_index("method")
        for name, value in values.items():
            row = frame.loc[RULES[name][0]]
            measured[name].append({"value": value, **{c: float(row[c]) for c in COLUMNS}})
        print(f"  candidate {i} {values}: {time.perf_counter() - start:.0f} s", flush=True)
    chosen = {name: max(rows, key=lambda r, name=name: score(name, r))["value"] for name, rows in measured.items()}
    selection = {name: {"method": RULES[name][0], "rule": RULES[name][1], "chosen": chosen[name],
                        "request": {**TASK, "seed": seed, "eval_split": "val", "preset": preset},
                        "candidates": measured[name],
                        "record": "benchmarks/results/rec_rivals_selection-default.json"}
                 for name in CANDIDATES}
    return {"chosen": chosen, "selection": selection}


def write_settings_module(chosen: dict[str, Any], selection: dict[str, Any]) -> None:
    """Rewrite :mod:`eraserlab.rec.rival_settings` with the choice and its evidence."""
    reporting.rewrite_assignment(SETTINGS_MODULE, "RIVALS_SMALL", {"settings": chosen, "selection": selection})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = reporting.parser("rec_rivals_selection", __doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="where the rec arm caches its pre-trained bases")
    arguments = parser.parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    result = select(arguments.size, arguments.seed, arguments.cache_dir)
    path = reporting.write_record(arguments, result, started, machine)
    if arguments.size == "default":
        write_settings_module(result["chosen"], result["selection"])
    for name, entry in result["selection"].items():
        print(f"{name} ({entry['rule']}): chose {entry['chosen']}")
        print(reporting.format_table(entry["candidates"], ["value", *COLUMNS]))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
