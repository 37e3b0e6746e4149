"""What a trained recommender outputs: greedy answers, candidate distributions, P(yes), losses.

Every function takes a *list* of models and averages their probabilities: one model is the
usual case, several are SISA's shard adapters, aggregated as the mean of their predicted
distributions (next-token distributions for generation, candidate distributions for scoring,
P(yes) for the binary task). All run without gradients, in eval mode, in batches.

* :func:`greedy_answers`: greedy decoding until EOS; the text HR@1 and ValidRatio read
  (:mod:`eraserlab.rec.metrics`), exactly as LLaRA decodes (greedy, first line).
* :func:`candidate_log_likelihoods`: log P(name + EOS | prompt) of each of the 20 candidates,
  from one prompt pass whose key/value cache is shared by the 20 continuations. The softmax over
  candidates is the model's *candidate distribution*, which the Jensen–Shannon distances to
  Retrain compare.
* :func:`yes_probabilities`: P(" Yes") / (P(" Yes") + P(" No")) at the answer position, the
  score AUC ranks.
* :func:`losses`: the training loss of each example (did the model forget it?).

A model whose answer depends on which sample it answers beyond its tokens (APA's per-sample
merged adapter, :class:`eraserlib.baselines.SampleAdaptiveLoRA`) has a ``condition(examples)``
method; every function here calls it with each batch's examples before running that batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from eraserlab.rec.next_item import NextItemExample
from eraserlab.rec.task import PromptEncoder, example_losses, left_pad, model_device, position_ids


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _condition(models: Sequence[nn.Module], examples: Sequence) -> None:
    """Tell sample-conditioned models (``condition(examples)``) which examples the next batch holds."""
    for m in models:
        condition = getattr(m, "condition", None)
        if condition is not None:
            condition(examples)


def _prompt_batch(encoder: PromptEncoder, examples: Sequence, device: torch.device):
    ids, mask = left_pad([encoder.encode(e).prompt for e in examples], encoder.pad_id)
    return ids.to(device), mask.to(device), position_ids(mask).to(device)


@torch.no_grad()
def greedy_answers(
    models: Sequence[nn.Module],
    encoder: PromptEncoder,
    examples: Sequence,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    progress: bool = False,
) -> list[str]:
    """Greedy decoding from each prompt until EOS (or ``max_new_tokens``); the decoded answers.

    With several models the next token is the argmax of their *mean* next-token distribution.

    Args:
        models: One model, or SISA's shard models.
        encoder: Gives the prompts.
        examples: The examples whose prompts are decoded from.
        max_new_tokens: Longest answer generated.
        batch_size: Prompts per forward pass.
        progress: Show a tqdm bar.

    Returns:
        One string per example: the decoded answer with item tokens replaced by names
        (:meth:`PromptEncoder.readable`), stripped, first line only (as LLaRA).
    """
    device = model_device(models[0])
    for m in models:
        m.eval()
    answers: list[str] = []
    for chunk in tqdm(list(_chunks(examples, batch_size)), desc="generate", disable=not progress, leave=False):
        _condition(models, chunk)
        ids, mask, positions = _prompt_batch(encoder, chunk, device)
        caches, probabilities = [], 0.0
        for m in models:
            out = m(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
            caches.append(out.cache)
            probabilities = probabilities + out.logits[:, -1].float().softmax(-1)  # (B, V)
        last = positions[:, -1]
        generated = []
        finished = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            token = probabilities.argmax(-1)  # (B,); the mean of probabilities has the same argmax as their sum
            generated.append(token)
            finished |= token == encoder.eos_id
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last = last + 1
            probabilities = 0.0
            for m, cache in zip(models, caches):
                out = m(input_ids=token[:, None], attention_mask=mask, position_ids=last[:, None],
                        cache=cache, use_cache=True)
                probabilities = probabilities + out.logits[:, -1].float().softmax(-1)
        tokens = torch.stack(generated, dim=1).tolist()  # (B, steps)
        for row in tokens:
            if encoder.eos_id in row:
                row = row[:row.index(encoder.eos_id)]
            text = encoder.readable(encoder.tokenizer.decode(row, skip_special_tokens=True))
            answers.append(text.strip().split("\n")[0])
    return answers


@torch.no_grad()
def candidate_log_likelihoods(
    models: Sequence[nn.Module],
    encoder: PromptEncoder,
    examples: Sequence[NextItemExample],
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """log P(" name" EOS | prompt) for every candidate of every example, for every model.

    One forward pass over the prompts fills a key/value cache, which is repeated for the C
    candidates of each example, and one more pass scores all continuations at once.

    Args:
        models: One or more models.
        encoder: Gives prompts and answer ids.
        examples: Next-item examples (their candidates in their fixed order).
        batch_size: Examples per pass (a pass holds batch_size × C continuations).
        progress: Show a tqdm bar.

    Returns:
        ``(M, E, C)`` float64 summed log-probabilities (M models, E examples, C candidates).
    """
    device = model_device(models[0])
    result = np.zeros((len(models), len(examples), len(examples[0].candidates)))
    row = 0
    for chunk in tqdm(list(_chunks(examples, batch_size)), desc="score candidates", disable=not progress, leave=False):
        _condition(models, chunk)
        ids, mask, positions = _prompt_batch(encoder, chunk, device)
        counts = {len(e.candidates) for e in chunk}
        if len(counts) != 1:
            raise ValueError(f"All examples must have the same number of candidates, got {sorted(counts)}.")
        c = counts.pop()
        answers = [encoder.answer_ids(item, title) for e in chunk
                   for item, title in zip(e.candidates, e.candidate_titles)]  # B·C
        width = max(len(a) for a in answers)
        cand = torch.full((len(answers), width), encoder.pad_id, dtype=torch.long)
        cand_mask = torch.zeros_like(cand)
        for i, a in enumerate(answers):  # right-padded: continuations start right after the prompt
            cand[i, :len(a)] = torch.tensor(a)
            cand_mask[i, :len(a)] = 1
        cand, cand_mask = cand.to(device), cand_mask.to(device)
        full_mask = torch.cat([mask.repeat_interleave(c, 0), cand_mask], dim=1)  # (B·C, T + L)
        cand_positions = positions[:, -1:].repeat_interleave(c, 0) + 1 + torch.arange(width, device=device)
        for k, m in enumerate(models):
            m.eval()
            out = m(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
            first = out.logits[:, -1].float().log_softmax(-1).repeat_interleave(c, 0)  # (B·C, V)
            cache = out.cache
            cache.batch_repeat_interleave(c)
            rest = m(input_ids=cand, attention_mask=full_mask, position_ids=cand_positions, cache=cache,
                     use_cache=False).logits.float().log_softmax(-1)  # (B·C, L, V)
            # token 0 is predicted by the prompt's last position, token j by continuation position j − 1
            predicted = torch.cat([first[:, None], rest[:, :-1]], dim=1)  # (B·C, L, V)
            token_ll = predicted.gather(-1, cand[..., None])[..., 0] * cand_mask  # (B·C, L)
            result[k, row:row + len(chunk)] = token_ll.sum(1).view(len(chunk), c).double().cpu().numpy()
        row += len(chunk)
    return result


def candidate_distributions(log_likelihoods: np.ndarray) -> np.ndarray:
    """Mean over models of each model's softmax over candidates: ``(M, E, C)`` → ``(E, C)``."""
    shifted = log_likelihoods - log_likelihoods.max(-1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(-1, keepdims=True)
    return p.mean(0)


@torch.no_grad()
def yes_probabilities(
    models: Sequence[nn.Module],
    encoder: PromptEncoder,
    examples: Sequence,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """P(" Yes") / (P(" Yes") + P(" No")) at the answer position, averaged over models: ``(E,)``."""
    device = model_device(models[0])
    scores = np.zeros(len(examples))
    row = 0
    for chunk in tqdm(list(_chunks(examples, batch_size)), desc="P(yes)", disable=not progress, leave=False):
        _condition(models, chunk)
        ids, mask, positions = _prompt_batch(encoder, chunk, device)
        total = torch.zeros(len(chunk), device=device)
        for m in models:
            m.eval()
            logits = m(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                       logits_to_keep=1).logits[:, -1].float()
            total += torch.sigmoid(logits[:, encoder.yes_id] - logits[:, encoder.no_id])
        scores[row:row + len(chunk)] = (total / len(models)).cpu().numpy()
        row += len(chunk)
    return scores


@torch.no_grad()
def losses(
    models: Sequence[nn.Module],
    encoder: PromptEncoder,
    examples: Sequence,
    batch_size: int = 64,
) -> np.ndarray:
    """Each example's training loss (mean answer-token cross-entropy), averaged over models: ``(E,)``."""
    result = np.zeros(len(examples))
    for m in models:
        m.eval()
        values = []
        for chunk in _chunks(examples, batch_size):
            _condition([m], chunk)
            values.append(example_losses(m, encoder(chunk)).double().cpu().numpy())
        result += np.concatenate(values)
    return result / len(models)
