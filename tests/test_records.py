"""Experiment records: atomic writes that lose nothing, JSON-safe values."""

import json
import os

import numpy as np
import pytest
import torch

from eraserlib.records import jsonable, machine_load, write_atomically


def test_write_atomically_replaces_text_and_bytes_and_leaves_no_scratch(tmp_path):
    target = tmp_path / "sub" / "record.json"
    write_atomically(target, "first")
    write_atomically(target, "second")
    assert target.read_text() == "second"
    write_atomically(tmp_path / "table.pt", b"\x00\x01")
    assert (tmp_path / "table.pt").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temporary file left
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o600)  # readable by others, as a plain open() would


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "record.json"
    write_atomically(target, "kept")
    with pytest.raises(TypeError):
        write_atomically(target, 42)  # neither text nor bytes
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_jsonable_turns_configs_and_diagnostics_into_json():
    value = {1: (1, 2), "set": {3, 1}, "tensor": torch.tensor([1.5]), "array": np.arange(2),
             "scalar": np.float32(0.5), "dtype": torch.float32}
    assert json.loads(json.dumps(jsonable(value))) == {"1": [1, 2], "set": [1, 3], "tensor": [1.5], "array": [0, 1],
                                                       "scalar": 0.5, "dtype": "torch.float32"}
    assert machine_load() >= 0 or np.isnan(machine_load())


def test_cache_lock_makes_a_second_process_wait(tmp_path):
    import subprocess
    import sys
    import time

    from eraserlib.records import cache_lock

    entry = tmp_path / "base-abc"
    script = ("import sys, time\nfrom eraserlib.records import cache_lock\n"
              f"with cache_lock({str(entry)!r}):\n    print('got', flush=True)\n")
    with cache_lock(entry):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the lock
    out, _ = child.communicate(timeout=60)
    assert out.strip() == "got" and child.returncode == 0
