"""The settings every method of the protocol reads, one dataclass for both arms.

Each arm's ``ExperimentConfig`` holds a :class:`MethodSettings` in its ``settings`` field (its
presets choose the values, with the evidence beside them) and keeps the former flat names
(``config.erase_damping``, ``config.sisa_shards``...) readable through :class:`SettingsAliases`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodSettings:
    """Hyper-parameters of the methods and of the comparison with retraining.

    Attributes:
        erase_solver: The solver of ``eraserlib.erase`` (``"llmeraser"``, ``"cg"``...).
        erase_damping: λ, or ``"auto"``.
        erase_options: The solver's options (``top_eigenvalue``, ``max_steps``...).
        erase_batch_size: Examples per stochastic product of the solver (and per gradient chunk,
            also of the certificate).
        gauss_newton_damping: λ of the Gauss–Newton erases (``llmeraser_gn``, ``llmeraser_gn_steps``),
            or ``"auto"`` (:func:`eraserlib.damping.gauss_newton_damping`).
        gauss_newton_options: Their solver options (the solver is ``erase_solver``).
        gauss_newton_steps: Re-linearised steps of ``llmeraser_gn_steps`` (:mod:`eraserlib.steps`).
        gauss_newton_step_options: Its :class:`eraserlib.steps.StepOptions` fields.
        certificate: Compute :func:`eraserlib.certificate.gradient_certificate` for every erase
            (two gradient passes over the retrain data, timed apart from the erase).
        sisa_shards: SISA's k.
        gradient_ascent_epochs: Passes of gradient ascent over the forget set.
        gradient_ascent_lr: Its Adam learning rate.
        gradient_ascent_clip: Its gradient-norm clip (None: none); 1.0 in both arms, as training.
        finetune_epochs: Epochs of fine-tuning on the corrected examples.
        finetune_lr: Its learning rate (no warm-up: it continues a trained adapter).
        partition_iterations: Rounds of RecEraser's balanced k-means (the user partition that
            RecEraser and APA share; k = ``sisa_shards``).
        receraser_epochs: Epochs of RecEraser's attention aggregator (shards frozen).
        receraser_lr: Its Adam learning rate.
        receraser_attention_size: Width of its attention layer.
        apa_temperature: τ of APA's attention, softmax(cos / τ) over the shard adapters.
        e2urec_epochs: E2URec's epochs with both teachers (steps of one forget and one retained
            batch), after ``e2urec_forget_epochs`` epochs of the forgetting term alone.
        e2urec_forget_epochs: Its first epochs on the forget data alone (the authors' code: 1).
        e2urec_lr: Its Adam learning rate.
        e2urec_weight: w, the weight of the remembering terms (1 − w on the forgetting term).
        e2urec_alpha: α of the forgetting teacher z_orig − α·ReLU(z_aug − z_orig).
        e2urec_augment_epochs: Epochs of fine-tuning Corrupted on the forget data (the
            augmented model), at the training learning rate.
        selection: How settings were chosen (setting → candidates, validation measurements,
            the choice and the rule), kept with the config in every record; filled by the
            presets from their selection records.
        retrain_seeds: K, the retrains on the data the request leaves, each with its own
            adapter initialisation and data order; the first is the run seed's (Retrain).
        bootstrap_resamples: Resamples of the evaluated examples for the intervals.
        confidence: Coverage of the percentile intervals.
    """

    erase_solver: str = "llmeraser"
    erase_damping: float | str = "auto"
    erase_options: dict = field(default_factory=dict)
    erase_batch_size: int = 16
    gauss_newton_damping: float | str = "auto"
    gauss_newton_options: dict = field(default_factory=dict)
    gauss_newton_steps: int = 3
    gauss_newton_step_options: dict = field(default_factory=dict)
    certificate: bool = True
    sisa_shards: int = 4
    gradient_ascent_epochs: int = 1
    gradient_ascent_lr: float = 2e-3
    gradient_ascent_clip: float | None = 1.0
    finetune_epochs: int = 1
    finetune_lr: float = 2e-3
    partition_iterations: int = 10
    receraser_epochs: int = 1
    receraser_lr: float = 2e-3
    receraser_attention_size: int = 32
    apa_temperature: float = 0.1
    e2urec_epochs: int = 2
    e2urec_forget_epochs: int = 1
    e2urec_lr: float = 2e-3
    e2urec_weight: float = 0.5
    e2urec_alpha: float = 1.0
    e2urec_augment_epochs: int = 1
    selection: dict = field(default_factory=dict)
    retrain_seeds: int = 3
    bootstrap_resamples: int = 1000
    confidence: float = 0.95

    def __post_init__(self):
        if self.retrain_seeds < 0:
            raise ValueError(f"retrain_seeds must be ≥ 0, got {self.retrain_seeds}.")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}.")
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be ≥ 1, got {self.bootstrap_resamples}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SettingsAliases:
    """Read-only ``config.<name>`` for the method settings that used to be flat config fields."""

    settings: MethodSettings

    erase_damping = property(lambda self: self.settings.erase_damping)
    erase_options = property(lambda self: self.settings.erase_options)
    erase_batch_size = property(lambda self: self.settings.erase_batch_size)
    sisa_shards = property(lambda self: self.settings.sisa_shards)
    gradient_ascent_epochs = property(lambda self: self.settings.gradient_ascent_epochs)
    gradient_ascent_lr = property(lambda self: self.settings.gradient_ascent_lr)
    finetune_epochs = property(lambda self: self.settings.finetune_epochs)
    finetune_lr = property(lambda self: self.settings.finetune_lr)
