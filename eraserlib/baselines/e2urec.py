"""E2URec (Wang et al. 2024, "Towards Efficient and Effective Unlearning of Large Language Models
for Recommendation", arXiv 2403.03536): LoRA-only unlearning with two teachers.

E2URec freezes the original recommender and trains LoRA parameters only, distilling from

* a **forgetting teacher** on the forget data: the original model's logits, pushed away from
  what an *augmented* model (the original fine-tuned further on the forget data) emphasises,

      z_forget = z_orig − α · ReLU(z_aug − z_orig),

  so the tokens that the forget data made likelier lose probability;
* a **remembering teacher** on the retained data: the original model itself,

and minimises, per step, one forget batch paired with one retained batch (the authors' code:
one epoch on the forget data alone first, then both terms),

    L = w · [ CE(retained) + KL(p_orig ‖ p_θ)(retained) ] + (1 − w) · KL(p_forget ‖ p_θ)(forget),

with KL over the vocabulary at every answer position (their code takes the teachers'
cross-entropy, whose gradient is the same) and CE the task loss. In the brief's notation the
forget weight is β = 1 − w.

**Here**:

* the original model is already a LoRA adapter on a frozen base (Corrupted), so :func:`e2urec`
  trains a *copy of its adapter* rather than a fresh LoRA on top. E2URec adds a LoRA because
  its original is a fully fine-tuned LLM whose update would be costly; here the adapter is the
  small part already, and a copy keeps the result one adapter of Corrupted's shape (its change
  is then compared with Retrain's, ΔΘ, like LLMEraser's);
* the augmented model is a copy of Corrupted's adapter trained on the forget data with the
  training loss (their ``finetune_aug.py`` fine-tunes the original on it);
* no early stopping on a validation loss (their code stops after 3 rises): the epochs are a
  setting, chosen on the validation split with the other settings;
* query modification and response correction (not in the paper, which removes users' data):
  the *closest adaptation* forgets the old versions (forgetting teacher on the examples as
  trained on), remembers the untouched examples (remembering teacher), and learns the corrected
  versions by the task loss, which E2URec already applies to the data the request leaves. The
  corrected versions are kept out of the remembering teacher's KL, since the original model
  answers them as it learnt the corrupted ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from eraserlib.objective import LossFn, trainable_parameters

#: ``logits_fn(model, batch) -> (logits (B, A, V), mask (B, A))``: the logits the loss reads.
LogitsFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]


def forced_teacher_logits(original: torch.Tensor, augmented: torch.Tensor, alpha: float) -> torch.Tensor:
    """The forgetting teacher: ``z_orig − α · ReLU(z_aug − z_orig)``."""
    return original - alpha * torch.relu(augmented - original)


def masked_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 of KL(softmax(teacher) ‖ softmax(student))."""
    teacher = teacher_logits.float().log_softmax(-1)
    student = student_logits.float().log_softmax(-1)
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def _order(n: int, generator: torch.Generator) -> list[int]:
    return torch.randperm(n, generator=generator).tolist()


def e2urec(
    model: nn.Module,
    original: nn.Module,
    augmented: nn.Module,
    loss_fn: LossFn,
    logits_fn: LogitsFn,
    forget: Sequence[Any],
    retain: Sequence[Any],
    *,
    learn: Sequence[Any] = (),
    epochs: int = 2,
    forget_epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 16,
    weight: float = 0.5,
    alpha: float = 1.0,
    max_grad_norm: float | None = 1.0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """E2URec's two-teacher distillation of ``model``'s trainable parameters, in place (module docstring).

    Args:
        model: The student (a copy of the original's adapter); its trainable parameters change.
        original: The original model (the remembering teacher), frozen.
        augmented: The original fine-tuned on ``forget``, frozen.
        loss_fn: The task loss, ``loss_fn(model, batch)``.
        logits_fn: The logits at the positions the loss reads, and their mask.
        forget: The examples to forget (as trained on).
        retain: The examples to remember (remembering teacher and task loss).
        learn: Examples learnt by the task loss only, paired with ``forget`` (QM/RC: the new
            versions, ``learn[i]`` replacing ``forget[i]``); empty for removals.
        epochs: Passes over ``forget`` with both terms (each step: one forget batch, one
            retained batch).
        forget_epochs: Passes over ``forget`` with the forgetting term alone, first.
        lr: Adam's learning rate.
        batch_size: Examples per batch of each kind.
        weight: w, the weight of the remembering terms (1 − w: the forgetting term).
        alpha: α of the forgetting teacher.
        max_grad_norm: Gradient-norm clip (None: none).
        collate_fn: List of examples → batch.
        seed: Seeds the batches.
        progress: Show a progress bar.

    Returns:
        ``{"steps", "losses", "forget_kl", "retain_kl"}`` per step.
    """
    if not forget:
        raise ValueError("E2URec needs examples to forget.")
    if learn and len(learn) != len(forget):
        raise ValueError(f"learn ({len(learn)}) must pair with forget ({len(forget)}) example by example.")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}.")
    if epochs > 0 and not retain:
        raise ValueError("E2URec's remembering term needs retained examples.")
    collate_fn = collate_fn or torch.utils.data.default_collate
    for teacher in (original, augmented):
        teacher.eval()
    _, params = trainable_parameters(model)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(forget) / batch_size)
    report: dict[str, list[float]] = {"losses": [], "forget_kl": [], "retain_kl": []}
    retain_order: list[int] = []
    model.train()
    bar = tqdm(total=(forget_epochs + epochs) * per_epoch, desc="E2URec", disable=not progress, leave=False)
    for epoch in range(forget_epochs + epochs):
        both = epoch >= forget_epochs
        order = _order(len(forget), generator)
        for begin in range(0, len(order), batch_size):
            chosen = order[begin:begin + batch_size]
            batch = collate_fn([forget[i] for i in chosen])
            with torch.no_grad():
                teacher = forced_teacher_logits(logits_fn(original, batch)[0], logits_fn(augmented, batch)[0], alpha)
            student, mask = logits_fn(model, batch)
            forget_kl = masked_kl(teacher, student, mask)
            loss, retain_kl = forget_kl, torch.zeros(())
            if both:
                if len(retain_order) < batch_size:
                    retain_order += _order(len(retain), generator)
                kept, retain_order = retain_order[:batch_size], retain_order[batch_size:]
                kept_batch = collate_fn([retain[i] for i in kept])
                with torch.no_grad():
                    remembered = logits_fn(original, kept_batch)[0]
                student_kept, kept_mask = logits_fn(model, kept_batch)
                retain_kl = masked_kl(remembered, student_kept, kept_mask)
                task = loss_fn(model, collate_fn([retain[i] for i in kept] + ([learn[i] for i in chosen] if learn else [])))
                loss = weight * (task + retain_kl) + (1 - weight) * forget_kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            report["losses"].append(float(loss.detach()))
            report["forget_kl"].append(float(forget_kl.detach()))
            report["retain_kl"].append(float(retain_kl.detach()))
            bar.update()
    bar.close()
    model.eval()
    return {"steps": len(report["losses"]), **report}
