"""The frozen base model: pre-trained on users that no experiment touches, cached on disk.

Forgetting only means something if the base never saw what is to be forgotten. So each
dataset's users are split once (by ``PretrainConfig.heldout_share`` and the seed): the
**held-out users** pre-train the base, all of it, and then never appear again; the other users'
data is what the LoRA adapter is trained on and what every unlearning request draws from.
The base learns, from the held-out users only:

* the next-item task (LLaRA prompt → next item), on all of their targets;
* the preference task (TALLRec prompt → Yes/No), where the dataset has ratings;
* optionally (``"sequence"`` in the schedule; not by default), their sequences as plain text
  ("This user has watched A B C ..." with a loss on every item).

The small model must learn to *copy* one of the prompt's 20 candidates into its answer, and it
learns that slowly: at the defaults (8,000 steps, 6,000 of them next-item) 23% of the answer's
probability lies on the candidates and 45% of greedy answers name one (ValidRatio) on the task
users' test examples; with 3,000 steps that mixed in the plain sequences, 4% and 12%.

The item tokens' embeddings are learnt here and frozen with the rest of the base; items only
the task users interacted with still get trained embeddings, because every item is a random
negative candidate in some held-out prompt.

A base is cached under ``<repo>/.cache/rec/<dataset>-<hash>/`` (model, tokenizer, ``info.json``),
the hash covering every setting that changes it (dataset, sizes, pre-training config, seed,
:data:`CACHE_VERSION`, and the data files' sizes); a second call with the same settings loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eraserlab import datasets
from eraserlab.rec import prompts
from eraserlab.profiling import resolve_device
from eraserlab.rec.model import ModelConfig, Recommender, build_small_llama
from eraserlab.rec.random_draws import random_draws
from eraserlab.rec.task import PromptEncoder, answer_loss, left_pad, model_device, position_ids
from eraserlab.rec.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from eraserlab.cache import REPOSITORY_CACHE, cache_lock

#: Bump when the data, the recipe or the model code changes what a cached base would be.
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = REPOSITORY_CACHE / "rec"
#: Which tasks each dataset has (Last.fm has play counts, not ratings; Book-Crossing no order).
DATASET_TASKS = {
    "movielens": ("next_item", "preference"),
    "lastfm": ("next_item",),
    "bookcrossing": ("preference",),
}
_DATA_FOLDERS = {"movielens": "ml-100k", "lastfm": "hetrec2011-lastfm-2k", "bookcrossing": "book-crossing"}


@dataclass(frozen=True)
class PretrainConfig:
    """How the base model is pre-trained.

    Attributes:
        heldout_share: Share of the users whose data pre-trains the base (and who are then
            excluded from every experiment).
        steps: Optimiser steps; each step draws one batch from one source, in turn.
        batch_size: Examples per step.
        lr: Peak AdamW learning rate (linear warm-up, then linear decay to 0).
        warmup_steps: Warm-up steps.
        weight_decay: AdamW's decoupled weight decay (the base is not part of the erase objective).
        vocab_size: BPE vocabulary size (before the item tokens).
        item_text: How prompts show items: "token", "title" or "title+token" (see ``PromptEncoder``).
        sequence_items: Items per plain-sequence example.
        schedule: The order in which steps draw from the sources, repeated (sources the dataset
            lacks are skipped). Next-item three times as often as preference: choosing among the
            prompt's 20 candidates (ValidRatio) is what the small model learns slowest, and the
            plain "sequence" source, which teaches free next-item prediction, held it back
            (4% of the answer's probability on the candidates after 3,000 steps with it, 9% after
            1,500 next-item-only steps without it); it stays available by name.
        max_train_per_user: Cap on each held-out user's training targets (None: all; small
            values only to make smoke tests fast).
    """

    heldout_share: float = 0.25
    steps: int = 8000
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    vocab_size: int = 2000
    item_text: str = "token"
    sequence_items: int = 50
    schedule: tuple[str, ...] = ("next_item", "next_item", "next_item", "preference")
    max_train_per_user: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def heldout_users(users: Sequence[int], share: float, seed: int) -> frozenset[int]:
    """The users that pre-train the base: each user independently with probability ``share``.

    A hash of ``(seed, user)`` decides, so a user's fate does not depend on the others.
    """
    users = np.asarray(sorted(set(int(u) for u in users)), dtype=np.int64)
    if len(users) == 0:
        return frozenset()
    draws = random_draws(seed, users[:, None], 0, 1)[:, 0]
    chosen = draws < np.uint64(int(share * 2**64 - 1)) if share < 1 else np.ones(len(users), bool)
    return frozenset(users[chosen].tolist())


def load_task_data(dataset: str, data_dir=None, max_train_per_user: int | None = None, data_seed: int = 0,
                   tasks: Sequence[str] | None = None) -> dict:
    """The dataset's examples for each task it has (``{"next_item": ..., "preference": ...}``).

    Args:
        dataset: ``"movielens"``, ``"lastfm"`` or ``"bookcrossing"``.
        data_dir: The data folder.
        max_train_per_user: Each user's most recent training targets kept (None: all).
        data_seed: Seeds the candidates (and Book-Crossing's order).
        tasks: Build only these of the dataset's tasks (default: all).

    Returns:
        ``{task: dataset}``.
    """
    import warnings

    from eraserlab.rec import bookcrossing_preference, lastfm_next_item, movielens_next_item, movielens_preference
    from eraserlab.rec.preference import MissingTitlesWarning

    if dataset not in DATASET_TASKS:
        raise ValueError(f"Unknown dataset {dataset!r}; one of {sorted(DATASET_TASKS)}.")
    tasks = DATASET_TASKS[dataset] if tasks is None else tasks
    result = {}
    if dataset == "movielens":
        if "next_item" in tasks:
            result["next_item"] = movielens_next_item(data_dir, seed=data_seed, max_train_per_user=max_train_per_user)
        if "preference" in tasks:
            result["preference"] = movielens_preference(data_dir, max_train_per_user=max_train_per_user)
    elif dataset == "lastfm":
        result["next_item"] = lastfm_next_item(data_dir, seed=data_seed, max_train_per_user=max_train_per_user)
    else:
        with warnings.catch_warnings():  # the ISBN-names warning is kept in the dataset's notes
            warnings.simplefilter("ignore", MissingTitlesWarning)
            result["preference"] = bookcrossing_preference(data_dir, seed=data_seed, max_train_per_user=max_train_per_user)
    return result


def _item_titles(task_data: dict) -> dict[int, str]:
    titles: dict[int, str] = {}
    for data in task_data.values():
        titles.update(data.item_titles)
    return titles


def all_users(task_data: dict) -> list[int]:
    return sorted({e.user for data in task_data.values() for split in (data.train, data.validation, data.test)
                   for e in split})


def _data_fingerprint(dataset: str, data_dir) -> dict:
    """Sizes of the dataset's files: a cheap guard against reusing a base built from other data."""
    folder = datasets.data_dir(data_dir) / _DATA_FOLDERS[dataset]
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def cache_key(dataset: str, model_config: ModelConfig, config: PretrainConfig, seed: int, data_dir=None,
              data_seed: int = 0) -> str:
    """The hash naming a cached base: every setting that changes it."""
    description = {
        "version": CACHE_VERSION, "dataset": dataset, "model": model_config.to_dict(),
        "pretrain": config.to_dict(), "seed": seed, "data_seed": data_seed,
        "data": _data_fingerprint(dataset, data_dir),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def _sequence_batch(encoder: PromptEncoder, sequences: Sequence[tuple[tuple[int, ...], tuple[str, ...]]]):
    """Plain sequences "This user has <consumed> A B C ..." with a target on every item position."""
    rows, targets = [], []
    head = encoder.bos_ids + encoder.ids(f"This user has {encoder.wording.consumed}")
    for items, titles in sequences:
        ids, is_item = list(head), [False] * len(head)
        for k, (item, title) in enumerate(zip(items, titles)):
            piece = encoder.ids((encoder.separator if k else " ") + encoder.show(item, title)
                                if encoder.item_text != "token" else encoder.show(item, title))
            ids.extend(piece)
            is_item.extend([True] * len(piece))
        rows.append(ids)
        targets.append(is_item)
    input_ids, mask = left_pad(rows, encoder.pad_id)
    target_mask, _ = left_pad([[int(t) for t in row] for row in targets], 0)
    return input_ids, mask, target_mask


def _sequence_loss(model, encoder: PromptEncoder, sequences) -> torch.Tensor:
    device = model_device(model)
    input_ids, mask, target_mask = (t.to(device) for t in _sequence_batch(encoder, sequences))
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids(mask),
                   use_cache=False).logits[:, :-1].float()
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
    weights = target_mask[:, 1:].float()
    return (losses * weights).sum() / weights.sum()


def _user_sequences(task_data: dict, users: frozenset[int], length: int) -> list[tuple[tuple[int, ...], tuple[str, ...]]]:
    """Each held-out user's whole item sequence, in chunks of ``length`` items.

    Rebuilt from one task's examples (a dataset's tasks share each user's order): an example's
    history and target are positions ``position − len(history) … position`` of the sequence,
    and together the examples cover all of it.
    """
    data = next(iter(task_data.values()))
    windows: dict[int, dict[int, tuple[int, str]]] = {}
    for split in (data.train, data.validation, data.test):
        for e in split:
            if e.user not in users:
                continue
            target = (e.target, e.target_title) if hasattr(e, "target") else (e.item, e.item_title)
            slots = windows.setdefault(e.user, {})
            for offset, pair in enumerate(zip(e.history, e.history_titles)):
                slots[e.position - len(e.history) + offset] = pair
            slots[e.position] = target
    sequences = []
    for user in sorted(windows):
        ordered = [windows[user][p] for p in sorted(windows[user])]
        for start in range(0, len(ordered), length):
            chunk = ordered[start:start + length]
            if len(chunk) >= 2:
                sequences.append((tuple(i for i, _ in chunk), tuple(t for _, t in chunk)))
    return sequences


def pretrain_base(
    dataset: str = "movielens",
    data_dir=None,
    model_config: ModelConfig | None = None,
    config: PretrainConfig | None = None,
    *,
    seed: int = 0,
    data_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = True,
) -> Recommender:
    """The pre-trained, frozen small base for a dataset: loaded from the cache, or trained and cached.

    Args:
        dataset: ``"movielens"``, ``"lastfm"`` or ``"bookcrossing"``.
        data_dir: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        model_config: Sizes of the small Llama.
        config: The pre-training recipe.
        seed: Seeds the held-out users, the model's init and the batches.
        data_seed: The datasets' candidate seed (the experiments use the same).
        cache_dir: Where bases are cached (default ``<repo>/.cache/rec``).
        device: ``"auto"``: CUDA when present.
        progress: Show a tqdm bar while training.

    Returns:
        A :class:`Recommender`; ``info`` has ``heldout_users``, ``cache_hit``, ``path``,
        ``pretrain_time_s``, the final losses and the configs.
    """
    model_config = model_config or ModelConfig()
    config = config or PretrainConfig()
    device = resolve_device(device)
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    key = cache_key(dataset, model_config, config, seed, data_dir, data_seed)
    path = cache_dir / f"{dataset}-{key}"
    with cache_lock(path):  # a concurrent run that needs the same base waits, then loads it
        return _load_or_train(path, key, dataset, data_dir, model_config, config, seed, data_seed, device, progress)


def _load_or_train(path: Path, key: str, dataset: str, data_dir, model_config: ModelConfig, config: PretrainConfig,
                   seed: int, data_seed: int, device: torch.device, progress: bool) -> Recommender:
    """:func:`pretrain_base` once the cache entry is locked."""
    from transformers import AutoModelForCausalLM

    if (path / "info.json").is_file():
        info = json.loads((path / "info.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(path / "model", attn_implementation="eager", local_files_only=True)
        for p in model.parameters():
            p.requires_grad_(False)
        info.update(cache_hit=True, path=str(path), heldout_users=frozenset(info["heldout_users"]))
        return Recommender(model.to(device).eval(), load_tokenizer(path / "tokenizer"), info)

    start = time.perf_counter()
    task_data = load_task_data(dataset, data_dir, config.max_train_per_user, data_seed=data_seed)
    titles = _item_titles(task_data)
    held = heldout_users(all_users(task_data), config.heldout_share, seed)
    tokenizer = train_tokenizer(titles.values(), prompts.template_texts(dataset), vocab_size=config.vocab_size,
                                item_ids=None if config.item_text == "title" else titles.keys(),
                                atomic_texts=(prompts.YES, prompts.NO))
    encoder = PromptEncoder(tokenizer, dataset, titles, item_text=config.item_text,
                            max_length=model_config.max_positions)
    sources: dict[str, list] = {
        name: [e for split in (data.train, data.validation, data.test) for e in split if e.user in held]
        for name, data in task_data.items()
    }
    if "sequence" in config.schedule:
        sources["sequence"] = _user_sequences(task_data, held, config.sequence_items)
    sources = {name: examples for name, examples in sources.items() if examples}
    if not sources:
        raise ValueError(f"No held-out users with data (heldout_share={config.heldout_share}).")

    model = build_small_llama(model_config, tokenizer, seed).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    names = [name for name in config.schedule if name in sources]
    if not names:
        raise ValueError(f"schedule {config.schedule} names none of the sources {sorted(sources)}.")
    history: dict[str, list[float]] = {name: [] for name in set(names)}
    bar = tqdm(range(config.steps), desc=f"pre-train {dataset} base", disable=not progress, leave=False)
    for step in bar:
        name = names[step % len(names)]
        pool = sources[name]
        batch = [pool[i] for i in torch.randint(len(pool), (config.batch_size,), generator=generator).tolist()]
        loss = _sequence_loss(model, encoder, batch) if name == "sequence" else answer_loss(model, encoder(batch))
        scale = min(1.0, (step + 1) / max(1, config.warmup_steps)) * (1 - step / config.steps)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history[name].append(float(loss.detach()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(history[name][-10:]):.3f}", source=name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {
        "dataset": dataset, "seed": seed, "data_seed": data_seed, "cache_key": key,
        "model_config": model_config.to_dict(), "pretrain_config": config.to_dict(),
        "heldout_users": sorted(held), "pretrain_examples": {n: len(v) for n, v in sources.items()},
        "final_losses": {n: float(np.mean(v[-20:])) for n, v in history.items() if v},
        "pretrain_time_s": time.perf_counter() - start, "device": str(device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    _save_atomically(path, model, tokenizer, info)
    info.update(cache_hit=False, path=str(path), heldout_users=held)
    return Recommender(model, tokenizer, info)


def _save_atomically(path: Path, model, tokenizer, info: dict) -> None:
    """Write the base to a temporary folder beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(staging / "model")
        save_tokenizer(tokenizer, staging / "tokenizer")
        (staging / "info.json").write_text(json.dumps(info, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the base from other users
        try:
            os.replace(staging, path)
        except OSError:  # another process cached the same base first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
