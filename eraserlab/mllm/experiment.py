"""One multimodal unlearning experiment: every method on the same request, every metric.

    from eraserlab.mllm.experiment import run_experiment
    frame = run_experiment("spurious", "rc", ratio=0.4, seed=0, results_dir="results/")

For one benchmark, task, ratio and seed:

the frozen base (the tiny LLaVA pre-trained on its own curriculum, cached; or a local LLaVA
checkpoint, ``base_model=<path>``) gets a LoRA adapter initialised from ``seed``, and the request
is made: ``"rc"`` flips the answers of a share ``ratio`` of the training questions (response
correction; the paper flips 40%), ``"qm"`` corrupts their queries (``config.query_corruption``:
by default the image is redrawn so that it contradicts the kept answer; query modification).
The shared protocol (:mod:`eraserlab.protocol`) then runs every method: **Corrupted** (trained
on the corrupted training set), **K retrains** on the clean set (the first, **Retrain**, from
the same initial adapter and data order; the others with seeds of their own), **LLMEraser**
(``eraserlib.erase`` on Corrupted, applied), **fine-tuning on the corrected examples**,
**gradient ascent** on the corrupted examples as trained on (the usual "forget these examples"
baseline: it never sees the corrections, so it can only push the model away from the wrong
answers), **SISA** (k shard adapters, the touched shards retrained, answers from the mean of
the shards' distributions) and any baseline registered in :mod:`eraserlab.protocol.methods`;
every model is evaluated on the same examples (:mod:`eraserlab.mllm.evaluator`) and compared
with the retrains. The result is a tidy frame, one row per method, also written (CSV,
comparison CSV and JSON, atomically) to ``results_dir``.

Columns: ``benchmark, task, ratio, seed, method, eval_split``, the evaluator's metrics
(:mod:`eraserlab.mllm.evaluator`: the benchmark's accuracies, ``test_loss``,
``conflict_accuracy``, ``worst_group_accuracy``, ``corrected_*``, ``forget_*``), and

* ``jsd_test``, ``jsd_corrected``, ``jsd_conflict``: mean Jensen–Shannon divergence (bits)
  between the method's and Retrain's (the run seed's) answer distributions (4 letters; Yes/No);
* ``delta_cosine``, ``delta_norm_ratio``, ``delta_relative_error``: the method's change of the
  adapter against Retrain's change, both from Corrupted (NaN for SISA, whose adapters differ);
* the comparison with the K retrains (:mod:`eraserlab.protocol.compare`): ``r/<d>``,
  ``r_low/<d>``, ``r_high/<d>``, ``d_ur/<d>``, ``d_rr/<d>``, ``d_or/<d>``, ``effect/<d>``,
  ``effect_resolved``/``effect_note``, ``z/forget_loss``, ``z/forget_accuracy``, for the
  distances ``jsd_test``, ``jsd_corrected``, ``jsd_conflict`` (where there is a conflict set),
  ``forget_loss``; ``retrains`` (K) and ``retrains_extra_time_s``;
* ``certificate_ratio`` and its norms and time, for the erase (:mod:`eraserlib.certificate`);
* ``time_s``, ``peak_memory_mb``, ``memory_kind``, ``time_what``: the cost of the method's own
  step (for Corrupted and Retrain, their training), see :mod:`eraserlab.profiling`;
  ``setup_time_s``: SISA's initial training of all shards; ``eval_time_s``: the evaluation;
* ``n_train, n_request, n_test, n_conflict, model, threads, device, load_1min``: sizes and the
  machine's state (timings on a shared machine are inflated by its load);
* ``constant_accuracy`` (the test accuracy of always giving the split's commonest answer),
  ``retrain_accuracy`` and ``task_learnt``: whether Retrain beats that by :data:`LEARNT_MARGIN`.
  A base that learnt nothing of the task (on one machine the base's yes/no box questions
  stayed at chance through pre-training, and every retrain answered "Yes") makes every method
  agree on noise: the run warns (:class:`UnlearntTaskWarning`) and its verdicts read "not judged".

Default sizes and settings: :data:`PRESETS`, with the evidence behind them.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

import eraserlib
from eraserlib.adapters import clone_adapter_model
from eraserlib.training import TrainConfig
from eraserlab import erase_settings, protocol
from eraserlab.mllm import corruptions, formats, relations, spurious
from eraserlab.mllm.evaluator import Evaluator, OnDevice
from eraserlab.mllm.finetune import LORA_ALPHA, LORA_RANK, finetune_config, new_adapter
from eraserlab.mllm.model import TinyLlavaConfig
from eraserlab.mllm.pretrain import PretrainConfig, TinyLlava, cache_key, load_or_pretrain
from eraserlab.mllm.tasks import VQACollator, VQAExample, answer_loss, split_by_image
from eraserlab.profiling import resolve_device
from eraserlab.protocol import MethodSettings, SettingsAliases

BENCHMARKS = ("spurious", "relation")
TASKS = ("rc", "qm")
#: The protocol's request kind of each task.
REQUEST_KINDS = {"rc": eraserlib.ResponseCorrection.kind, "qm": eraserlib.QueryModification.kind}
#: Every method registered for this arm; a task runs those that apply to its request (:mod:`eraserlab.protocol.methods`).
METHODS = protocol.method_names("mllm")
EVAL_SPLITS = ("test", "val")
#: The solver's budget of the small preset's erases (see PRESETS for why).
SMALL_ERASE_OPTIONS = {"top_eigenvalue": 20.0, "max_steps": 128}
#: The Gauss–Newton erases' settings chosen by ``benchmarks/erase_selection.py`` (none: the Hessian erase's).
ERASE_CHOSEN, ERASE_EVIDENCE = erase_settings.chosen("mllm")


@dataclass(frozen=True)
class ExperimentConfig(SettingsAliases):
    """Every size and hyper-parameter of an experiment.

    Attributes:
        model: Sizes of the tiny LLaVA (ignored with ``base_model=<path>``).
        pretrain: How the tiny base is pre-trained (cached on disk).
        base_seed: Seeds the base (initialisation and curriculum); fixed across run seeds.
        data_seed: Seeds the generated benchmark and its split; fixed across run seeds, so
            seeds differ by the request, the adapter's initialisation, the data order, the
            solver and SISA's shards, and every seed is scored on the same questions.
        spurious_images: Images (one question each) of the spurious benchmark's main pool,
            split 60/20/20.
        spurious_conflict_images: Images of its conflict set.
        relation_images: Images (two questions each) of the relation benchmark's main pool.
        relation_conflict_images: Images of its conflict set.
        relation_level: ``"instance"`` (boxes; the main family) or ``"image"``.
        query_corruption: The QM corruption, one of ``corruptions.QUERY_CORRUPTIONS``.
        lora_rank: LoRA rank r (every linear layer of the language model).
        lora_alpha: LoRA scale numerator.
        train: Training of Corrupted, the retrains and each SISA shard (seed replaced by the
            run's; a retrain's by its own).
        settings: The methods' settings, shared with the recommendation arm
            (:class:`~eraserlab.protocol.MethodSettings`: erase solver, λ (see :data:`PRESETS`
            for why a number) and options, SISA's k, gradient ascent, fine-tuning, the K
            retrains); ``config.erase_damping`` and the other former flat names still read them.
        eval_batch_size: Examples per evaluation forward pass.
    """

    model: TinyLlavaConfig = field(default_factory=TinyLlavaConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    base_seed: int = 0
    data_seed: int = 0
    spurious_images: int = 1000
    spurious_conflict_images: int = 500
    relation_images: int = 500
    relation_conflict_images: int = 200
    relation_level: str = "instance"
    query_corruption: str = "swap"
    lora_rank: int = LORA_RANK
    lora_alpha: int = LORA_ALPHA
    train: TrainConfig = field(default_factory=finetune_config)
    settings: MethodSettings = field(default_factory=lambda: MethodSettings(
        erase_damping=3.0, erase_options=dict(SMALL_ERASE_OPTIONS),
        **{"gauss_newton_damping": 3.0, "gauss_newton_options": dict(SMALL_ERASE_OPTIONS), **ERASE_CHOSEN},
        selection=ERASE_EVIDENCE))
    eval_batch_size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


#: Named sizes: ``"small"`` is the laptop default (the default book runs it), ``"tiny"`` runs in
#: seconds (tests, smoke runs; its base is pre-trained from scratch in about a second and learns
#: next to nothing).
#:
#: Why the "small" erase settings. Chosen on the *validation* split (``eval_split="val"``
#: measures the same), never the test split, over seeds 0-2 of each benchmark with 40% of the
#: answers flipped, among λ ∈ {2, 3, 5, "auto"} at 128 steps of 16 examples, by the reduction
#: of the answers' JSD to Retrain and the solver's convergence estimate: λ = 3 was the one
#: setting closest to Retrain on the spurious-shape benchmark that also converged on the
#: relation benchmark; smaller λ diverged on the spurious-shape benchmark, and more steps did
#: not converge further (the iterate drifts along directions whose curvature is close to −λ).
#: "auto" damping cost a Lanczos run more, and its λ_max from four mini-batches was far below
#: the full data's, so the step 1/(λ_max + λ) was too long and the solver diverged:
#: ``top_eigenvalue`` = 20 is safe for both benchmarks. Batches of 32 gave the same answers as
#: 16 at twice the cost a step. Fine-tuning on the corrected samples and gradient ascent run one
#: epoch at the training learning rate, untuned. The Gauss–Newton erases take the Hessian erase's
#: damping and budget (the two curvatures compared at the same cost), unless
#: ``benchmarks/erase_selection.py`` has written a choice to :mod:`eraserlab.erase_settings`.
#: These choices were made on the base pre-trained at lr 2e-3 (where it learnt the relation
#: task); the base's lr is 1e-3 since (see ``PretrainConfig.lr``), and they were not chosen again.
PRESETS: dict[str, ExperimentConfig] = {
    "small": ExperimentConfig(),
    "tiny": ExperimentConfig(
        model=TinyLlavaConfig(vision_hidden_size=32, vision_intermediate_size=64, vision_layers=1, vision_heads=2,
                              hidden_size=32, intermediate_size=64, layers=1, heads=2),
        pretrain=PretrainConfig(steps=40, batch_size=16, warmup_steps=5),
        spurious_images=60, spurious_conflict_images=20, relation_images=30, relation_conflict_images=10,
        lora_rank=2, lora_alpha=4,
        train=finetune_config(epochs=1, batch_size=8, warmup_steps=2),
        settings=MethodSettings(erase_damping=3.0, erase_batch_size=8,
                                erase_options={"top_eigenvalue": 20.0, "max_steps": 16}, sisa_shards=2,
                                gauss_newton_damping=3.0,
                                gauss_newton_options={"top_eigenvalue": 20.0, "max_steps": 16}),
        eval_batch_size=32,
    ),
}


#: The test metric that says whether a model answers the benchmark at all.
ACCURACY_COLUMNS = {"spurious": "accuracy/All", "relation": "accuracy"}
#: How far Retrain's test accuracy must exceed the commonest answer's share for the run to judge anything.
LEARNT_MARGIN = 0.05


class UnlearntTaskWarning(UserWarning):
    """Retrain answers the benchmark no better than a constant answer: the run's comparisons judge nothing."""


def constant_accuracy(examples: Sequence[VQAExample]) -> float:
    """The accuracy of always giving the commonest answer of ``examples`` (the best constant answer)."""
    counts = collections.Counter(e.answer for e in examples)
    return max(counts.values()) / len(examples) if examples else math.nan


def task_learnt(benchmark: str, retrain_row: dict, test: Sequence[VQAExample]) -> dict:
    """The frame's ``constant_accuracy``, ``retrain_accuracy``, ``task_learnt``; warns when the task was not learnt."""
    constant, accuracy = constant_accuracy(test), float(retrain_row[ACCURACY_COLUMNS[benchmark]])
    learnt = bool(accuracy >= constant + LEARNT_MARGIN)
    if not learnt:
        warnings.warn(
            f"Retrain's test accuracy on {benchmark} is {accuracy:.3f}, against {constant:.3f} for always giving the "
            f"commonest answer: the model did not learn the task (look at the base's held-out accuracies in its "
            f"manifest), so no method can be judged on this run.", UnlearntTaskWarning, stacklevel=3)
    return {"constant_accuracy": constant, "retrain_accuracy": accuracy, "task_learnt": learnt}


def load_base(config: ExperimentConfig, base_model: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, progress: bool = True) -> TinyLlava:
    """The frozen base: the cached tiny LLaVA (pre-trained if absent), or a local checkpoint.

    Args:
        config: The experiment's settings (model sizes, pre-training, base seed).
        base_model: A local folder with a ``LlavaForConditionalGeneration`` checkpoint and its
            processor (``save_pretrained`` layout), e.g. LLaVA-1.5-7B; loaded with eager
            attention (the eraser's Hessian-vector products need a double backward).
        cache_dir: Where tiny bases are cached (default ``<repo>/.cache/mllm``).
        progress: Show the pre-training progress bar.

    Returns:
        The base with every parameter frozen.
    """
    if base_model is None:
        return load_or_pretrain(config.model, config.pretrain, config.base_seed, cache_dir, progress)
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(base_model, attn_implementation="eager")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    manifest = {"path": os.fspath(base_model)}
    return TinyLlava(model, AutoProcessor.from_pretrained(base_model), config.model, config.pretrain,
                     config.base_seed, manifest)


def load_benchmark(benchmark: str, config: ExperimentConfig,
                   data_dir: str | os.PathLike | None = None) -> dict[str, list[VQAExample]]:
    """The benchmark's splits: generated (the default) or read from the real files.

    Args:
        benchmark: ``"spurious"`` or ``"relation"``.
        config: Sizes and the data seed of generated benchmarks; the level of R-Bench's files.
        data_dir: A folder in MM-SpuBench's (``annotation.json`` + ``images/``) or R-Bench's
            layout (``formats``); split 60/20/20 by image with ``config.data_seed``. Real data
            has no conflict set: its ``"conflict"`` list is empty and the conflict columns NaN.

    Returns:
        ``{"train", "val", "test", "conflict"}`` lists of examples.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {benchmark!r}; one of {BENCHMARKS}.")
    if data_dir is None:
        if benchmark == "spurious":
            return spurious.spurious_task(config.data_seed, n_images=config.spurious_images,
                                          n_conflict=config.spurious_conflict_images,
                                          image_size=config.model.image_size)
        return relations.relation_task(config.data_seed, n_images=config.relation_images, level=config.relation_level,
                                       n_conflict_images=config.relation_conflict_images,
                                       image_size=config.model.image_size)
    root = Path(data_dir)
    if benchmark == "spurious":
        examples = formats.mmspubench_examples(formats.read_mmspubench(root), root)
    else:
        # R-Bench's five subset files name questions of the whole file, most of which fall
        # outside the test split: the scorer averages over five random halves of the split.
        records, _ = formats.read_rbench(root, config.relation_level)
        examples = formats.rbench_examples(records, root, config.relation_level)
    task = split_by_image(examples, config.data_seed)
    task["conflict"] = []
    return task


def run_experiment(
    benchmark: str = "spurious",
    task: str = "rc",
    ratio: float = 0.4,
    *,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    preset: str = "small",
    device: str | torch.device | None = "cpu",
    results_dir: str | os.PathLike | None = None,
    config: ExperimentConfig | None = None,
    eval_split: str = "test",
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    base_model: str | os.PathLike | None = None,
    progress: bool = True,
    retrains: int | None = None,
    request_seed: int | None = None,
    retrain_pool: protocol.RetrainPool | None = None,
    leave_out: Sequence[str] = (),
) -> pd.DataFrame:
    """Run every method on one unlearning request and judge them against K retrains (module docstring).

    Args:
        benchmark: ``"spurious"`` (MM-SpuBench-like) or ``"relation"`` (R-Bench-like).
        task: ``"rc"`` (response correction: answers flipped) or ``"qm"`` (query modification).
        ratio: Share of the training questions the request touches (the paper: 0.4, RC).
        methods: Registered method names (default: all that apply; Corrupted is always run,
            every other method starts from it or is compared with it; without ``"retrain"``
            nothing is compared).
        seed: Seeds the corruption, the adapter's initialisation, the data order, the solver and
            SISA's shards. The base and the benchmark do not change with it.
        preset: A key of :data:`PRESETS` (``"small"``, ``"tiny"``).
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when present).
        results_dir: Where to write ``<benchmark>-<task>-<ratio>-seed<seed>.csv`` / ``-comparison.csv`` / ``.json``
            (``-val`` appended for ``eval_split="val"``; None: nothing is written).
        config: Overrides the preset entirely.
        eval_split: ``"test"``, or ``"val"`` to choose settings without looking at the test split
            (the columns keep their names; ``eval_split`` says which split they describe).
        cache_dir: Where tiny bases are cached (default ``<repo>/.cache/mllm``).
        data_dir: Read the real benchmark's files from here instead of generating it.
        base_model: A local LLaVA checkpoint to use instead of the tiny base.
        progress: Show progress bars.
        retrains: K, the retrains (default ``config.settings.retrain_seeds``).
        request_seed: Seeds the corruption instead of ``seed`` (None: ``seed``). Fix it across run
            seeds to repeat one request, so that the seeds differ only by what training varies and
            can share their retrains (``retrain_pool``).
        retrain_pool: Retrains shared by the run seeds of one request (see
            :class:`eraserlab.protocol.RetrainPool`).
        leave_out: Methods not to run when ``methods`` is None (a budget's cut: the default
            book runs the re-linearised erase in some chapters only).

    Returns:
        The tidy results frame, one row per method.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {benchmark!r}; one of {BENCHMARKS}.")
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; one of {TASKS}.")
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"Unknown eval_split {eval_split!r}; one of {EVAL_SPLITS}.")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}.")
    if config is None:
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}; one of {sorted(PRESETS)}.")
        config = PRESETS[preset]
    methods = protocol.resolve_methods("mllm", REQUEST_KINDS[task], methods, task=task, leave_out=leave_out)
    device = resolve_device(device)
    started = time.perf_counter()

    base = load_base(config, base_model, cache_dir, progress)
    data = load_benchmark(benchmark, config, data_dir)
    requested = seed if request_seed is None else request_seed
    if task == "rc":
        corruption = corruptions.flip_answers(data["train"], ratio, requested)
        request = eraserlib.ResponseCorrection(corruption.old, corruption.new)
    else:
        corruption = corruptions.corrupt_queries(data["train"], ratio, requested, kind=config.query_corruption)
        request = eraserlib.QueryModification(corruption.old, corruption.new)
    if not corruption.old:
        raise ValueError(f"ratio {ratio} of {len(data['train'])} training questions touches none of them.")
    scenario = protocol.Scenario(train=corruption.train, request=request, retrain_data=data["train"],
                                 forget=corruption.old, corrected=corruption.new, test=data[eval_split],
                                 extra={"conflict": data["conflict"]})
    collate = OnDevice(VQACollator(base.processor), device)
    template = new_adapter(base, seed, r=config.lora_rank, alpha=config.lora_alpha).to(device)
    context = protocol.Context(scenario, _model_factory(template), answer_loss,
                               dataclasses.replace(config.train, seed=seed), config.settings, collate_fn=collate,
                               device=device, seed=seed, progress=progress)
    evaluator = Evaluator(collate, scenario, config.eval_batch_size, _group_columns(data))
    outcome = protocol.run_protocol(context, evaluator, methods, retrains=retrains, pool=retrain_pool)
    if "retrain" in outcome.rows:
        outcome.setting.update(task_learnt(benchmark, outcome.rows["retrain"], scenario.test))
    frame = protocol.tidy_frame(
        outcome, head={"benchmark": benchmark, "task": task, "ratio": ratio, "seed": seed, "request_seed": requested},
        lead={"eval_split": eval_split}, device=device,
        tail={**scenario.sizes(), "n_conflict": len(data["conflict"]), "corruption": corruption.kind,
              "model": preset if base_model is None else os.fspath(base_model)})
    if results_dir is not None:
        record = {"config": config.to_dict(), "base": base.manifest,
                  "base_cache_key": cache_key(config.model, config.pretrain, config.base_seed) if base_model is None
                  else None, "request_indices": corruption.indices, **outcome.record,
                  "total_time_s": time.perf_counter() - started, "torch": torch.__version__}
        stem = f"{benchmark}-{task}-{ratio:g}-seed{seed}" + ("-val" if eval_split == "val" else "")
        protocol.write_run(results_dir, stem, frame, record)
    return frame


def _model_factory(template: torch.nn.Module):
    """``make_model(s)``: a copy of the template (base shared) with its LoRA matrices drawn from ``s``.

    Every seed, the run's own included, redraws A as peft initialises it (Kaiming-uniform,
    a = √5) from a generator seeded by ``s``, and B = 0, so the adapted model starts equal to
    the base as every adapter here does, and the adapter of seed s is the same whichever run
    draws it (retrains can be shared between runs, :class:`eraserlab.protocol.RetrainPool`). The
    base is never copied (a 7B checkpoint would not fit twice).
    """

    def make_model(s: int) -> torch.nn.Module:
        model = clone_adapter_model(template)
        generator = torch.Generator().manual_seed(s)
        with torch.no_grad():
            for module in model.modules():
                for name, a in getattr(module, "lora_A", {}).items():
                    drawn = torch.empty(a.weight.shape)
                    torch.nn.init.kaiming_uniform_(drawn, a=math.sqrt(5), generator=generator)
                    a.weight.copy_(drawn)
                    module.lora_B[name].weight.zero_()
        return model

    return make_model


def _group_columns(data: dict[str, list[VQAExample]]) -> list[str]:
    """Per-group accuracy columns of the benchmark, whichever groups the evaluated split holds.

    A small split can miss a spurious type or a question type; the frame keeps the column (NaN)
    so that frames of different runs concatenate into one tidy table.
    """
    examples = [e for part in ("train", "val", "test") for e in data[part]]
    if examples[0].meta.get("benchmark") == "mm-spubench":
        groups = dict.fromkeys(t for e in examples for t in e.meta["types"])
    else:
        groups = dict.fromkeys(e.meta["qtype"] for e in examples)
    return [f"accuracy/{g}" for g in groups]
