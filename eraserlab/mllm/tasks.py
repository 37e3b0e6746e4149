"""Visual question answering examples, batching, the answer-only loss, and predictions.

One example type serves both benchmarks and both model sizes: whatever processor the model
comes with (the tiny model's or a real LLaVA's ``AutoProcessor``) turns examples into tensors
through :class:`VQACollator`, and the loss counts the answer tokens only, as LLaVA's instruction
tuning does.

The conversation template is LLaVA-1.5's short form, ``USER: <image>\\n{question} ASSISTANT:``,
followed by the answer and the end-of-sequence token.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PROMPT_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"
WORDS: tuple[str, ...] = ("USER", "ASSISTANT", ":")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(eq=False)  # identity semantics: a request names the very objects in the training list
class VQAExample:
    """One question about one image.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, exactly what the model sees (R-Bench boxes drawn in).
        question: the text after ``<image>``, choices included for multiple choice.
        answer: the target answer, e.g. ``"B"`` or ``"Yes"``.
        candidates: the answers whose probabilities form the answer distribution, e.g.
            ``("A", "B", "C", "D")`` or ``("Yes", "No")``.
        meta: benchmark fields (``question_id``, ``image``, spurious types, ``qtype``, the scene
            of generated data, ...). Never read by the model.
    """

    image: np.ndarray
    question: str
    answer: str
    candidates: tuple[str, ...]
    meta: dict = field(default_factory=dict)

    def replaced(self, **changes) -> "VQAExample":
        """A new example with some fields changed and a copy of ``meta`` (updated by ``meta=``)."""
        meta = {**self.meta, **changes.pop("meta", {})}
        return replace(self, meta=meta, **changes)


class VQACollator:
    """Turn examples into model inputs with labels on the answer tokens only.

    Args:
        processor: a LLaVA-style processor: ``processor(text=[...], images=[...],
            return_tensors="pt", padding=True)`` expands ``<image>`` and returns ``input_ids``,
            ``attention_mask`` and ``pixel_values``; ``processor.tokenizer`` has an EOS token.
        template: the conversation template with a ``{question}`` slot.
    """

    def __init__(self, processor, template: str = PROMPT_TEMPLATE):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = template
        self.image_token_id = processor.image_token_id
        if self.tokenizer.eos_token is None:
            raise ValueError("the processor's tokenizer has no EOS token; answers need one to end")

    def prompt(self, example: VQAExample) -> str:
        """The conversation up to and including ``ASSISTANT:``."""
        return self.template.format(question=example.question)

    def __call__(self, examples: Sequence[VQAExample]) -> dict[str, torch.Tensor]:
        """Batch for training: inputs plus ``labels`` (-100 everywhere but the answer and EOS).

        Returns:
            ``input_ids``, ``attention_mask``, ``labels``: (B, T); ``pixel_values``: (B, 3, H, W).
        """
        eos = self.tokenizer.eos_token
        texts = [f"{self.prompt(e)} {e.answer}{eos}" for e in examples]
        batch = self._encode(texts, examples, padding_side="right")
        prompt_lengths = self._prompt_lengths(examples, batch["input_ids"])
        labels = batch["input_ids"].clone()
        positions = torch.arange(labels.shape[1])[None, :]  # (1, T)
        labels[positions < prompt_lengths[:, None]] = -100
        labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        return batch

    def prompts(self, examples: Sequence[VQAExample], padding_side: str = "left") -> dict:
        """Batch of prompts only (for scoring candidates and for generation)."""
        return self._encode([self.prompt(e) for e in examples], examples, padding_side)

    def _encode(self, texts, examples, padding_side):
        return dict(self.processor(
            text=texts, images=[e.image for e in examples], return_tensors="pt",
            padding=True, padding_side=padding_side,
        ))

    def _prompt_lengths(self, examples, input_ids: torch.Tensor) -> torch.Tensor:
        """Number of prompt tokens per row of a right-padded batch, image tokens included."""
        image_tokens = (input_ids == self.image_token_id).sum(dim=1)  # (B,)
        lengths = []
        for e, n_image, row in zip(examples, image_tokens.tolist(), input_ids):
            image_token = self.processor.image_token
            text = self.prompt(e).replace(image_token, image_token * n_image, 1)
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            if row[: len(ids)].tolist() != ids:
                raise ValueError(
                    "the tokenised prompt is not a prefix of the tokenised prompt+answer; "
                    f"cannot locate the answer tokens of {e.question!r} -> {e.answer!r}"
                )
            lengths.append(len(ids))
        return torch.tensor(lengths)


class AnswerLoss:
    """Mean over the batch of each example's mean negative log-likelihood of its answer tokens.

    This is ``loss_fn(model, batch)`` for ``eraserlib.training.train`` and ``eraserlib.erase``:
    ℓ(z) is per example, so the training objective is (1/n) Σ ℓ(z_i) as the influence maths
    assumes, whatever the answers' lengths. It is split into the logits (:meth:`outputs`) and
    the loss of the logits (:meth:`loss_of_outputs`), which Gauss–Newton curvature needs
    (:class:`eraserlib.losses.OutputLoss`). The batch comes from :class:`VQACollator`.
    """

    def outputs(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits, ``(B, T, V)``, of a LLaVA-style model (peft-wrapped or not)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def loss_of_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"][:, 1:].to(logits.device)  # token t predicts token t + 1
        token_nll = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="none"
        ).view(labels.shape)  # (B, T-1)
        counts = (labels != -100).sum(dim=1)
        if (counts == 0).any():
            raise ValueError("an example has no answer tokens (was its answer truncated?)")
        return (token_nll.sum(dim=1) / counts).mean()

    def __call__(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), batch)


#: ``loss_fn`` of the multimodal experiments (see :class:`AnswerLoss`).
answer_loss = AnswerLoss()


def candidate_token_ids(collator: VQACollator, candidates: Sequence[str]) -> list[int]:
    """The first answer token of each candidate, as it is tokenised after ``ASSISTANT:``.

    Raises:
        ValueError: if a candidate is not a single token or two candidates share it.
    """
    anchor = collator.template.split("{question}")[-1]  # " ASSISTANT:"
    base = collator.tokenizer(anchor, add_special_tokens=False)["input_ids"]
    ids = []
    for c in candidates:
        full = collator.tokenizer(f"{anchor} {c}", add_special_tokens=False)["input_ids"]
        extra = full[len(base):]
        if full[: len(base)] != base or len(extra) != 1:
            raise ValueError(f"candidate {c!r} is not one token after {anchor!r}: {extra}")
        ids.append(extra[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"candidates {candidates} share a token")
    return ids


@torch.no_grad()
def answer_distribution(
    model, collator: VQACollator, examples: Sequence[VQAExample], batch_size: int = 64
) -> torch.Tensor:
    """Probabilities of the candidate answers, renormalised over the candidates.

    One forward pass per batch: the next-token logits after ``ASSISTANT:`` restricted to the
    candidates' tokens. All examples must share their candidates.

    Returns:
        ``(N, K)`` float tensor, rows summing to 1, columns in ``examples[0].candidates`` order.
    """
    if not examples:
        return torch.zeros(0, 0)
    candidates = examples[0].candidates
    if any(e.candidates != candidates for e in examples):
        raise ValueError("answer_distribution needs examples with the same candidates")
    token_ids = torch.tensor(candidate_token_ids(collator, candidates))
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        batch = collator.prompts(examples[start:start + batch_size], padding_side="left")
        logits = model(**batch).logits[:, -1, :]  # (B, V): left padding puts every prompt's end last
        out.append(torch.softmax(logits[:, token_ids].float(), dim=-1))
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def generate_answers(
    model, collator: VQACollator, examples: Sequence[VQAExample], max_new_tokens: int = 4,
    batch_size: int = 64,
) -> list[str]:
    """Greedy answers as text (what R-Bench's scorer reads).

    Returns:
        One decoded string per example, special tokens removed, stripped.
    """
    was_training = model.training
    model.eval()
    texts = []
    for start in range(0, len(examples), batch_size):
        batch = collator.prompts(examples[start:start + batch_size], padding_side="left")
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=collator.tokenizer.pad_token_id, eos_token_id=collator.tokenizer.eos_token_id,
        )
        new = out[:, batch["input_ids"].shape[1]:]
        texts += [t.strip() for t in collator.tokenizer.batch_decode(new, skip_special_tokens=True)]
    model.train(was_training)
    return texts


def split_by_image(
    examples: Sequence[VQAExample], seed: int, fractions: tuple[float, ...] = (0.6, 0.2, 0.2),
) -> dict[str, list[VQAExample]]:
    """Train/validation/test split with every question of an image in the same part.

    Args:
        examples: examples with ``meta["image"]``.
        seed: shuffling seed.
        fractions: shares of images for ``SPLITS`` (the paper's 60/20/20 by default).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each in the input order.
    """
    if len(fractions) != len(SPLITS) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be {len(SPLITS)} shares summing to 1, got {fractions}")
    images = sorted({e.meta["image"] for e in examples})
    order = np.random.default_rng(seed).permutation(len(images))
    cuts = np.round(np.cumsum(fractions)[:-1] * len(images)).astype(int)
    part_of = {}
    for part, indices in zip(SPLITS, np.split(order, cuts)):
        part_of.update({images[i]: part for i in indices})
    splits = {part: [] for part in SPLITS}
    for e in examples:
        splits[part_of[e.meta["image"]]].append(e)
    return splits
