"""Finding a request's examples in the training data, by value.

Two examples are *the same* when their canonical forms are equal:

* tensors and numpy arrays: same dtype, same shape, same bytes (so a float32 tensor never
  matches its float64 copy, and a re-tokenised near-copy with one token changed is another
  example);
* dicts (keys in sorted order), lists and tuples (in order, a list never equal to a tuple),
  dataclasses (their class name and fields): element by element;
* strings, bytes, numbers, booleans and None: type and value;
* anything else: its type and ``repr``.

Each example is reduced to a SHA-256 of that canonical form, so looking up k request examples
among n training examples costs one pass of hashing over the n (about a second per 10⁵ small
examples) and a dictionary look-up each.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from eraserlib.errors import InvalidRequestError


def feed(digest: "hashlib._Hash", value: Any) -> None:
    """Feed the canonical byte form of ``value`` (see the module docstring) into ``digest``."""
    if hasattr(value, "detach") and hasattr(value, "dtype") and hasattr(value, "shape"):  # a torch tensor
        import torch

        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif type(value).__module__ == "numpy" and hasattr(value, "tobytes") and hasattr(value, "shape"):
        array = value if value.flags["C_CONTIGUOUS"] else value.copy(order="C")
        digest.update(f"array:{array.dtype.str}:{tuple(array.shape)}:".encode())
        digest.update(array.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"dataclass:{type(value).__qualname__}:".encode())
        for f in dataclasses.fields(value):
            digest.update(f.name.encode())
            feed(digest, getattr(value, f.name))
    elif isinstance(value, Mapping):
        digest.update(f"map:{len(value)}:".encode())
        for key in sorted(value, key=repr):
            feed(digest, key)
            feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}:{len(value)}:".encode())
        for item in value:
            feed(digest, item)
    elif isinstance(value, (bytes, bytearray)):
        digest.update(f"bytes:{len(value)}:".encode() + bytes(value))
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def example_digest(example: Any) -> str:
    """The hex SHA-256 of ``example``'s canonical form: equal for the same example, by value."""
    digest = hashlib.sha256()
    feed(digest, example)
    return digest.hexdigest()


def describe(example: Any, limit: int = 80) -> str:
    """A short description of an example for error messages."""
    text = repr(example)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExampleIndex:
    """The training data's examples by digest: which positions hold each example.

    Args:
        examples: The training data (any sequence).
    """

    def __init__(self, examples: Sequence[Any]):
        self.digests = [example_digest(e) for e in examples]
        self.positions: dict[str, list[int]] = {}
        for i, d in enumerate(self.digests):
            self.positions.setdefault(d, []).append(i)

    def __len__(self) -> int:
        return len(self.digests)

    def locate(self, examples: Sequence[Any], what: str) -> list[int]:
        """The position in the training data of each of ``examples``, each training example used at most once.

        Args:
            examples: The request's examples.
            what: How to name them in an error (e.g. ``"InstanceRemoval example"``).

        Raises:
            InvalidRequestError: the first example that is not in the training data, or one that
                appears more often in the request than in the data.
        """
        used: dict[str, int] = {}
        found = []
        for i, example in enumerate(examples):
            d = example_digest(example)
            places = self.positions.get(d, [])
            taken = used.get(d, 0)
            if taken >= len(places):
                if places:
                    raise InvalidRequestError(
                        f"{what} {i} appears {taken + 1} times in the request but {len(places)} time(s) in "
                        f"train_data: each request example must be a distinct training example (remove the "
                        f"duplicate). Example: {describe(example)}")
                raise InvalidRequestError(
                    f"{what} {i} is not in train_data: every example a request removes or changes must be one "
                    "the adapter was trained on, equal by value (tensors: same dtype, shape and values; see "
                    f"eraserlib.matching). Example: {describe(example)}")
            found.append(places[taken])
            used[d] = taken + 1
        return found
