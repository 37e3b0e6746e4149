"""How fast a request's examples are found in the training data by value (eraserlib.matching), up to 10⁶ examples.

Builds :class:`eraserlib.matching.ExampleIndex` (one SHA-256 per example: the pass every erase
makes) and looks up 100 request examples, for three forms of training data:

* ``token_rows``: dicts of ``input_ids`` and ``labels``, lists of 32 ints (a tokenised dataset as lists);
* ``tensors``: int64 tensors of 32 tokens;
* ``hf_dataset``: the token rows as a Hugging Face ``datasets.Dataset`` (read in Arrow slices).

Figures are wall-clock seconds on a shared machine (the load average is recorded with them).

    python -m benchmarks.matching_speed [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import reporting
from eraserlib.matching import ExampleIndex

SIZES: dict[str, dict[str, Any]] = {"tiny": {"n": [2_000]}, "default": {"n": [10_000, 100_000, 1_000_000]}}
TOKENS, LOOKUPS = 32, 100


def _data(form: str, n: int) -> Any:
    if form == "tensors":
        return [torch.arange(i, i + TOKENS) for i in range(n)]
    rows = [{"input_ids": list(range(i, i + TOKENS)), "labels": list(range(i, i + TOKENS))} for i in range(n)]
    if form == "hf_dataset":
        import datasets

        datasets.disable_progress_bars()
        return datasets.Dataset.from_list(rows)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("matching_speed", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    rows = []
    for n in SIZES[arguments.size]["n"]:
        for form in ("token_rows", "tensors", "hf_dataset"):
            data = _data(form, n)
            start = time.perf_counter()
            index = ExampleIndex(data)
            build = time.perf_counter() - start
            wanted = [data[(i * 7919) % n] for i in range(min(LOOKUPS, n))]
            start = time.perf_counter()
            index.locate(wanted, "example")
            rows.append({"form": form, "n": n, "index_seconds": build, "microseconds_per_example": 1e6 * build / n,
                         "lookup_seconds": time.perf_counter() - start, "lookups": len(wanted),
                         "load_1min": reporting.load_average()[0]})
            del data, index
    print(reporting.format_table(rows, ["form", "n", "index_seconds", "microseconds_per_example", "lookup_seconds"]))
    record = {"settings": {"sizes": SIZES[arguments.size], "tokens": TOKENS}, "results": rows}
    reporting.write_record(arguments, record, started, machine)
    return record


if __name__ == "__main__":
    main()
