"""Finding a request's examples in the training data, by value.

Two examples are *the same* when their canonical forms are equal:

* tensors and numpy arrays: same dtype, same shape, same bytes (so a float32 tensor never
  matches its float64 copy, and a re-tokenised near-copy with one token changed is another
  example);
* dicts (keys in sorted order), lists and tuples (in order, a list never equal to a tuple),
  dataclasses (their class name and fields): element by element;
* strings, bytes, numbers, booleans and None: type and value;
* anything else: its type and ``repr``.

Each example is reduced to a SHA-256 of that canonical form (:func:`example_digest`), so
looking up k request examples among n training examples costs one pass of hashing over the n
and a dictionary look-up each. Lists of plain integers or floats (token ids: the rows of a
tokenised Hugging Face ``datasets.Dataset``) are hashed as one packed array, not element by
element; ``benchmarks/matching_speed.py`` measures the pass at 10⁶ examples.

``train_data`` may be any sequence (a list, a tuple) or a Hugging Face ``datasets.Dataset``,
whose rows are dicts (in the dataset's format: Python lists by default, tensors after
``with_format("torch")``); a request's examples must be in the same form as ``train_data[i]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from eraserlib.errors import InvalidRequestError

#: Rows read at once from a Hugging Face dataset (one Arrow slice each).
DATASET_BATCH = 4096
_INT64 = (-(2**63), 2**63 - 1)


def is_hf_dataset(value: Any) -> bool:
    """Whether ``value`` is a Hugging Face ``datasets.Dataset`` (map-style), without importing ``datasets``."""
    return type(value).__module__.split(".")[0] == "datasets" and hasattr(value, "column_names") \
        and hasattr(value, "__getitem__") and hasattr(value, "__len__")


def is_hf_iterable_dataset(value: Any) -> bool:
    """Whether ``value`` is a streaming ``datasets.IterableDataset`` (no length, no indexing)."""
    return type(value).__module__.split(".")[0] == "datasets" and not hasattr(value, "__len__")


def _packed(values: list | tuple) -> bytes | None:
    """The list as one int64 or float64 array's bytes, when every element is a plain int (or float); else None."""
    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            return b"\x00int64:" + array("q", values).tobytes()
        except OverflowError:
            return None
    if kinds == {float}:
        return b"\x00float64:" + array("d", values).tobytes()
    return None


def feed(digest: "hashlib._Hash", value: Any) -> None:
    """Feed the canonical byte form of ``value`` (see the module docstring) into ``digest``."""
    kind = type(value)
    if kind is list or kind is tuple:  # the common cases first (a dataset row: a dict of lists of ints)
        digest.update(b"%s:%d:" % (kind.__name__.encode(), len(value)))
        packed = _packed(value) if value else None
        if packed is not None:
            digest.update(packed)
        else:
            for item in value:
                feed(digest, item)
    elif kind is str:
        digest.update(b"str:%d:" % len(value) + value.encode("utf-8", "surrogatepass"))
    elif kind is dict:
        digest.update(b"map:%d:" % len(value))
        for key in sorted(value, key=repr):
            feed(digest, key)
            feed(digest, value[key])
    elif hasattr(value, "detach") and hasattr(value, "dtype") and hasattr(value, "shape"):  # a torch tensor
        import torch

        digest.update(b"tensor:%s:%s:" % (str(value.dtype).encode(), str(tuple(value.shape)).encode()))
        if not value.numel():
            return
        if value.device.type == "cpu" and not value.requires_grad and value.is_contiguous() \
                and value.dtype not in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
            digest.update(value.numpy().reshape(-1))  # the buffer itself, no copy
        else:
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif type(value).__module__ == "numpy" and hasattr(value, "tobytes") and hasattr(value, "shape"):
        array_ = value if value.flags["C_CONTIGUOUS"] else value.copy(order="C")
        digest.update(f"array:{array_.dtype.str}:{tuple(array_.shape)}:".encode())
        digest.update(array_.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"dataclass:{type(value).__qualname__}:".encode())
        for f in dataclasses.fields(value):
            digest.update(f.name.encode())
            feed(digest, getattr(value, f.name))
    elif isinstance(value, Mapping):
        digest.update(b"map:%d:" % len(value))
        for key in sorted(value, key=repr):
            feed(digest, key)
            feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(b"%s:%d:" % (type(value).__name__.encode(), len(value)))
        packed = _packed(value)
        if packed is not None:
            digest.update(packed)
        else:
            for item in value:
                feed(digest, item)
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"bytes:%d:" % len(value) + bytes(value))
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


def iterate_examples(data: Any) -> Iterator[Any]:
    """The examples of ``data`` in order, read fast (a Hugging Face dataset in Arrow slices, as ``data[i]`` gives them)."""
    if is_hf_dataset(data):
        for start in range(0, len(data), DATASET_BATCH):
            columns = data[start:start + DATASET_BATCH]
            names = list(columns)
            values = [columns[name] for name in names]
            for j in range(len(values[0]) if values else 0):
                yield {name: column[j] for name, column in zip(names, values)}
    else:
        yield from data


def check_train_data(train_data: Any) -> None:
    """``train_data`` must be a sequence of examples with a length and integer indexing.

    Raises:
        InvalidRequestError: a string, a mapping, a streaming dataset, an iterator, None, or empty.
    """
    if is_hf_iterable_dataset(train_data):
        raise InvalidRequestError(
            "train_data is a streaming datasets.IterableDataset: erase needs every training example by index. "
            "Load it as a map-style Dataset (datasets.load_dataset(..., streaming=False)).")
    if not is_hf_dataset(train_data) and (isinstance(train_data, (str, bytes, Mapping)) or hasattr(train_data, "shape")
                                          or not isinstance(train_data, Sequence)):
        raise InvalidRequestError(
            f"train_data must be the sequence of training examples (a list, or a datasets.Dataset), got "
            f"{type(train_data).__name__}. (A batched tensor: pass list(tensor) for one example per row; an iterator: "
            "list(iterator).)")
    if len(train_data) == 0:
        raise InvalidRequestError("train_data is empty: erase needs the data the model was trained on.")


class ExampleIndex:
    """The training data's examples by digest: which positions hold each example.

    One pass of hashing over the data; it also gives :attr:`data_digest`, a digest of the whole
    data (order included), so that a manifest costs no second pass.

    Args:
        examples: The training data (any sequence, or a Hugging Face ``datasets.Dataset``).
    """

    def __init__(self, examples: Sequence[Any]):
        self.digests: list[str] = []
        self.positions: dict[str, list[int]] = {}
        self._sample: Any = None  # the first example, to say how a request's example differs from the data's
        for i, example in enumerate(iterate_examples(examples)):
            if i == 0:
                self._sample = example
            d = example_digest(example)
            self.digests.append(d)
            self.positions.setdefault(d, []).append(i)
        self._data_digest: str | None = None

    def __len__(self) -> int:
        return len(self.digests)

    @property
    def data_digest(self) -> str:
        """SHA-256 of the data: of the number of examples and each example's digest, in order."""
        if self._data_digest is None:
            digest = hashlib.sha256(b"examples:%d:" % len(self.digests))
            for d in self.digests:
                digest.update(d.encode())
            self._data_digest = digest.hexdigest()
        return self._data_digest

    def _hint(self, example: Any) -> str:
        if isinstance(example, int) and not isinstance(self._sample, int):
            return (" It is an integer, the training examples are not: to name examples by position use "
                    "InstanceRemoval.from_indices(train_data, indices) (or ResponseCorrection.from_indices).")
        if type(example) is not type(self._sample):
            return (f" It is a {type(example).__name__}, the training examples are "
                    f"{type(self._sample).__name__}s: pass the examples in the form train_data[i] has.")
        return ""

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
                    f"eraserlib.matching). Example: {describe(example)}.{self._hint(example)}")
            found.append(places[taken])
            used[d] = taken + 1
        return found
