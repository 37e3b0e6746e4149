"""Text rows → causal-LM examples, the way the command line tokenises them.

A row is a dict with a ``text`` column (every token is predicted), or ``prompt`` and
``completion`` columns (only the completion is predicted: the prompt's labels are −100).
Tokenisation:

* ``text``: ``tokenizer(text)["input_ids"]`` (with the tokenizer's special tokens), labels = input_ids;
* ``prompt`` + ``completion``: ``tokenizer(prompt)["input_ids"] + tokenizer(completion,
  add_special_tokens=False)["input_ids"]``, labels −100 on the prompt's part.

The resulting examples are dicts of ``input_ids`` and ``labels`` (lists of ints) for
:class:`eraserlib.CausalLMCollator` and :data:`eraserlib.causal_lm_loss`. An adapter trained
on differently tokenised data needs its own ``train_data``: use the Python API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eraserlib.errors import InvalidRequestError
from eraserlib.losses import IGNORE_INDEX

#: The column layouts a row may have, in the order they are tried.
LAYOUTS = (("prompt", "completion"), ("text",))


def layout(columns: Sequence[str], where: str) -> tuple[str, ...]:
    """The columns that make an example: ``("prompt", "completion")`` or ``("text",)``.

    Raises:
        InvalidRequestError: neither layout is present (naming the columns that are).
    """
    for names in LAYOUTS:
        if all(name in columns for name in names):
            return names
    raise InvalidRequestError(
        f"{where} has columns {sorted(columns)}; it needs a 'text' column, or 'prompt' and 'completion' columns "
        "(only the completion is predicted).")


def row_key(row: Mapping[str, Any], names: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The values of ``names`` in ``row``, checked to be strings: how rows of two files are matched."""
    values = []
    for name in names:
        value = row.get(name)
        if not isinstance(value, str):
            raise InvalidRequestError(f"{where}: column {name!r} must be text, got {value!r}.")
        values.append(value)
    return tuple(values)


def tokenize(key: tuple[str, ...], tokenizer: Any, where: str) -> dict[str, list[int]]:
    """One example from a row's ``key`` (see the module docstring).

    Raises:
        InvalidRequestError: the example predicts no token.
    """
    if len(key) == 1:
        ids = list(tokenizer(key[0])["input_ids"])
        labels = list(ids)
    else:
        prompt = list(tokenizer(key[0])["input_ids"])
        completion = list(tokenizer(key[1], add_special_tokens=False)["input_ids"])
        ids = prompt + completion
        labels = [IGNORE_INDEX] * len(prompt) + completion
    if sum(label != IGNORE_INDEX for label in labels[1:]) == 0:
        raise InvalidRequestError(f"{where} predicts no token after tokenisation (empty text or completion): "
                                  "its loss is undefined; drop it.")
    return {"input_ids": ids, "labels": labels}
