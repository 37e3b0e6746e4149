"""One recommendation unlearning experiment: every method on the same request, every metric.

    from eraserlab.rec.experiment import run_experiment
    frame = run_experiment("movielens", "rc", ratio=0.1, seed=0, results_dir="results/")

For one dataset, task, ratio and seed:

1. the frozen base (pre-trained on held-out users, cached; or any local checkpoint,
   ``base_model=<path>``) gets a LoRA adapter, initialised from ``seed``;
2. **Corrupted**: the adapter trained on the corrupted (QM/RC) or full (IR) training set;
3. **Retrain**: the same initial adapter, config and seed, trained on the corrected / retained set;
4. **LLMEraser**: ``eraserlib.erase`` on Corrupted (solver ``"llmeraser"``), applied;
5. **Gradient ascent** (IR) or **fine-tuning on the corrected samples** (QM/RC), from Corrupted;
6. **SISA**: k shard adapters trained on a random partition, the shards the request touches
   retrained; predictions are the mean of the shards' predicted distributions;

then every model is evaluated on the same examples. The result is a tidy frame, one row per
method, also written (CSV and JSON, atomically) to ``results_dir``.

Columns: ``dataset, task, ratio, seed, method`` and

* next-item tasks: ``hit_ratio_at_1``, ``valid_ratio`` (greedy decoding, LLaRA's definitions),
  ``candidate_accuracy`` (the most likely candidate is the target);
* IR: ``auc`` (of P(yes)), ``accuracy`` (P(yes) > ½ agrees with the label);
* ``test_loss``: the training loss on the test examples;
* ``forget_loss``, ``forget_accuracy``: on the examples *as trained on* (corrupted versions;
  removed examples). For RC, accuracy means "still answers the wrong target";
* ``corrected_loss``, ``corrected_accuracy``: on their corrected versions (QM/RC);
* ``jsd_test``, ``jsd_corrected``: mean Jensen–Shannon divergence (bits) between the method's
  and Retrain's predicted distributions (20 candidates; or yes/no) on the test examples and on
  the corrected examples (IR: the removed examples);
* ``delta_cosine``, ``delta_norm_ratio``, ``delta_relative_error``: the method's change of the
  adapter against Retrain's change, both from Corrupted (NaN for SISA, whose adapters differ);
* ``time_s``, ``peak_memory_mb``, ``memory_kind``, ``time_what``: the cost of the method's own
  step (for Corrupted, training it), see :mod:`eraserlab.profiling`; ``setup_time_s``: SISA's
  initial training of all shards;
* ``n_train, n_request, n_test, threads, device, load_1min``: sizes and the machine's state
  (timings on a shared machine are inflated by its load).

Default sizes (:data:`PRESETS`): see :class:`ExperimentConfig` and the report in the book.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import eraserlib
from eraserlib import metrics
from eraserlib.baselines import SISA, finetune_on_corrected, gradient_ascent
from eraserlab.protocol import timed_sisa
from eraserlib.adapters import adapter_change, clone_adapter_model
from eraserlab.profiling import measure, resolve_device
from eraserlab.records import cost_columns, machine_load
from eraserlib.storage import jsonable, write_atomically
from eraserlab.rec import evaluate
from eraserlab.rec import metrics as rec_metrics
from eraserlab.rec.model import (
    LoraSettings,
    ModelConfig,
    Recommender,
    add_lora,
    load_local_model,
)
from eraserlab.rec.pretrain import (
    DATASET_TASKS,
    PretrainConfig,
    all_users,
    heldout_users,
    load_task_data,
    pretrain_base,
)
from eraserlab.rec.sasrec import HybridPromptModel, SASRecConfig, sasrec_item_embeddings, training_sequences
from eraserlab.rec.scenarios import Scenario, build_scenario, task_family
from eraserlab.rec.task import PromptEncoder, answer_loss
from eraserlib.training import TrainConfig, train

METHODS = ("corrupted", "retrain", "llmeraser", "gradient_ascent", "finetune", "sisa")
#: Methods that only make sense for one kind of request.
_ONLY_FOR = {"gradient_ascent": ("ir",), "finetune": ("qm_removal", "qm_replacement", "rc")}


@dataclass(frozen=True)
class ExperimentConfig:
    """Every size and hyper-parameter of an experiment.

    Attributes:
        model: The small Llama (ignored with ``base_model=<path>``).
        pretrain: How the small base is pre-trained.
        lora: The adapter.
        train: Training of Corrupted, Retrain and each SISA shard (seed replaced by the run's).
        max_train_per_user: Each task user's most recent training targets kept (CPU budget).
        max_train_users: Train on this many task users only (a fixed subset; None: all).
        max_test: Test examples evaluated (a fixed subset of task users; None: all).
        erase_batch_size: Examples per stochastic HVP of the solver (and per gradient chunk).
        erase_damping: λ, or "auto" (see :data:`PRESETS` for why a number).
        erase_options: Extra solver options (``top_eigenvalue``, ``first_window``, ``max_steps``...).
        sisa_shards: k.
        gradient_ascent_epochs: Passes of gradient ascent over the removed examples.
        gradient_ascent_lr: Its Adam learning rate.
        finetune_epochs: Epochs of fine-tuning on the corrected examples.
        finetune_lr: Its learning rate.
        eval_batch_size: Examples per evaluation pass.
        base_seed: Seeds the base (held-out users, init, batches); fixed across run seeds.
        data_seed: Seeds the candidates and the test subset; fixed across run seeds.
        hybrid: LLaRA's hybrid prompt (:mod:`~eraserlab.rec.sasrec`): each item in a prompt is
            followed by its projected SASRec embedding; the projector trains with the adapter
            and is erased with it. Off by default: it did not help at this size (see
            :data:`PRESETS` for the measurement).
        sasrec: The SASRec of the hybrid prompt (trained on the base's held-out users'
            training split, seeded by ``base_seed``, cached in the base's folder).
        projector: ``"mlp"`` (LLaRA's Linear–GELU–Linear) or ``"linear"``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=8, lr=2e-3, batch_size=16, weight_decay=1e-3, decay_to=0.0, max_grad_norm=1.0))
    max_train_per_user: int | None = 3
    max_train_users: int | None = None
    max_test: int | None = 500
    erase_batch_size: int = 16
    erase_damping: float | str = 0.2
    erase_options: dict = field(default_factory=lambda: {"top_eigenvalue": 4.0, "first_window": 4, "max_steps": 24})
    sisa_shards: int = 4
    gradient_ascent_epochs: int = 1
    gradient_ascent_lr: float = 2e-3
    finetune_epochs: int = 1
    finetune_lr: float = 2e-3
    eval_batch_size: int = 32
    base_seed: int = 0
    data_seed: int = 0
    hybrid: bool = False
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    projector: str = "mlp"

    def to_dict(self) -> dict:
        return asdict(self)


#: Named sizes: "small" is the laptop default (one seed of one task in about 3 minutes on 2
#: CPU cores once the base is cached), "tiny" runs in seconds (tests, smoke runs).
#:
#: Why the "small" values (measured on MovieLens, 2 shared CPU cores, seed 0; the report in the
#: book has the numbers):
#:
#: * 8 training epochs, not 3: computing b alone (gradients of the 2k old and new examples of a
#:   10% QM/RC request) costs 7% of a 3-epoch retraining, so an erase could not cost ≤ 1/10 of
#:   Retrain; after 8 epochs the adapter also fits its data more (RC: JSD Corrupted–Retrain 0.046
#:   / 0.108 bits on test / corrected examples, against 0.016 / 0.024 after 3 epochs). Four
#:   trainings (Corrupted, Retrain, SISA's fit and its retraining of all 4 shards, which a
#:   uniformly drawn 10% request always touches) then fill most of the 3 minutes.
#: * damping λ = 0.2 and 24 solver steps of 16 examples, with λ_max given (4.0): "auto" damping
#:   runs Lanczos on 4 batches × 20 iterations (80 mini-batch HVPs, more than the solve) and
#:   returned λ = 0.96–2.6 (its margin for the negative curvature of a non-converged adapter),
#:   which shrinks the update to 1% of Retrain's change: RC test / corrected JSD fell 9% / 12%.
#:   Fixed λ on the same request: 0.5 → 14% / 20%, 0.2 → 20% / 31%, 0.1 → 21% / 37%, 0.05 → the
#:   iteration blew up along negative curvature (JSD ×2.9 / ×1.4). 0.2 keeps a margin from that.
#:   λ_max was 3.7–5.9 by Lanczos on RC and 2.5 on IR; 4.0 sets the step 1/(λ_max + λ), and the
#:   heavy-ball iteration stays stable up to eigenvalues of about 12. With λ below the most
#:   negative curvature the quadratic is not convex and 24 steps do not converge (estimated
#:   relative change 0.5–0.7): the answer is an early-stopped, spectrally filtered estimate of
#:   (H + λI)⁻¹b, and it is reported as such.
#: * text prompts, not LLaRA's hybrid prompt (``hybrid=False``). Measured on MovieLens RC 10%,
#:   seeds 0 and 1, Corrupted / Retrain / LLMEraser, same settings otherwise (SASRec: the
#:   default :class:`~eraserlab.rec.sasrec.SASRecConfig`, MLP projector): Retrain's HR@1 was
#:   0.281 / 0.279 text-only and 0.281 / 0.285 hybrid (no gain), its test loss 2.966 / 2.953
#:   against 3.020 / 3.048 (worse), and the erase moved less of the way: test JSD to Retrain
#:   Corrupted → LLMEraser 0.0457 → 0.0363 and 0.0466 → 0.0366 text-only (−21%), 0.097 → 0.090
#:   and 0.078 → 0.077 hybrid (−8%, −1%); ΔΘ cosine with Retrain's change 0.26 / 0.30 against
#:   0.09 / 0.09. The projector (LLaRA's two layers, 6.3k parameters here) joins the erased
#:   parameters and is far from a minimum after 8 epochs. Rerun with
#:   ``run_experiment("movielens", "rc", config=dataclasses.replace(PRESETS["small"], hybrid=True))``.
PRESETS: dict[str, ExperimentConfig] = {
    "small": ExperimentConfig(),
    "tiny": ExperimentConfig(
        model=ModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, max_positions=256),
        pretrain=PretrainConfig(heldout_share=0.5, steps=4, batch_size=8, vocab_size=400, max_train_per_user=1),
        lora=LoraSettings(rank=2, alpha=4),
        train=TrainConfig(epochs=1, lr=2e-3, batch_size=8, weight_decay=1e-3, decay_to=0.0),
        max_train_per_user=1, max_train_users=48, max_test=8, erase_batch_size=8, erase_options={"max_steps": 24},
        sisa_shards=2, eval_batch_size=8, sasrec=SASRecConfig(dim=8, layers=1, epochs=2),
    ),
}


def load_base(dataset: str, config: ExperimentConfig, base_model: str | os.PathLike | None, device: torch.device,
              data_dir=None, cache_dir=None, progress: bool = True) -> Recommender:
    """The frozen base: the cached small model, or a local checkpoint (``base_model``).

    A local checkpoint was never trained on this data, but the same users are held out as for
    the small base (same ``base_seed``), so both models are evaluated on the same examples.
    """
    if base_model is None:
        return pretrain_base(dataset, data_dir, config.model, config.pretrain, seed=config.base_seed,
                             data_seed=config.data_seed, cache_dir=cache_dir, device=device, progress=progress)
    model, tokenizer = load_local_model(base_model, device)
    task_data = load_task_data(dataset, data_dir, max_train_per_user=0, data_seed=config.data_seed)
    held = heldout_users(all_users(task_data), config.pretrain.heldout_share, config.base_seed)
    return Recommender(model, tokenizer, {"path": os.fspath(base_model), "cache_hit": None, "heldout_users": held})


class _Evaluator:
    """Evaluates models on a scenario's examples; keeps each method's distributions for the JSDs."""

    def __init__(self, scenario: Scenario, encoder: PromptEncoder, batch_size: int, progress: bool):
        self.scenario = scenario
        self.encoder = encoder
        self.batch_size = batch_size
        self.progress = progress
        self.next_item = task_family(scenario.task) == "next_item"

    def _candidate_view(self, models, examples, targets) -> dict[str, Any]:
        """Candidate distributions, and loss/accuracy against ``targets`` (candidate ids)."""
        ll = evaluate.candidate_log_likelihoods(models, self.encoder, examples, self.batch_size)  # (M, E, C)
        distribution = evaluate.candidate_distributions(ll)  # (E, C)
        index = np.array([e.candidates.index(t) for e, t in zip(examples, targets)])
        lengths = np.array([len(self.encoder.answer_ids(t, e.candidate_titles[e.candidates.index(t)]))
                            for e, t in zip(examples, targets)])
        # per-model mean answer-token loss of the target, averaged over models (as evaluate.losses)
        target_ll = ll[:, np.arange(len(examples)), index].mean(0)
        return {"distribution": distribution, "loss": float(np.mean(-target_ll / lengths)),
                "accuracy": float(np.mean(distribution.argmax(1) == index))}

    def _preference_view(self, models, examples) -> dict[str, Any]:
        p_yes = evaluate.yes_probabilities(models, self.encoder, examples, self.batch_size)
        labels = np.array([e.label for e in examples])
        return {"distribution": metrics.bernoulli_distributions(p_yes), "p_yes": p_yes, "labels": labels,
                "loss": float(np.mean(evaluate.losses(models, self.encoder, examples, self.batch_size))),
                "accuracy": float(np.mean((p_yes > 0.5) == (labels == 1)))}

    def __call__(self, models) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        s = self.scenario
        row: dict[str, float] = {}
        distributions: dict[str, np.ndarray] = {}
        if self.next_item:
            answers = evaluate.greedy_answers(models, self.encoder, s.test, batch_size=self.batch_size * 2)
            candidates = [e.candidate_titles for e in s.test]
            row["hit_ratio_at_1"] = rec_metrics.hit_ratio_at_1(answers, candidates, [e.target_title for e in s.test])
            row["valid_ratio"] = rec_metrics.valid_ratio(answers, candidates)
            test = self._candidate_view(models, s.test, [e.target for e in s.test])
            row.update(candidate_accuracy=test["accuracy"], test_loss=test["loss"])
            forget = self._candidate_view(models, s.forget, [e.target for e in s.forget])
            corrected = self._candidate_view(models, s.corrected, [e.target for e in s.corrected])
            row.update(forget_loss=forget["loss"], forget_accuracy=forget["accuracy"],
                       corrected_loss=corrected["loss"], corrected_accuracy=corrected["accuracy"])
        else:
            test = self._preference_view(models, s.test)
            row.update(auc=metrics.auc(test["labels"], test["p_yes"]), accuracy=test["accuracy"],
                       test_loss=test["loss"])
            forget = self._preference_view(models, s.forget)
            row.update(forget_loss=forget["loss"], forget_accuracy=forget["accuracy"])
            corrected = forget
        distributions["test"] = test["distribution"]
        distributions["corrected"] = corrected["distribution"]
        return row, distributions


def run_experiment(
    dataset: str = "movielens",
    task: str = "qm_removal",
    ratio: float = 0.1,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    model_size: str = "small",
    device: str | torch.device | None = "auto",
    data_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    base_model: str | os.PathLike | None = None,
    config: ExperimentConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every method on one unlearning request and evaluate them all (see the module docstring).

    Args:
        dataset: ``"movielens"``, ``"lastfm"`` (QM/RC) or ``"bookcrossing"`` (IR).
        task: ``"ir"``, ``"qm_removal"``, ``"qm_replacement"`` or ``"rc"``.
        ratio: Share of the training examples the request touches.
        methods: Subset of :data:`METHODS` (default: all that apply to the task; Corrupted is
            always run, every other method starts from it or is compared with it).
        seed: Seeds the corruption, the adapter's initialisation, the data order, the solver and
            SISA's shards. The base and the candidates do not change with it.
        model_size: A key of :data:`PRESETS` (``"small"``, ``"tiny"``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        data_dir: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        results_dir: Where to write ``<dataset>-<task>-<ratio>-seed<seed>.csv`` / ``.json``
            (``None``: nothing is written).
        base_model: A local Hugging Face causal-LM folder to use instead of the small base.
        config: Overrides the preset entirely.
        cache_dir: Where pre-trained bases are cached (default ``<repo>/.cache/rec``).
        progress: Show progress bars.

    Returns:
        The tidy results frame, one row per method.
    """
    if dataset not in DATASET_TASKS:
        raise ValueError(f"Unknown dataset {dataset!r}; one of {sorted(DATASET_TASKS)}.")
    family = task_family(task)
    if family not in DATASET_TASKS[dataset]:
        raise ValueError(f"{dataset} has no {family} task, so it cannot run {task!r}: "
                         f"use one of {[t for t in ('ir', 'qm_removal', 'qm_replacement', 'rc') if task_family(t) in DATASET_TASKS[dataset]]}.")
    if config is None:
        if model_size not in PRESETS:
            raise ValueError(f"Unknown model_size {model_size!r}; one of {sorted(PRESETS)}.")
        config = PRESETS[model_size]
    methods = _resolve_methods(task, methods)
    device = resolve_device(device)
    started = time.perf_counter()

    base = load_base(dataset, config, base_model, device, data_dir, cache_dir, progress)
    data = load_task_data(dataset, data_dir, config.max_train_per_user, config.data_seed, tasks=(family,))[family]
    scenario = build_scenario(task, data, ratio, seed, base.info["heldout_users"], config.max_test, config.data_seed,
                              max_train_users=config.max_train_users)
    item_text = config.pretrain.item_text if base_model is None else "title"
    train_config = dataclasses.replace(config.train, seed=seed)
    template = add_lora(base.model, config.lora, seed)
    if config.hybrid:
        template, extra_hybrid = _add_hybrid_prompt(template, dataset, family, data, base, base_model, config, data_dir,
                                                    seed, progress)
    encoder = PromptEncoder(base.tokenizer, dataset, data.item_titles, item_text=item_text,
                            max_length=getattr(base.model.config, "max_position_embeddings", 4096),
                            item_embedding_offset=template.offset if config.hybrid else None)

    def make_model():
        return clone_adapter_model(template)

    models: dict[str, list] = {}
    costs: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {"erase": None, "sisa": None, "hybrid": extra_hybrid if config.hybrid else None}
    bar = tqdm(methods, desc=f"{dataset} {task} seed {seed}", disable=not progress)
    for method in bar:
        bar.set_postfix(method=method)
        if method in ("corrupted", "retrain"):
            model = make_model()
            examples, what = ((scenario.train, "train on the corrupted/full training set") if method == "corrupted"
                              else (scenario.retrain_data, "retrain on the corrected training set"))
            with measure(device) as usage:
                train(model, answer_loss, examples, train_config, collate_fn=encoder, progress=progress,
                      description=method.capitalize())
            models[method], costs[method] = [model], cost_columns(usage, what)
        elif method == "llmeraser":
            model = clone_adapter_model(models["corrupted"][0])
            with measure(device) as usage:
                result = eraserlib.erase(model, answer_loss, scenario.train, scenario.request, solver="llmeraser",
                                         weight_decay=train_config.weight_decay, damping=config.erase_damping,
                                         collate_fn=encoder, batch_size=config.erase_batch_size, seed=seed,
                                         progress=progress, options=config.erase_options)
                eraserlib.apply_delta(model, result.delta)
            extra["erase"] = dict(result.diagnostics)  # made JSON-safe when the record is written
            models[method], costs[method] = [model], cost_columns(usage, "erase (influence update) and apply")
        elif method == "gradient_ascent":
            model = clone_adapter_model(models["corrupted"][0])
            steps = config.gradient_ascent_epochs * math.ceil(len(scenario.forget) / train_config.batch_size)
            with measure(device) as usage:
                gradient_ascent(model, answer_loss, scenario.forget, steps=steps, lr=config.gradient_ascent_lr,
                                batch_size=train_config.batch_size, collate_fn=encoder, seed=seed, progress=progress)
            models[method], costs[method] = [model], cost_columns(usage, "gradient ascent on the removed examples")
        elif method == "finetune":
            model = clone_adapter_model(models["corrupted"][0])
            finetune_config = dataclasses.replace(train_config, epochs=config.finetune_epochs, lr=config.finetune_lr)
            with measure(device) as usage:
                finetune_on_corrected(model, answer_loss, scenario.corrected, finetune_config, collate_fn=encoder,
                                      progress=progress)
            models[method], costs[method] = [model], cost_columns(usage, "fine-tune on the corrected examples")
        elif method == "sisa":
            sisa = SISA(make_model, answer_loss, config.sisa_shards, train_config, collate_fn=encoder, seed=seed,
                        progress=progress)
            usage, extra["sisa"] = timed_sisa(sisa, scenario.train, scenario.request, device)
            models[method] = sisa.models
            costs[method] = {**cost_columns(usage, f"retrain {len(extra['sisa']['affected_shards'])} of "
                                                   f"{config.sisa_shards} shards"),
                             "setup_time_s": extra["sisa"]["fit_time_s"]}

    evaluator = _Evaluator(scenario, encoder, config.eval_batch_size, progress)
    rows, distributions = {}, {}
    for method in tqdm(methods, desc="evaluate", disable=not progress, leave=False):
        rows[method], distributions[method] = evaluator(models[method])
    reference = adapter_change(models["retrain"][0], models["corrupted"][0]) if "retrain" in models else None
    for method in methods:
        row = rows[method]
        if "retrain" in distributions:
            for split in ("test", "corrected"):
                row[f"jsd_{split}"] = float(np.mean(metrics.jensen_shannon_divergence(
                    distributions[method][split], distributions["retrain"][split])))
        if reference is not None and method != "sisa":
            change = adapter_change(models[method][0], models["corrupted"][0])
            row["delta_cosine"] = metrics.delta_cosine(change, reference)
            row["delta_norm_ratio"] = metrics.delta_norm_ratio(change, reference)
            row["delta_relative_error"] = metrics.delta_relative_error(change, reference)

    load = machine_load()
    frame = pd.DataFrame([
        {"dataset": dataset, "task": task, "ratio": ratio, "seed": seed, "method": method,
         **rows[method], **costs[method],
         "n_train": len(scenario.train), "n_request": len(scenario.request), "n_test": len(scenario.test),
         "model": model_size if base_model is None else os.fspath(base_model), "item_text": item_text,
         "hybrid": config.hybrid,
         "threads": torch.get_num_threads(), "device": str(device), "load_1min": load}
        for method in methods
    ])
    if results_dir is not None:
        stem = f"{dataset}-{task}-{ratio:g}-seed{seed}"
        results_dir = Path(results_dir)
        write_atomically(results_dir / f"{stem}.csv", frame.to_csv(index=False))
        record = {
            "rows": json.loads(frame.to_json(orient="records")),
            "config": jsonable(config.to_dict()), "scenario_notes": list(scenario.notes),
            "data_notes": list(data.notes), "base": jsonable({k: v for k, v in base.info.items() if k != "heldout_users"}),
            "heldout_users": len(base.info["heldout_users"]), "erase_diagnostics": jsonable(extra["erase"]),
            "sisa": jsonable(extra["sisa"]), "hybrid": jsonable(extra["hybrid"]), "total_time_s": time.perf_counter() - started,
            "torch": torch.__version__,
        }
        write_atomically(results_dir / f"{stem}.json", json.dumps(record, indent=1))
    return frame


def _add_hybrid_prompt(model, dataset: str, family: str, data, base: Recommender, base_model, config: ExperimentConfig,
                       data_dir, seed: int, progress: bool):
    """Wrap the LoRA model for LLaRA's hybrid prompt: SASRec (held-out users' training split) + projector.

    SASRec sees the *full* training split of the held-out users (not the experiment's
    ``max_train_per_user`` cap, which only limits the LLM's training targets), and nothing of
    the task users, so no request touches it (see :mod:`eraserlab.rec.sasrec`).
    """
    start = time.perf_counter()
    full = load_task_data(dataset, data_dir, None, config.data_seed, tasks=(family,))[family]
    sequences = training_sequences(full.train, base.info["heldout_users"])
    cache = Path(base.info["path"]) if base_model is None else None  # beside the cached base
    table, info = sasrec_item_embeddings(sequences, max(data.item_titles) + 1, config.sasrec, seed=config.base_seed,
                                         cache_dir=cache, progress=progress)
    hybrid = HybridPromptModel(model, table, config.projector, seed)
    info = {**info, "setup_time_s": time.perf_counter() - start, "projector": config.projector,
            "projector_parameters": sum(p.numel() for p in hybrid.projector.parameters())}
    return hybrid, info


def _resolve_methods(task: str, methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        methods = [m for m in METHODS if task in _ONLY_FOR.get(m, (task,))]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {METHODS}.")
    for m in methods:
        if task not in _ONLY_FOR.get(m, (task,)):
            raise ValueError(f"{m!r} applies to {_ONLY_FOR[m]} only, not to {task!r}.")
    # Corrupted first (the others start from it or compare with it), then the given order.
    return ["corrupted"] + [m for m in METHODS if m in methods and m != "corrupted"]
