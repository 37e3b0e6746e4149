"""One recommendation unlearning experiment: every method on the same request, judged against retraining.

    from eraserlab.rec.experiment import run_experiment
    frame = run_experiment("movielens", "rc", ratio=0.1, seed=0, results_dir="results/")

For one dataset, task, ratio and seed: the frozen base (pre-trained on held-out users, cached;
or any local checkpoint, ``base_model=<path>``) gets a LoRA adapter initialised from ``seed``,
the scenario (:mod:`~eraserlab.rec.scenarios`) fixes the data and the request, and the shared
protocol (:mod:`eraserlab.protocol`) runs every method: **Corrupted** (trained on the corrupted
or full training set), **K retrains** on the corrected / retained set (the first, **Retrain**,
from the same initial adapter and data order as Corrupted; the others with seeds of their own),
**LLMEraser** (``eraserlib.erase`` on Corrupted, applied), **gradient ascent** (IR) or
**fine-tuning on the corrected samples** (QM/RC), **SISA**, the paper's rivals **RecEraser**,
**APA** (which share one balanced user partition and its shard adapters) and **E2URec**
(:mod:`eraserlib.baselines`), and any baseline registered in :mod:`eraserlab.protocol.methods`; every model is evaluated on the same examples
(:mod:`eraserlab.rec.evaluator`) and compared with the retrains. The result is a tidy frame, one
row per method, also written (CSV, comparison CSV and JSON, atomically) to ``results_dir``.

Columns: ``dataset, task, ratio, seed, method``, the evaluator's metrics
(:mod:`eraserlab.rec.evaluator`: ``hit_ratio_at_1``, ``valid_ratio``, ``candidate_accuracy`` or
``auc``, ``accuracy``; ``test_loss``, ``forget_loss``, ``forget_accuracy``, ``corrected_*``), and

* ``jsd_test``, ``jsd_corrected``: mean Jensen–Shannon divergence (bits) between the method's
  and Retrain's (the run seed's) predicted distributions (20 candidates; or yes/no) on the test
  and on the corrected examples (IR: the removed examples);
* ``delta_cosine``, ``delta_norm_ratio``, ``delta_relative_error``: the method's change of the
  adapter against Retrain's change, both from Corrupted (NaN for SISA, whose adapters differ);
* the comparison with the K retrains (:mod:`eraserlab.protocol.compare`): ``r/<d>`` (0 = as
  close as another retraining, 1 = no better than Corrupted) with ``r_low/<d>``, ``r_high/<d>``,
  ``d_ur/<d>``, ``d_rr/<d>``, ``d_or/<d>``, ``effect/<d>`` (the request's effect against the
  noise floor) and ``effect_resolved``/``effect_note``, ``z/forget_loss``, ``z/forget_accuracy``,
  for the distances ``jsd_test``, ``jsd_corrected``, ``forget_loss``; ``retrains`` (K) and
  ``retrains_extra_time_s`` (the K − 1 extra retrains' training and evaluation);
* ``certificate_ratio`` (‖∇R'(θ̂+Δ)‖ / ‖∇R'(θ̂)‖ of the erase, :mod:`eraserlib.certificate`),
  ``certificate_gradient_norm``, ``certificate_gradient_norm_after``, ``certificate_time_s`` (the
  erases of a run share the pass at Corrupted: the first erase's certificate time includes it);
* ``time_s``, ``peak_memory_mb``, ``memory_kind``, ``time_what``: the cost of the method's own
  step (for Corrupted, training it), see :mod:`eraserlab.profiling`; ``setup_time_s``: SISA's
  initial training of all shards (RecEraser, APA: the partition and the shards' first training,
  shared by both); ``eval_time_s``: its evaluation (APA's: one merged adapter per sample);
* ``eval_split``: ``"test"`` or ``"val"`` (the split every metric describes);
* ``n_train, n_request, n_test, threads, device, load_1min``: sizes and the machine's state
  (timings on a shared machine are inflated by its load).

Default sizes (:data:`PRESETS`): see :class:`ExperimentConfig` and the report in the book.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from eraserlib.adapters import clone_adapter_model
from eraserlib.requests import InstanceRemoval, QueryModification, ResponseCorrection
from eraserlib.storage import jsonable
from eraserlib.training import TrainConfig
from eraserlab import erase_settings, protocol
from eraserlab.profiling import resolve_device
from eraserlab.protocol import MethodSettings, SettingsAliases
from eraserlab.rec.evaluator import Evaluator
from eraserlab.rec.model import LoraSettings, ModelConfig, Recommender, add_lora, load_local_model, reset_adapter
from eraserlab.rec.pretrain import (
    DATASET_TASKS,
    PretrainConfig,
    all_users,
    heldout_users,
    load_task_data,
    pretrain_base,
)
from eraserlab.rec.sasrec import (
    HybridPromptModel,
    SASRecConfig,
    build_projector,
    sasrec_item_embeddings,
    training_sequences,
)
from eraserlab.rec.rival_settings import RIVALS_SMALL
from eraserlab.rec.rivals import PromptEmbedder, answer_logits, user_of
from eraserlab.rec.scenarios import EVAL_SPLITS, build_scenario, task_family
from eraserlab.rec.task import PromptEncoder, answer_loss

#: The protocol's request kind of each task.
REQUEST_KINDS = {"ir": InstanceRemoval.kind, "qm_removal": QueryModification.kind,
                 "qm_replacement": QueryModification.kind, "rc": ResponseCorrection.kind}
#: Every method registered for this arm; a task runs those that apply to its request (:mod:`eraserlab.protocol.methods`).
METHODS = protocol.method_names("rec")
#: Methods that need the text-only prompt (not run with ``hybrid=True``).
TEXT_ONLY_METHODS = ("receraser", "apa")
#: The solver's budget of the small preset's erases (see PRESETS for why).
SMALL_ERASE_OPTIONS = {"top_eigenvalue": 4.0, "first_window": 4, "max_steps": 24}
#: The Gauss–Newton erases' settings chosen by ``benchmarks/erase_selection.py`` (none: the Hessian erase's).
ERASE_CHOSEN, ERASE_EVIDENCE = erase_settings.chosen("rec")


@dataclass(frozen=True)
class ExperimentConfig(SettingsAliases):
    """Every size and hyper-parameter of an experiment.

    Attributes:
        model: The small Llama (ignored with ``base_model=<path>``).
        pretrain: How the small base is pre-trained.
        lora: The adapter.
        train: Training of Corrupted, the retrains and each SISA shard (seed replaced by the
            run's; a retrain's by its own).
        max_train_per_user: Each task user's most recent training targets kept (CPU budget).
        max_train_users: Train on this many task users only (a fixed subset; None: all).
        max_test: Test examples evaluated (a fixed subset of task users; None: all).
        settings: The methods' settings, shared with the multimodal arm
            (:class:`~eraserlab.protocol.MethodSettings`: erase solver, λ and options, SISA's k,
            gradient ascent, fine-tuning, the K retrains); ``config.erase_damping`` and the
            other former flat names still read them.
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
    settings: MethodSettings = field(default_factory=lambda: MethodSettings(
        erase_damping=0.2, erase_options=dict(SMALL_ERASE_OPTIONS), **RIVALS_SMALL["settings"],
        **{"gauss_newton_damping": 0.2, "gauss_newton_options": dict(SMALL_ERASE_OPTIONS), **ERASE_CHOSEN},
        selection={**RIVALS_SMALL["selection"], **ERASE_EVIDENCE}))
    eval_batch_size: int = 32
    base_seed: int = 0
    data_seed: int = 0
    hybrid: bool = False
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    projector: str = "mlp"

    def to_dict(self) -> dict:
        return asdict(self)


#: Named sizes: "small" is the laptop default (the default book runs it), "tiny" runs in seconds
#: (tests, smoke runs). Why the "small" values:
#:
#: * 8 training epochs: an erase pays for the gradients of the request's old and new examples
#:   whatever the training cost, so with few epochs even that alone is a large share of one
#:   retraining; longer training also makes Corrupted and Retrain differ by more than
#:   retraining's own noise, which the chapters' effect sizes check on every run.
#: * damping λ = 0.2 and 24 solver steps with λ_max given: "auto" damping runs Lanczos (more
#:   mini-batch products than the solve itself) and its margin for the negative curvature of a
#:   non-converged adapter shrinks the update; smaller fixed λ made the iteration blow up along
#:   negative curvature. λ_max sets the step 1/(λ_max + λ). Below the most negative curvature
#:   the quadratic is not convex and 24 steps do not converge: the answer is an early-stopped
#:   estimate of (H + λI)⁻¹b, and the run's record says so (``erase_diagnostics``).
#:   ``benchmarks/erase_vs_retrain.py`` measures this erase against Retrain.
#: * text prompts, not LLaRA's hybrid prompt (``hybrid=False``): the hybrid prompt's projector
#:   joins the erased parameters and is far from a minimum after 8 epochs, and it did not help
#:   Retrain here; compare with
#:   ``run_experiment("movielens", "rc", config=dataclasses.replace(PRESETS["small"], hybrid=True))``.
#: * the Gauss–Newton erases' settings: the Hessian erase's damping and solver budget, so that the
#:   two curvatures are compared at the same cost (a Gauss–Newton product costs about an HVP:
#:   ``benchmarks/results/curvature_cost-default.json``); "auto" damping would first run Lanczos
#:   on the Gauss–Newton matrix, a cost the Hessian erase, whose λ_max is given, does not pay.
#:   ``benchmarks/erase_selection.py`` chooses them on the validation split instead and writes
#:   :mod:`eraserlab.erase_settings`, which overrides these when it holds a choice.
#: * RecEraser's, APA's and E2URec's settings: chosen on the validation split
#:   (``eval_split="val"``) by ``benchmarks/rec_rivals_selection.py``, which writes the choice
#:   and its evidence to :mod:`eraserlab.rec.rival_settings` (``settings.selection`` in every
#:   record).
PRESETS: dict[str, ExperimentConfig] = {
    "small": ExperimentConfig(),
    "tiny": ExperimentConfig(
        model=ModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, max_positions=256),
        pretrain=PretrainConfig(heldout_share=0.5, steps=4, batch_size=8, vocab_size=400, max_train_per_user=1),
        lora=LoraSettings(rank=2, alpha=4),
        train=TrainConfig(epochs=1, lr=2e-3, batch_size=8, weight_decay=1e-3, decay_to=0.0),
        max_train_per_user=1, max_train_users=48, max_test=8,
        settings=MethodSettings(erase_damping=0.2, erase_batch_size=8, erase_options={"max_steps": 24}, sisa_shards=2,
                                gauss_newton_damping=0.2, gauss_newton_options={"max_steps": 24}),
        eval_batch_size=8, sasrec=SASRecConfig(dim=8, layers=1, epochs=2),
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


def run_experiment(
    dataset: str = "movielens",
    task: str = "qm_removal",
    ratio: float = 0.1,
    *,
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
    retrains: int | None = None,
    request_seed: int | None = None,
    retrain_pool: protocol.RetrainPool | None = None,
    eval_split: str = "test",
    leave_out: Sequence[str] = (),
) -> pd.DataFrame:
    """Run every method on one unlearning request and judge them against K retrains (module docstring).

    Args:
        dataset: ``"movielens"``, ``"lastfm"`` (QM/RC) or ``"bookcrossing"`` (IR).
        task: ``"ir"``, ``"qm_removal"``, ``"qm_replacement"`` or ``"rc"``.
        ratio: Share of the training examples the request touches.
        methods: Registered method names (default: all that apply to the task; Corrupted is
            always run, every other method starts from it or is compared with it; without
            ``"retrain"`` nothing is compared).
        seed: Seeds the corruption, the adapter's initialisation, the data order, the solver and
            SISA's shards (the first retrain's too). The base and the candidates do not change.
        model_size: A key of :data:`PRESETS` (``"small"``, ``"tiny"``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        data_dir: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        results_dir: Where to write ``<dataset>-<task>-<ratio>-seed<seed>.csv`` / ``-comparison.csv``
            / ``.json`` (``None``: nothing is written).
        base_model: A local Hugging Face causal-LM folder to use instead of the small base.
        config: Overrides the preset entirely.
        cache_dir: Where pre-trained bases are cached (default ``<repo>/.cache/rec``).
        progress: Show progress bars.
        retrains: K, the retrains (default ``config.settings.retrain_seeds``).
        request_seed: Seeds the corruption / removal instead of ``seed`` (None: ``seed``). Fix it
            across run seeds to repeat one request, so that the seeds differ only by what
            training varies and can share their retrains (``retrain_pool``).
        retrain_pool: Retrains shared by the run seeds of one request (see
            :class:`eraserlab.protocol.RetrainPool`).
        eval_split: ``"test"``, or ``"val"`` to choose settings without looking at the test split:
            every metric is then measured on the task users' validation examples (the columns
            keep their names; ``eval_split`` says which split they describe; files get ``-val``).
        leave_out: Methods not to run when ``methods`` is None (a budget's cut: the default book
            runs the paper's rivals on some settings only).

    Returns:
        The tidy results frame, one row per method.
    """
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"Unknown eval_split {eval_split!r}; one of {tuple(EVAL_SPLITS)}.")
    if dataset not in DATASET_TASKS:
        raise ValueError(f"Unknown dataset {dataset!r}; one of {sorted(DATASET_TASKS)}.")
    family = task_family(task)
    if family not in DATASET_TASKS[dataset]:
        raise ValueError(f"{dataset} has no {family} task, so it cannot run {task!r}: "
                         f"use one of {[t for t in REQUEST_KINDS if task_family(t) in DATASET_TASKS[dataset]]}.")
    if config is None:
        if model_size not in PRESETS:
            raise ValueError(f"Unknown model_size {model_size!r}; one of {sorted(PRESETS)}.")
        config = PRESETS[model_size]
    if methods is not None and config.hybrid and set(methods) & set(TEXT_ONLY_METHODS):
        # the partition embeds text-only prompts, and APA merges LoRA layers only
        raise ValueError(f"{sorted(set(methods) & set(TEXT_ONLY_METHODS))} need the text-only prompt "
                         "(hybrid=False): their partition embeds text prompts with the base alone.")
    if methods is None and config.hybrid:
        leave_out = [*leave_out, *TEXT_ONLY_METHODS]
    methods = protocol.resolve_methods("rec", REQUEST_KINDS[task], methods, task=task, leave_out=leave_out)
    device = resolve_device(device)
    started = time.perf_counter()

    base = load_base(dataset, config, base_model, device, data_dir, cache_dir, progress)
    data = load_task_data(dataset, data_dir, config.max_train_per_user, config.data_seed, tasks=(family,))[family]
    built = build_scenario(task, data, ratio, seed if request_seed is None else request_seed,
                           excluded_users=base.info["heldout_users"], max_test=config.max_test,
                           test_seed=config.data_seed, max_train_users=config.max_train_users,
                           eval_split=eval_split)
    scenario = protocol.Scenario(train=built.train, request=built.request, retrain_data=built.retrain_data,
                                 forget=built.forget, corrected=built.corrected, test=built.test, notes=built.notes)
    item_text = config.pretrain.item_text if base_model is None else "title"
    template, hybrid = add_lora(base.model, config.lora, seed), None
    if config.hybrid:
        template, hybrid = _add_hybrid_prompt(template, dataset, family, data, base, base_model, config, data_dir,
                                              seed, progress)
    encoder = PromptEncoder(base.tokenizer, dataset, data.item_titles, item_text=item_text,
                            max_length=getattr(base.model.config, "max_position_embeddings", 4096),
                            item_embedding_offset=template.offset if config.hybrid else None)
    embed = None if config.hybrid else PromptEmbedder(template, encoder, config.eval_batch_size)
    context = protocol.Context(scenario, _model_factory(template, config, seed), answer_loss,
                               dataclasses.replace(config.train, seed=seed), config.settings, collate_fn=encoder,
                               device=device, seed=seed, progress=progress, embed=embed, group_of=user_of,
                               answer_logits=answer_logits)
    evaluator = Evaluator(scenario, encoder, config.eval_batch_size, next_item=family == "next_item")
    outcome = protocol.run_protocol(context, evaluator, methods, retrains=retrains, pool=retrain_pool)
    frame = protocol.tidy_frame(outcome, head={"dataset": dataset, "task": task, "ratio": ratio, "seed": seed,
                                               "request_seed": seed if request_seed is None else request_seed},
                                lead={"eval_split": eval_split}, tail={**scenario.sizes(), "model": model_size if base_model is None else os.fspath(base_model),
                                      "item_text": item_text, "hybrid": config.hybrid}, device=device)
    if results_dir is not None:
        record = {"config": config.to_dict(), "scenario_notes": list(scenario.notes), "data_notes": list(data.notes),
                  "base": jsonable({k: v for k, v in base.info.items() if k != "heldout_users"}),
                  "heldout_users": len(base.info["heldout_users"]), "hybrid": hybrid, **outcome.record,
                  "total_time_s": time.perf_counter() - started, "torch": torch.__version__}
        stem = f"{dataset}-{task}-{ratio:g}-seed{seed}" + ("-val" if eval_split == "val" else "")
        protocol.write_run(results_dir, stem, frame, record)
    return frame


def _model_factory(template: torch.nn.Module, config: ExperimentConfig, seed: int):
    """``make_model(s)``: a copy of the template (base shared) with its adapter (and projector) drawn from ``s``.

    ``s`` = the run's seed gives the template's own initial adapter (Corrupted's); another seed
    redraws the LoRA matrices as :func:`~eraserlab.rec.model.add_lora` does and, with the hybrid
    prompt, the projector as :func:`~eraserlab.rec.sasrec.build_projector` does.
    """

    def make_model(s: int) -> torch.nn.Module:
        model = clone_adapter_model(template)
        if s == seed:
            return model
        if isinstance(model, HybridPromptModel):
            reset_adapter(model.language_model, config.lora.init_scale, s)
            embedding = model.language_model.get_input_embeddings()
            fresh = build_projector(config.projector, model.item_embeddings.shape[1], embedding.embedding_dim, s)
            model.projector.load_state_dict(fresh.state_dict())
        else:
            reset_adapter(model, config.lora.init_scale, s)
        return model

    return make_model


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
