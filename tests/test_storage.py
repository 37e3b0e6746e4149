"""eraserlib.storage: atomic writes that lose nothing, and the one strict-JSON policy."""

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from eraserlib.storage import dumps, write_atomically, write_json


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


def test_jsonable_turns_configs_and_diagnostics_into_strict_json():
    @dataclass
    class Settings:
        steps: int = 3

    value = {1: (1, 2), "set": {3, 1}, "tensor": torch.tensor([1.5]), "array": np.arange(2),
             "scalar": np.float32(0.5), "dtype": torch.float32, "nan": math.nan, "inf": -math.inf,
             "nan_array": np.array([1.0, np.nan]), "settings": Settings()}
    assert json.loads(dumps(value)) == {"1": [1, 2], "set": [1, 3], "tensor": [1.5], "array": [0, 1],
                                        "scalar": 0.5, "dtype": "torch.float32", "nan": None, "inf": None,
                                        "nan_array": [1.0, None], "settings": {"steps": 3}}


def test_written_json_is_standard_json(tmp_path):
    write_json(tmp_path / "r.json", {"x": math.nan})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and json.loads(text) == {"x": None}
