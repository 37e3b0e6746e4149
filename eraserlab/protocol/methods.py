"""The methods of the experiments, each registered once for both arms.

A method is a function ``method(context: Context) -> MethodOutput``: from the scenario, a
model factory, the trained Corrupted model and the settings it returns its model(s), the cost
of its own step and what the record should keep. The protocol (:func:`eraserlab.protocol.run_protocol`)
runs Corrupted first, then the K retrains, then every other method, evaluates them all with the
arm's evaluator and compares them with the retrains (:mod:`eraserlab.protocol.compare`).

**Adding a baseline** — once, here, for both arms (RecEraser, APA and E2URec below were added so):

1. Put the algorithm itself in the library, one module in :mod:`eraserlib.baselines`, written
   for any model and ``loss_fn`` (as :func:`eraserlib.baselines.gradient_ascent`).
2. Below, write its method and register it::

       @register("my_baseline", kinds=(InstanceRemoval.kind,))
       def my_baseline(context: Context) -> MethodOutput:
           model = context.from_corrupted()          # or context.fresh() for a new adapter
           with measure(context.device) as usage:    # time the method's own step only
               info = my_baseline(model, context.loss_fn, context.scenario.forget, ...,
                                  collate_fn=context.collate_fn, seed=context.seed)
           return MethodOutput([model], cost_columns(usage, "what the time covers"),
                               record={"my_baseline": info})

   ``kinds`` are the request kinds it applies to; ``only={"rec": (...)}`` narrows them for one
   arm (``only={"mllm": ()}``: not in that arm). Its hyper-parameters go in
   :class:`~eraserlab.protocol.settings.MethodSettings` (both arms' presets then carry them).
   Several models (an ensemble, as SISA's shards) are returned as a list with ``single=False``
   (the arm's evaluator averages their answer distributions; ΔΘ columns are NaN; a model that
   aggregates per sample is one module, with ``condition(examples)`` where it needs to know
   the samples, as APA's); an update Δ
   of Corrupted's parameters returned as ``delta=`` gets a certificate
   (:func:`eraserlib.certificate.gradient_certificate`).
3. Nothing else: ``run_experiment`` of both arms runs it by default wherever it applies, accepts
   it in ``methods=[...]``, gives it a row in the frame and a residual r in the comparison; the
   book's palette (:mod:`eraserbook.palette`) needs a colour and a label for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import eraserlib
from eraserlib.adapters import clone_adapter_model
from eraserlib.baselines import (
    SISA,
    SampleAdaptiveLoRA,
    centred_cosine_weights,
    e2urec,
    finetune_on_corrected,
    fit_aggregator,
    gradient_ascent,
)
from eraserlib.matching import ExampleIndex
from eraserlib.objective import LossFn
from eraserlib.training import TrainConfig, train
from eraserlab.profiling import Usage, measure
from eraserlab.protocol.scenario import KINDS, Request, Scenario
from eraserlab.protocol.settings import MethodSettings
from eraserlab.protocol.shards import combined, shared_shards
from eraserlab.records import cost_columns

IR, QM, RC = KINDS


@dataclass(frozen=True)
class Context:
    """What a method gets.

    Attributes:
        scenario: The data and the request.
        make_model: ``make_model(seed)`` → a fresh model whose adapter is initialised from
            ``seed`` (the run's seed gives Corrupted's initial adapter); the base is shared.
        loss_fn: The training loss, ``loss_fn(model, batch) -> scalar``.
        train_config: Training of Corrupted, the retrains and SISA's shards (``seed`` = :attr:`seed`).
        settings: The methods' settings.
        collate_fn: List of examples → batch on the model's device.
        device: Where the work runs (for :func:`eraserlab.profiling.measure`).
        seed: The run's seed (a retrain's own seed when it trains one).
        progress: Show progress bars.
        corrupted: The trained Corrupted model (None while Corrupted itself is trained).
        embed: ``embed(examples) -> (n, d)`` embeddings of examples by the frozen base (RecEraser's
            and APA's partition, APA's attention); None where the arm gives none.
        group_of: ``group_of(example)``: the group (user) a partition keeps together.
        answer_logits: ``answer_logits(model, batch) -> (logits, mask)`` at the positions the loss
            reads (E2URec's distillation).
        shared: What the methods of one run share (the user shards of RecEraser and APA,
            :mod:`eraserlab.protocol.shards`).
    """

    scenario: Scenario
    make_model: Callable[[int], nn.Module]
    loss_fn: LossFn
    train_config: TrainConfig
    settings: MethodSettings
    _: dataclasses.KW_ONLY
    collate_fn: Callable[[list[Any]], Any] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    progress: bool = False
    corrupted: nn.Module | None = None
    embed: Callable[[Sequence[Any]], torch.Tensor] | None = None
    group_of: Callable[[Any], Any] | None = None
    answer_logits: Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]] | None = None
    shared: dict = field(default_factory=dict)

    def fresh(self) -> nn.Module:
        """A new model with this context's seed's initial adapter."""
        return self.make_model(self.seed)

    def from_corrupted(self) -> nn.Module:
        """A copy of Corrupted (its adapter copied, the base shared) to change in place."""
        if self.corrupted is None:
            raise RuntimeError("This method starts from Corrupted, which has not been trained yet.")
        return clone_adapter_model(self.corrupted)

    def with_seed(self, seed: int) -> Context:
        """The same context for another seed: adapter initialisation and data order."""
        return dataclasses.replace(self, seed=seed, train_config=dataclasses.replace(self.train_config, seed=seed))


@dataclass
class MethodOutput:
    """What a method returns.

    Attributes:
        models: Its model, or the models of an ensemble.
        cost: Frame columns of its cost (:func:`eraserlab.records.cost_columns`, plus e.g.
            ``setup_time_s``).
        record: Entries for the run's JSON record (top-level keys; e.g. ``erase_diagnostics``).
        delta: The update it applied to Corrupted's parameters (name → tensor), if it is one.
        single: One adapter (compared with Retrain's change of the parameters); False for an
            ensemble.
    """

    models: list[nn.Module]
    cost: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    delta: Mapping[str, torch.Tensor] | None = None
    single: bool = True


@dataclass(frozen=True)
class Method:
    """A registered method: its function and the request kinds it applies to (per arm)."""

    name: str
    run: Callable[[Context], MethodOutput]
    kinds: frozenset[str]
    only: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def kinds_for(self, arm: str) -> frozenset[str]:
        return self.only.get(arm, self.kinds)


REGISTRY: dict[str, Method] = {}


def register(name: str, *, kinds: Iterable[str] = KINDS, only: Mapping[str, Iterable[str]] | None = None):
    """Decorator: register ``method(context) -> MethodOutput`` under ``name`` (module docstring)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"Unknown request kinds {sorted(unknown)}; use {KINDS}.")

    def decorate(function: Callable[[Context], MethodOutput]) -> Callable[[Context], MethodOutput]:
        if name in REGISTRY:
            raise ValueError(f"A method {name!r} is registered already.")
        REGISTRY[name] = Method(name, function, frozenset(kinds),
                                {arm: frozenset(k) for arm, k in (only or {}).items()})
        return function

    return decorate


def unregister(name: str) -> None:
    """Remove a registered method (tests that register their own)."""
    REGISTRY.pop(name)


def method_names(arm: str | None = None, kind: str | None = None) -> tuple[str, ...]:
    """Registered methods in registration order: all; with ``arm``, those that apply to it (to ``kind``
    when given, else to any kind)."""
    if arm is None:
        return tuple(REGISTRY)
    return tuple(m.name for m in REGISTRY.values() if (kind in m.kinds_for(arm) if kind else m.kinds_for(arm)))


def resolve_methods(arm: str, kind: str, requested: Sequence[str] | None, task: str | None = None,
                    leave_out: Sequence[str] = ()) -> list[str]:
    """The methods to run, Corrupted first (every other starts from it or is compared with it).

    Args:
        arm: ``"rec"`` or ``"mllm"``.
        kind: The request kind (:data:`~eraserlab.protocol.scenario.KINDS`).
        requested: Names, or None for every method that applies.
        task: The arm's name of the task, for the error messages.
        leave_out: Methods not to run when ``requested`` is None (a budget's cut: the default
            book runs some methods on some settings only).

    Raises:
        ValueError: an unknown method, one that does not apply to the request, or one both
            requested and left out.
    """
    unknown = sorted(set(leave_out) - set(REGISTRY))
    if unknown:
        raise ValueError(f"Unknown methods {unknown} left out; choose from {tuple(REGISTRY)}.")
    if requested is None:
        requested = [m for m in method_names(arm, kind) if m not in leave_out]
    elif set(requested) & set(leave_out):
        raise ValueError(f"{sorted(set(requested) & set(leave_out))} are both asked for and left out.")
    unknown = sorted(set(requested) - set(REGISTRY))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {tuple(REGISTRY)}.")
    for name in requested:
        kinds = REGISTRY[name].kinds_for(arm)
        if kind not in kinds:
            raise ValueError(f"{name!r} applies to {sorted(kinds)} only, not to {task or kind!r}.")
    return ["corrupted"] + [m for m in REGISTRY if m in requested and m != "corrupted"]


def _train_fresh(context: Context, data: Sequence[Any], what: str, description: str) -> MethodOutput:
    model = context.fresh()
    with measure(context.device) as usage:
        train(model, context.loss_fn, data, context.train_config, collate_fn=context.collate_fn,
              progress=context.progress, description=description)
    return MethodOutput([model], cost_columns(usage, what))


@register("corrupted")
def corrupted(context: Context) -> MethodOutput:
    """The adapter trained on the data as trained on: what every other method starts from."""
    return _train_fresh(context, context.scenario.train, "train on the training set as given (corrupted / full)",
                        "Corrupted")


@register("retrain")
def retrain(context: Context) -> MethodOutput:
    """The gold standard: a fresh adapter trained on the data the request leaves (context's seed)."""
    return _train_fresh(context, context.scenario.retrain_data, "retrain on the data the request leaves",
                        f"Retrain (seed {context.seed})")


@register("llmeraser")
def llmeraser(context: Context) -> MethodOutput:
    """``eraserlib.erase`` on Corrupted as the paper has it (Hessian, one step) with the settings' solver, applied."""
    settings = context.settings
    return _erase(context, "erase (Hessian, one step) and apply", "erase_diagnostics", curvature="hessian",
                  damping=settings.erase_damping, options=settings.erase_options)


@register("llmeraser_gn")
def llmeraser_gn(context: Context) -> MethodOutput:
    """``eraserlib.erase`` with Gauss–Newton curvature, one step, applied."""
    settings = context.settings
    return _erase(context, "erase (Gauss–Newton, one step) and apply", "erase_diagnostics_gn", curvature="gauss_newton",
                  damping=settings.gauss_newton_damping, options=settings.gauss_newton_options)


@register("llmeraser_gn_steps")
def llmeraser_gn_steps(context: Context) -> MethodOutput:
    """``eraserlib.erase`` with Gauss–Newton curvature and re-linearised steps on the corrected objective, applied."""
    settings = context.settings
    return _erase(context, f"erase (Gauss–Newton, up to {settings.gauss_newton_steps} steps) and apply",
                  "erase_diagnostics_gn_steps", curvature="gauss_newton", damping=settings.gauss_newton_damping,
                  options=settings.gauss_newton_options, steps=settings.gauss_newton_steps,
                  step_options=settings.gauss_newton_step_options)


def _erase(context: Context, what: str, record_key: str, **erase_arguments: Any) -> MethodOutput:
    """Corrupted + ``eraserlib.erase(...)`` with ``erase_arguments``, timed; its diagnostics under ``record_key``.

    The erase runs in this process alone (``process_group=False``) even under ``torchrun``: an experiment
    on several processes shares out its seeds (:mod:`eraserlab.parallel`), so the ranks run different
    erases, and a data-parallel one would wait for ranks that never join it."""
    settings, model = context.settings, context.from_corrupted()
    with measure(context.device) as usage:
        result = eraserlib.erase(model, context.loss_fn, context.scenario.train, context.scenario.request,
                                 solver=settings.erase_solver, weight_decay=context.train_config.weight_decay,
                                 collate_fn=context.collate_fn, batch_size=settings.erase_batch_size,
                                 seed=context.seed, progress=context.progress, process_group=False,
                                 **erase_arguments)
        eraserlib.apply_delta(model, result.delta)
    return MethodOutput([model], cost_columns(usage, what), record={record_key: dict(result.diagnostics)},
                        delta=result.delta)


# The recommendation arm runs gradient ascent for removals only (it is the usual IR baseline);
# the multimodal arm runs it for QM/RC, where it ascends the wrong answers as trained on.
@register("gradient_ascent", only={"rec": (IR,)})
def gradient_ascent_method(context: Context) -> MethodOutput:
    """Corrupted, ascending the mean loss of the forget set (the examples as trained on)."""
    settings, config, model = context.settings, context.train_config, context.from_corrupted()
    forget = context.scenario.forget
    steps = settings.gradient_ascent_epochs * math.ceil(len(forget) / config.batch_size)
    with measure(context.device) as usage:
        gradient_ascent(model, context.loss_fn, forget, steps=steps, lr=settings.gradient_ascent_lr,
                        batch_size=config.batch_size, collate_fn=context.collate_fn, seed=context.seed,
                        max_grad_norm=settings.gradient_ascent_clip, progress=context.progress)
    return MethodOutput([model], cost_columns(usage, "gradient ascent on the forget set"))


@register("finetune", kinds=(QM, RC))
def finetune(context: Context) -> MethodOutput:
    """Corrupted, trained further on the corrected examples only (no warm-up)."""
    settings, model = context.settings, context.from_corrupted()
    config = dataclasses.replace(context.train_config, epochs=settings.finetune_epochs, lr=settings.finetune_lr,
                                 warmup_steps=0)
    with measure(context.device) as usage:
        finetune_on_corrected(model, context.loss_fn, context.scenario.corrected, config,
                              collate_fn=context.collate_fn, progress=context.progress)
    return MethodOutput([model], cost_columns(usage, "fine-tune on the corrected examples"))


@register("sisa")
def sisa(context: Context) -> MethodOutput:
    """SISA's k shard adapters (each from the run's initial adapter), the touched shards retrained."""
    shards = context.settings.sisa_shards
    ensemble = SISA(context.fresh, context.loss_fn, shards, context.train_config, collate_fn=context.collate_fn,
                    seed=context.seed, progress=context.progress)
    usage, info = timed_sisa(ensemble, context.scenario.train, context.scenario.request, context.device)
    cost = {**cost_columns(usage, f"retrain {len(info['affected_shards'])} of {shards} shards"),
            "setup_time_s": info["fit_time_s"]}
    return MethodOutput(ensemble.models, cost, record={"sisa": info}, single=False)


def timed_sisa(ensemble: SISA, train_data: Sequence[Any], request: Request,
               device: torch.device | str | None = None) -> tuple[Usage, dict[str, Any]]:
    """SISA as the experiments run it: fit on ``train_data``, then unlearn ``request``, each timed.

    Returns:
        The :class:`~eraserlab.profiling.Usage` of the unlearning step (the method's cost) and a
        record: :meth:`SISA.unlearn`'s report plus ``shards``, ``fit_time_s`` (the initial
        training of all shards) and ``train_count`` (how often each shard was trained).
    """
    with measure(device) as setup:
        ensemble.fit(train_data)
    with measure(device) as usage:
        info = ensemble.unlearn(request)
    return usage, {**info, "shards": ensemble.num_shards, "fit_time_s": setup.wall_time_s,
                   "train_count": list(ensemble.train_count)}


# The paper's rivals (LLMEraser's Table 2 and APA), each for the recommendation arm only: their
# partitions and teachers read what that arm gives (Context.embed, group_of, answer_logits). What
# each differs from its paper is in its eraserlib.baselines module's docstring.
@register("receraser", only={"mllm": ()})
def receraser(context: Context) -> MethodOutput:
    """RecEraser: the shared user shards retrained where the request falls, then its attention aggregator."""
    settings, shards = context.settings, shared_shards(context, "receraser")
    ensemble = shards.ensemble
    config = dataclasses.replace(context.train_config, epochs=settings.receraser_epochs, lr=settings.receraser_lr,
                                 warmup_steps=0)
    with measure(context.device) as usage:
        aggregate, report = fit_aggregator(ensemble.models, context.loss_fn, [e for s in ensemble.shards for e in s],
                                           config, attention_size=settings.receraser_attention_size,
                                           collate_fn=context.collate_fn, seed=context.seed,
                                           progress=context.progress)
    affected = shards.record["affected_shards"]
    cost = {**cost_columns(combined(shards.unlearn, usage),
                           f"retrain {len(affected)} of {ensemble.num_shards} shards and the aggregator"),
            "setup_time_s": shards.setup_time_s}
    record = {**shards.record, "shards_built_by": shards.users[0],
              "retrain_shards_time_s": shards.unlearn.wall_time_s, "aggregator_time_s": usage.wall_time_s,
              "aggregator_steps": report["steps"], "aggregator_final_loss": report["losses"][-1]}
    return MethodOutput([aggregate], cost, record={"receraser": record}, single=False)


@register("apa", only={"mllm": ()})
def apa(context: Context) -> MethodOutput:
    """APA: the shared user shards retrained where the request falls, merged per test sample by similarity."""
    settings, shards = context.settings, shared_shards(context, "apa")
    ensemble = shards.ensemble
    with measure(context.device) as usage:
        held = [shard for shard in ensemble.shards if shard]  # the shards that still have an adapter
        centre = context.embed([e for shard in held for e in shard]).mean(0)
        centroids = torch.stack([context.embed(shard).mean(0) for shard in held])
        temperature = settings.apa_temperature
        model = SampleAdaptiveLoRA(ensemble.models, lambda examples: centred_cosine_weights(
            context.embed(examples), centroids, centre, temperature))
    weights = model.condition(context.scenario.test)
    affected = shards.record["affected_shards"]
    cost = {**cost_columns(combined(shards.unlearn, usage),
                           f"retrain {len(affected)} of {ensemble.num_shards} shards and their centroids"),
            "setup_time_s": shards.setup_time_s}
    record = {**shards.record, "shards_built_by": shards.users[0],
              "retrain_shards_time_s": shards.unlearn.wall_time_s, "temperature": temperature,
              "test_weight_mean": weights.mean(0).tolist(), "test_weight_max_mean": float(weights.max(1).values.mean())}
    return MethodOutput([model], cost, record={"apa": record}, single=False)


@register("e2urec", only={"mllm": ()})
def e2urec_method(context: Context) -> MethodOutput:
    """E2URec: a copy of Corrupted's adapter distilled from a forgetting and a remembering teacher."""
    if context.answer_logits is None:
        raise ValueError("E2URec distils logits: the arm's Context must give answer_logits(model, batch).")
    settings, scenario, config = context.settings, context.scenario, context.train_config
    if scenario.kind == IR:
        retain, learn = list(scenario.retrain_data), []
    else:  # QM/RC: remember the untouched examples, learn the corrected ones (eraserlib.baselines.e2urec)
        corrected = set(ExampleIndex(scenario.retrain_data).locate(scenario.corrected, "corrected example"))
        retain = [e for i, e in enumerate(scenario.retrain_data) if i not in corrected]
        learn = list(scenario.corrected)
    augmented, model = context.from_corrupted(), context.from_corrupted()
    augment = dataclasses.replace(config, epochs=settings.e2urec_augment_epochs, warmup_steps=0)
    with measure(context.device) as usage:
        train(augmented, context.loss_fn, scenario.forget, augment, collate_fn=context.collate_fn,
              progress=context.progress, description="E2URec augmented model")
        report = e2urec(model, context.corrupted, augmented, context.loss_fn, context.answer_logits,
                        scenario.forget, retain, learn=learn, epochs=settings.e2urec_epochs,
                        forget_epochs=settings.e2urec_forget_epochs, lr=settings.e2urec_lr,
                        batch_size=config.batch_size, weight=settings.e2urec_weight, alpha=settings.e2urec_alpha,
                        max_grad_norm=config.max_grad_norm, collate_fn=context.collate_fn, seed=context.seed,
                        progress=context.progress)
    record = {"steps": report["steps"], "final_forget_kl": report["forget_kl"][-1],
              "final_retain_kl": report["retain_kl"][-1], "retained": len(retain), "learnt": len(learn)}
    return MethodOutput([model], cost_columns(usage, "fine-tune the augmented model and distil from both teachers"),
                        record={"e2urec": record})
