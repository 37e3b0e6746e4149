"""Pre-training of the tiny LLaVA (all of it) on generated data, cached on disk and reused.

The base model plays LLaVA-1.5's part: it can see (shapes, colours, sizes, textures, where the
object in a red box lies relative to the one in a green box) and answers questions in its own
curriculum's wording; the LoRA adapter then learns the benchmarks' questions, and the unlearning
requests touch only the adapter's data.

Disjoint from the benchmarks by construction: fresh scenes from a seed stream of their own, no
spurious correlation between any two attributes, and none of the benchmarks' question wordings
(R-Bench's "circle in red bounding box", the four-option shape question).

The curriculum is one that trains tiny LLaVAs to read boxes and relations (a single-stage mix did not), in three
stages (``STAGES``): captions and "where is the object in the red box relative to the object in
the green box?" (4-way); then mostly yes/no relation questions about the boxes; then a mix with
four-option questions about every attribute but the shape. What did not work is recorded next
to ``STAGES``. Consequence to keep in mind: the base already answers R-Bench's Positive and
Opposite questions well zero-shot (the adapter mostly learns the wording); its Random questions
(absent object, empty green box) it answers "Yes", as a hallucinating model would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from eraserlab.mllm import formats, relations, scenes, spurious, tasks
from eraserlab.mllm.model import TinyLlavaConfig, build_model, build_processor, build_tokenizer
from eraserlab.mllm.relations import generate_relations
from eraserlab.mllm.scenes import Scene, SceneObject, render
from eraserlab.mllm.tasks import VQAExample, VQACollator, answer_loss
from eraserlab.cache import REPOSITORY_CACHE, cache_lock

# Bump when the data, the curriculum or the model code changes what a cached base would be.
CACHE_VERSION = 5
DEFAULT_CACHE_DIR = REPOSITORY_CACHE / "mllm"
PRETRAIN_TASKS: tuple[str, ...] = ("describe", "choose", "where_box", "yes_no_box")
# What the stages are for, and what failed (2,500-3,000 steps of batch 32 each time):
# * shapes are learnt only when captions dominate at first (in an even five-task mix they stayed
#   near chance);
# * tasks whose answer needs a free-form name from the question matched to the image (naming the
#   object in a box, "is there a ring?", "where is the ring relative to the cross?") stayed at
#   chance in every mix, so the curriculum has none;
# * yes/no about the boxes sits at chance for hundreds of steps, then is learnt within about a
#   hundred, but only when it dominates the mix (at 35% it was at chance after 1,750 steps):
#   hence stage 2;
# * adding "is there an object in the green box?" (for Random questions' empty box) kept both it
#   and the yes/no at chance.
STAGES: tuple[dict[str, float], ...] = (
    {"describe": 0.6, "where_box": 0.4},
    {"describe": 0.15, "where_box": 0.25, "yes_no_box": 0.6},
    {"describe": 0.3, "choose": 0.25, "where_box": 0.15, "yes_no_box": 0.3},
)
# Four-option questions in MM-SpuBench's layout about every attribute but the shape (the
# benchmark asks the shape). They teach the answer format: without them the letters' output
# embeddings stay at their random initialisation, and a LoRA adapter, which cannot change the
# output layer, could not make the model say "B" with confidence.
CHOICE_QUESTIONS: dict[str, str] = {
    "Background": "What is the colour of the background?",
    "Colorization": "What is the colour of the main object?",
    "Texture and Noise": "What is the texture of the background?",
    "Relative Size": "What is the size of the main object?",
    "Co-occurring Objects": "What is the small object in the corner?",
}
WORDS: tuple[str, ...] = (
    "Describe", "image", "a", "on", "background", "with", "Where", "relative", "to", "is", "in",
    "red", "green", "box", "object", "Is", "the", ".", "?", "left", "right", "above", "below",
    "of", "Yes", "No", "colour", "texture", "size", "small", "corner",
)


@dataclass(frozen=True)
class PretrainConfig:
    """How the base model is pre-trained.

    Attributes:
        steps: optimiser steps in all.
        stage_shares: share of the steps in each of the ``STAGES`` (task mixtures), in order.
        batch_size: examples per step (fresh scenes every step).
        lr: AdamW learning rate, constant after warm-up (one-cycle schedules stalled here). At 2e-3
            the yes/no box questions stayed at chance on one machine (held-out accuracy 0.55 and
            0.45 at the end, seeds 0 and 1; Retrain then answered every relation question "Yes")
            though another machine had learnt them; at 1e-3, seed 0 on that machine reached 0.92
            by step 2,000 and 0.95 by step 2,750 (every other task 0.72-0.96).
        warmup_steps: linear warm-up.
        weight_decay: AdamW's decoupled weight decay.
        conflict_share: share of relation scenes whose subject sits on the misleading side, so
            that "where" is learnt from relative, not absolute, position.
    """

    steps: int = 3000
    stage_shares: tuple[float, ...] = (0.25, 0.3, 0.45)
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    conflict_share: float = 0.25


@dataclass
class TinyLlava:
    """A pre-trained base: the model and its processor, plus what produced them."""

    model: torch.nn.Module
    processor: object
    config: TinyLlavaConfig
    pretrain_config: PretrainConfig
    seed: int
    manifest: dict


def vocabulary() -> list[str]:
    """Every word the generators, the templates and the curriculum can write."""
    words = set(scenes.WORDS) | set(spurious.WORDS) | set(relations.WORDS) | set(formats.WORDS)
    words |= set(tasks.WORDS) | set(WORDS)
    return sorted(words)


def load_or_pretrain(
    config: TinyLlavaConfig | None = None,
    pretrain_config: PretrainConfig | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> TinyLlava:
    """The pre-trained base model, from the cache if there, else trained and cached.

    The cache key hashes the two configs, the seed and ``CACHE_VERSION``; the folder holds
    ``save_pretrained`` output of model and processor and a ``manifest.json`` (configs, timings,
    held-out accuracies per curriculum task).

    Args:
        config: model sizes (default ``TinyLlavaConfig()``).
        pretrain_config: training settings (default ``PretrainConfig()``).
        seed: initialisation and data seed.
        cache_dir: cache root (default ``<repo>/.cache/mllm``).
        progress: show a progress bar while training.

    Returns:
        The base in eval mode with every parameter frozen.
    """
    config = config or TinyLlavaConfig()
    pretrain_config = pretrain_config or PretrainConfig()
    folder = Path(cache_dir or DEFAULT_CACHE_DIR) / cache_key(config, pretrain_config, seed)
    with cache_lock(folder):  # a concurrent run that needs the same base waits, then loads it
        if not (folder / "manifest.json").exists():
            base = pretrain(config, pretrain_config, seed, progress)
            _save(base, folder)
            return _frozen(base)
    return _frozen(_load(folder))


def cache_key(config: TinyLlavaConfig, pretrain_config: PretrainConfig, seed: int) -> str:
    """Folder name of a cached base: ``base-<16 hex digits>``."""
    blob = json.dumps({"model": config.to_dict(), "pretrain": asdict(pretrain_config), "seed": seed,
                       "version": CACHE_VERSION}, sort_keys=True)
    return "base-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def pretrain(
    config: TinyLlavaConfig, pretrain_config: PretrainConfig, seed: int = 0, progress: bool = True
) -> TinyLlava:
    """Train every parameter of a fresh tiny LLaVA on the curriculum (no cache involved).

    Returns:
        The trained base (parameters still trainable) with a manifest of what was done.
    """
    cfg = pretrain_config
    if len(cfg.stage_shares) != len(STAGES) or abs(sum(cfg.stage_shares) - 1) > 1e-9:
        raise ValueError(f"stage_shares must be {len(STAGES)} shares summing to 1, got {cfg.stage_shares}")
    tokenizer = build_tokenizer(vocabulary())
    processor = build_processor(tokenizer, config)
    model = build_model(config, tokenizer, seed)
    collate = VQACollator(processor)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / max(1, cfg.warmup_steps)))
    stage_ends = np.cumsum(cfg.stage_shares) * cfg.steps
    model.train()
    start = time.perf_counter()
    losses = []
    bar = tqdm(range(cfg.steps), desc="pre-training the tiny LLaVA", disable=not progress)
    for step in bar:
        mixture = STAGES[min(int(np.searchsorted(stage_ends, step, side="right")), len(STAGES) - 1)]
        batch = curriculum_batch([seed, 100, step], cfg.batch_size, mixture, config.image_size,
                                 cfg.conflict_share)
        loss = answer_loss(model, collate(batch))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    seconds = time.perf_counter() - start
    accuracy = curriculum_accuracy(model, collate, [seed, 200], config.image_size)
    manifest = {"model_config": config.to_dict(), "pretrain_config": asdict(cfg), "seed": seed,
                "cache_version": CACHE_VERSION, "seconds": round(seconds, 1),
                "final_loss": float(np.mean(losses[-50:])), "heldout_accuracy": accuracy}
    return TinyLlava(model, processor, config, cfg, seed, manifest)


def curriculum_batch(seed, n: int, mixture: Mapping[str, float] | Sequence[str], image_size: int,
                     conflict_share: float = 0.25) -> list[VQAExample]:
    """``n`` fresh pre-training examples.

    Args:
        seed: an int or list of ints (numpy-style).
        n: number of examples.
        mixture: task weights (``{"describe": 0.7, ...}``), or task names drawn uniformly.
        image_size: side of the images in pixels.
        conflict_share: share of relation scenes with the subject on the misleading side.
    """
    if not isinstance(mixture, Mapping):
        mixture = {name: 1.0 for name in mixture}
    unknown = set(mixture) - set(PRETRAIN_TASKS)
    if unknown:
        raise ValueError(f"unknown pre-training tasks {sorted(unknown)}; known: {PRETRAIN_TASKS}")
    rng = np.random.default_rng(seed)
    task_names = list(mixture)
    weights = np.array([mixture[t] for t in task_names], dtype=float)
    names = [task_names[i] for i in rng.choice(len(task_names), size=n, p=weights / weights.sum())]
    # Relation scenes are drawn up front, one per task other than "describe" ("choose" draws
    # one it does not use): kept so that the data stream, hence a cached base, stays the same.
    n_relation = sum(name != "describe" for name in names)
    conflict = rng.random(n_relation) < conflict_share
    relation_scenes = []
    for i, flag in enumerate(conflict):
        items, images = generate_relations(1, [int(rng.integers(2**31)), i], "instance", bool(flag),
                                           image_size=image_size)
        relation_scenes.append((items, images[items[0].record["image"]]))
    out, r = [], 0
    for name in names:
        if name == "describe":
            out.append(_describe(rng, image_size))
        elif name == "choose":
            out.append(_choose(rng, image_size))
        else:
            items, image = relation_scenes[r]
            r += 1
            out.append(_relation_question(rng, name, items, image))
    return out


@torch.no_grad()
def curriculum_accuracy(model, collate: VQACollator, seed, image_size: int, n: int = 128
                        ) -> dict[str, float]:
    """Held-out teacher-forced accuracy per curriculum task.

    Returns:
        Per task, the share of examples whose answer words (EOS aside) are all predicted right;
        ``describe/shape`` is the accuracy of the caption's shape word alone (the hard one).
    """
    was_training = model.training
    model.eval()
    result = {}
    for k, name in enumerate(PRETRAIN_TASKS):
        batch = collate(curriculum_batch([*seed, k], n, (name,), image_size))
        logits = model(**{k2: v for k2, v in batch.items() if k2 != "labels"}).logits
        labels = batch["labels"][:, 1:]  # (B, T-1), aligned with the predictions below
        hit = logits[:, :-1].argmax(-1) == labels
        answer = (labels != -100) & (labels != collate.tokenizer.eos_token_id)
        result[name] = float((hit | ~answer).all(dim=1).float().mean())
        if name == "describe":
            # "a <size> <colour> <shape> ...": the shape is the third word after "a"
            shape_position = answer.int().cumsum(dim=1) == 4
            result["describe/shape"] = float(hit[shape_position & answer].float().mean())
    model.train(was_training)
    return result


def _single_object(rng: np.random.Generator, image_size: int, colours: Sequence[str]):
    """A one-object scene with every attribute independent: ``(image, attributes)``."""

    def pick(options):
        return options[int(rng.integers(len(options)))]

    attributes = {
        "Relative Size": pick(tuple(spurious.SIZES)),
        "shape": pick(scenes.SHAPES),
        "Colorization": pick(tuple(colours)),
        "Background": pick(spurious.SPURIOUS_VALUES["Background"]),
        "Texture and Noise": pick(scenes.TEXTURES),
        "Co-occurring Objects": pick(scenes.COMPANIONS),
    }
    jitter = rng.uniform(-0.05, 0.05, size=2)
    main = SceneObject(attributes["shape"], attributes["Colorization"], 0.5 + jitter[0],
                       0.42 + jitter[1], spurious.SIZES[attributes["Relative Size"]])
    mark = SceneObject(attributes["Co-occurring Objects"], "white", pick((0.14, 0.86)), 0.88, 0.2)
    scene = Scene((main, mark), attributes["Background"], attributes["Texture and Noise"])
    return render(scene, image_size), attributes


def _describe(rng: np.random.Generator, image_size: int) -> VQAExample:
    """A one-object scene and its full description."""
    image, a = _single_object(rng, image_size, tuple(scenes.OBJECT_COLOURS))
    answer = (f"a {a['Relative Size']} {a['Colorization']} {a['shape']} on a "
              f"{a['Texture and Noise']} {a['Background']} background with a {a['Co-occurring Objects']}")
    return VQAExample(image, "Describe the image.", answer, (), {"task": "describe", "attributes": a})


def _choose(rng: np.random.Generator, image_size: int) -> VQAExample:
    """A four-option question about one non-shape attribute, choices in a fixed order."""
    image, a = _single_object(rng, image_size, spurious.SPURIOUS_VALUES["Colorization"])
    kind = list(CHOICE_QUESTIONS)[int(rng.integers(len(CHOICE_QUESTIONS)))]
    values = spurious.SPURIOUS_VALUES[kind]
    choices = [f"{letter}. {v}" for letter, v in zip(spurious.LETTERS, values)]
    question = "\n".join([CHOICE_QUESTIONS[kind], *choices, formats.MC_INSTRUCTION])
    answer = spurious.LETTERS[values.index(a[kind])]
    return VQAExample(image, question, answer, spurious.LETTERS,
                      {"task": "choose", "attributes": a, "asked": kind})


def _relation_question(rng, name: str, items, image: np.ndarray) -> VQAExample:
    """A box question in the curriculum's own wording (no object names, unlike R-Bench's)."""
    if name == "where_box":
        item = items[0]  # the Positive question: its green box frames the real object
        subject, target = item.scene.objects[item.subject_index], item.target
        word = next(r for r in relations.RELATIONS if relations.relation_holds(subject, target, r))
        question = "Where is the object in the red box relative to the object in the green box?"
        return VQAExample(formats.draw_box(image, item.record), question, word.split()[0], (),
                          {"task": name, "item": item})
    if name == "yes_no_box":
        item = items[int(rng.integers(len(items)))]  # Positive, or Opposite / Random
        question = f"Is the object in the red box {item.relation} the object in the green box?"
        return VQAExample(formats.draw_box(image, item.record), question, item.record["label"], (),
                          {"task": name, "item": item})
    raise ValueError(f"unknown pre-training task {name!r}; known: {PRETRAIN_TASKS}")


def _frozen(base: TinyLlava) -> TinyLlava:
    base.model.eval()
    for p in base.model.parameters():
        p.requires_grad_(False)
    return base


def _save(base: TinyLlava, folder: Path) -> None:
    """Write to a temporary sibling, then rename: a concurrent reader never sees half a cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        base.model.save_pretrained(tmp)
        base.processor.save_pretrained(tmp)
        (tmp / "manifest.json").write_text(json.dumps(base.manifest, indent=1))
        os.replace(tmp, folder) if not folder.exists() else shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(folder: Path) -> TinyLlava:
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    manifest = json.loads((folder / "manifest.json").read_text())
    model = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager")
    processor = LlavaProcessor.from_pretrained(folder)
    settings = {**manifest["pretrain_config"]}
    settings["stage_shares"] = tuple(settings["stage_shares"])  # JSON made it a list
    return TinyLlava(model, processor, TinyLlavaConfig(**manifest["model_config"]),
                     PretrainConfig(**settings), manifest["seed"], manifest)
