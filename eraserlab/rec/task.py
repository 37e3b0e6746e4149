"""Examples → token tensors, and the loss the adapter is trained and erased with.

The training examples stay the data layer's frozen dataclasses (:class:`NextItemExample`,
:class:`PreferenceExample`): they are hashable, so an unlearning request can name them and
SISA can find them, and :class:`PromptEncoder` turns a list of them into a batch (it is the
``collate_fn`` of :func:`eraserlib.training.train` and :func:`eraserlib.erase`), tokenising each
example once.

Batches are *left*-padded: every sequence (prompt, then answer) ends at the last column, so the
answers of a batch all lie in its last ``A`` columns (A = longest answer) and the model only
computes logits there (``logits_to_keep``), which keeps the vocabulary projection off the
prompt. Position ids count real tokens only, so padding changes nothing for models with absolute
positions either.

:func:`answer_loss` is the mean over examples of each example's mean answer-token cross-entropy.
Per example first, then over the batch: a batch's loss is then the average of its examples'
losses whatever their answer lengths and whatever else is in the batch, which is the contract
of ``erase`` ((1/n) Σ ℓ(zᵢ) must not depend on how the data is batched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eraserlab.rec import prompts
from eraserlab.rec.next_item import NextItemExample
from eraserlab.rec.preference import PreferenceExample
from eraserlab.rec.tokenizer import ITEM_TOKEN, item_token

Example = NextItemExample | PreferenceExample


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one example.

    Attributes:
        prompt: The prompt's ids (BOS first).
        answer: The answer's ids (next item: the name then EOS; preference: " Yes" or " No").
    """

    prompt: tuple[int, ...]
    answer: tuple[int, ...]


ITEM_TEXTS = ("token", "title", "title+token")
_MARK = "\x00"  # brackets an item id in the marked prompt text (never in titles or prompt words)


class PromptEncoder:
    """Tokenises examples (memoised) and collates them into left-padded batches.

    Args:
        tokenizer: A fast tokenizer with pad, BOS and EOS tokens (and ``<item_ID>`` tokens for
            ``item_text="token"`` or ``"title+token"``).
        dataset: ``"movielens"``, ``"lastfm"`` or ``"bookcrossing"`` (chooses the wording).
        item_titles: ``{item id: name}``; turns generated item tokens back into names.
        item_text: How an item is shown in prompts and answers: ``"token"`` (its atomic item
            token; the answer is that token), ``"title"`` (its name as text, LLaRA's text-only
            prompt; the answer is the name) or ``"title+token"`` (the name followed by the token,
            as LLaRA's hybrid prompt follows it by an embedding; the answer is the name).
        max_length: Longest prompt + answer allowed (the model's context); longer raises.
        item_embedding_offset: LLaRA's hybrid prompt (:mod:`~eraserlab.rec.sasrec`): when set
            to V, every item the prompt shows is followed by one placeholder id ``V + item``,
            which :class:`~eraserlab.rec.sasrec.HybridPromptModel` turns into the item's
            projected SASRec embedding. The prompt's tokens are those of the text-only prompt
            (tokenised as a whole); the answer has no placeholder. None: text only.
    """

    def __init__(self, tokenizer, dataset: str, item_titles: Mapping[int, str], item_text: str = "token",
                 max_length: int = 1024, item_embedding_offset: int | None = None):
        if item_text not in ITEM_TEXTS:
            raise ValueError(f"item_text must be one of {ITEM_TEXTS}, got {item_text!r}.")
        if item_embedding_offset is not None and item_embedding_offset < len(tokenizer):
            raise ValueError(f"item_embedding_offset={item_embedding_offset} overlaps the tokenizer's "
                             f"{len(tokenizer)} ids: use the model's number of embedding rows.")
        self.item_embedding_offset = item_embedding_offset
        self.tokenizer = tokenizer
        self.wording = prompts.wording_for(dataset)
        self.item_titles = item_titles
        self.item_text = item_text
        self.separator = "" if item_text == "token" else ", "
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self.bos_ids: tuple[int, ...] = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
        self._cache: dict[Any, EncodedExample] = {}
        self._text_cache: dict[str, tuple[int, ...]] = {}
        # " Yes" / " No" for this package's tokenizer; "Yes" / "No" for SentencePiece tokenizers
        # (LLaMA), which add the leading space themselves.
        for yes_text, no_text in ((prompts.YES, prompts.NO), (prompts.YES.strip(), prompts.NO.strip())):
            yes, no = self.ids(yes_text), self.ids(no_text)
            if len(yes) == 1 and len(no) == 1:
                break
        else:
            raise ValueError(
                f"The tokenizer splits {prompts.YES!r} / {prompts.NO!r} into {yes} / {no}: the "
                "preference task needs each to be one token (train the tokenizer with the prompt texts)."
            )
        self.yes_id, self.no_id = yes[0], no[0]
        if item_text != "title" and item_titles:
            probe = next(iter(item_titles))
            if len(self.ids(item_token(probe))) != 1:
                raise ValueError(f"item_text={item_text!r} needs a tokenizer with one token per item "
                                 "(train_tokenizer(..., item_ids=...)).")

    def ids(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` without special tokens (memoised)."""
        cached = self._text_cache.get(text)
        if cached is None:
            cached = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            self._text_cache[text] = cached
        return cached

    def show(self, item: int, title: str) -> str:
        """How one item appears in a prompt."""
        if self.item_text == "token":
            return item_token(item)
        if self.item_text == "title":
            return title
        return f"{title} {item_token(item)}"

    def answer_text(self, item: int, title: str) -> str:
        """The answer naming an item: its token, or a space and its name."""
        return item_token(item) if self.item_text == "token" else " " + title

    def answer_ids(self, item: int, title: str) -> tuple[int, ...]:
        """Ids of a next-item answer, EOS last (so that "Heat" and "Heat 2" differ)."""
        return self.ids(self.answer_text(item, title)) + (self.eos_id,)

    def readable(self, text: str) -> str:
        """Generated text with every ``<item_ID>`` replaced by the item's name (what the metrics read)."""
        return ITEM_TOKEN.sub(lambda m: self.item_titles.get(int(m.group(1)), m.group(0)), text)

    def prompt_text(self, example: Example) -> str:
        """The prompt of an example."""
        return self._render(example, self.show)

    def _render(self, example: Example, show) -> str:
        if isinstance(example, NextItemExample):
            return prompts.next_item_prompt(
                [show(i, t) for i, t in zip(example.history, example.history_titles)],
                [show(i, t) for i, t in zip(example.candidates, example.candidate_titles)],
                self.wording, self.separator)
        if isinstance(example, PreferenceExample):
            return prompts.preference_prompt(
                [show(i, t) for i, t in zip(example.history, example.history_titles)],
                example.history_liked, show(example.item, example.item_title), self.wording, self.separator)
        raise TypeError(f"PromptEncoder cannot encode a {type(example).__name__}.")

    def hybrid_prompt_ids(self, example: Example) -> tuple[int, ...]:
        """The prompt's ids (no BOS) with ``offset + item`` after the last token of each item mention.

        The text-only prompt is tokenised as a whole and each placeholder goes after the token
        in which its item's text ends (character offsets), so removing the placeholders gives
        exactly :meth:`prompt_text`'s ids whatever the tokenizer.
        """
        marked = self._render(example, lambda i, t: f"{self.show(i, t)}{_MARK}{int(i)}{_MARK}")
        pieces = marked.split(_MARK)  # text, item, text, item, ..., text
        text = "".join(pieces[0::2])
        ends, length = [], 0
        for piece, item in zip(pieces[0::2], pieces[1::2]):
            length += len(piece)
            ends.append((length, int(item)))  # the mention's text ends at character `length`
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, k = [], 0
        for token, (_, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
            ids.append(token)
            while k < len(ends) and ends[k][0] <= end:
                ids.append(self.item_embedding_offset + ends[k][1])
                k += 1
        if k != len(ends):
            raise ValueError(f"Could not place {len(ends) - k} item embeddings in the prompt {text!r}.")
        return tuple(ids)

    def encode(self, example: Example) -> EncodedExample:
        """Prompt and answer ids of one example (memoised by the example itself)."""
        cached = self._cache.get(example)
        if cached is not None:
            return cached
        if self.item_embedding_offset is None:
            prompt = self.bos_ids + self.ids(self.prompt_text(example))
        else:
            prompt = self.bos_ids + self.hybrid_prompt_ids(example)
        if isinstance(example, NextItemExample):
            answer = self.answer_ids(example.target, example.target_title)
        else:
            answer = (self.yes_id if example.label else self.no_id,)
        if len(prompt) + len(answer) > self.max_length:
            raise ValueError(
                f"An example has {len(prompt) + len(answer)} tokens, more than the model's "
                f"{self.max_length}; use a model with a longer context or shorter histories."
            )
        encoded = EncodedExample(prompt, answer)
        self._cache[example] = encoded
        return encoded

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Collate examples into a training batch (see :func:`collate`)."""
        return collate([self.encode(e) for e in examples], self.pad_id)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id sequences into ``(input_ids, attention_mask)``, both ``(B, T)`` int64."""
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, length - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
            mask[row, length - len(sequence):] = 1
    return input_ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each row (padding gets 0): ``(B, T)``."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def collate(encoded: Sequence[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """A left-padded batch of prompt + answer sequences.

    Args:
        encoded: The examples' ids.
        pad_id: The padding id.

    Returns:
        ``input_ids``, ``attention_mask``, ``position_ids``: ``(B, T)``; ``labels``: ``(B, A)``
        the last A tokens of each row; ``label_mask``: ``(B, A)`` 1 where that token belongs to
        the example's answer (A = longest answer).
    """
    if not encoded:
        raise ValueError("collate got no examples.")
    input_ids, mask = left_pad([e.prompt + e.answer for e in encoded], pad_id)
    width = max(len(e.answer) for e in encoded)
    label_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        label_mask[row, width - len(e.answer):] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": position_ids(mask),
        "labels": input_ids[:, -width:].clone(),
        "label_mask": label_mask,
    }


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def answer_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits that predict the answer tokens, ``(B, A, V)`` float32: position t predicts token t + 1."""
    device = model_device(model)
    width = batch["labels"].shape[1]
    output = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        position_ids=batch["position_ids"].to(device),
        logits_to_keep=width + 1,
        use_cache=False,
    )
    return output.logits[:, :-1].float()


def token_losses_of(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every answer position from its logits, ``(B, A)`` (zero where ``label_mask`` is 0)."""
    labels = batch["labels"].to(logits.device)
    losses = nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # (B, A)
    return losses * batch["label_mask"].to(logits.device)


def answer_token_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every answer position, ``(B, A)`` float32 (zero where ``label_mask`` is 0)."""
    return token_losses_of(answer_logits(model, batch), batch)


def example_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each example's mean answer-token cross-entropy, ``(B,)``."""
    mask = batch["label_mask"].to(model_device(model))
    return answer_token_losses(model, batch).sum(1) / mask.sum(1)


class AnswerLoss:
    """The training loss: mean over examples of the mean answer-token cross-entropy (scalar).

    This is the ``loss_fn(model, batch)`` of :func:`eraserlib.training.train` and
    :func:`eraserlib.erase`; see the module docstring for why examples are averaged first. It
    is split into the answer logits (:meth:`outputs`) and the loss of those logits
    (:meth:`loss_of_outputs`), which Gauss–Newton curvature needs
    (:class:`eraserlib.losses.OutputLoss`).
    """

    def outputs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return answer_logits(model, batch)

    def loss_of_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["label_mask"].to(logits.device)
        return (token_losses_of(logits, batch).sum(1) / mask.sum(1)).mean()

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), batch)


#: ``loss_fn`` of the recommendation experiments (see :class:`AnswerLoss`).
answer_loss = AnswerLoss()
