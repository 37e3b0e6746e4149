"""Removal problems with a secret or memorised facts, retrained warm and cold, and how each erase scores on them.

Shared by :mod:`benchmarks.recipe_stand_in` and :mod:`benchmarks.memorised_removal`:

* :func:`recipe_case` — the recipe chapter's stand-in, as ``notebooks/erase_your_adapter.ipynb``
  builds it: a random tiny Llama (hidden 32), LoRA r = 4 on q, v (p = 1,024), 240 Markov-chain
  sequences plus 16 copies of a secret, 80 epochs. The secret is partly learnt, not memorised.
* :func:`secret_case` — a secret that *is* memorised: the base is first pre-trained on the Markov
  chain (so the adapter has a language to depart from), the adapter is LoRA r = 4 on q, v and
  lm_head (p = 1,248), the secret starts with a trigger token never seen in pre-training and uses
  only tokens the chain emits; 16 copies among 240 sequences; 80 epochs → its loss ≈ 0.03 and
  greedy decoding from the trigger reproduces it.
* :func:`facts_case` — 100 memorised facts "⟨1⟩ s ⟨2⟩ a₁ a₂" (subject s, attribute a₁a₂, loss on the
  attribute only; :data:`eraserlib.causal_lm_loss`), vocabulary 160, LoRA r = 8 on q, v, lm_head,
  200 epochs → loss ≈ 0.003; 10 removed.

Each case holds held-out examples of the same kind (never trained on): random secrets with the
trigger, facts with unseen subjects. :func:`score` measures a model: the removed examples' mean
loss, the held-out and retained data's mean losses, the membership-inference AUC between removed
and held-out losses (low loss = "member"; 0.5 = indistinguishable) and greedy reproduction.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import eraserlib
from eraserlib.toy import secret
from eraserlib.toy.secret import TARGETS, lora_adapter, memorised_secret, pretrained_base
from eraserlib.toy.tiny_lora import language_model_loss
from eraserlib.training import TrainConfig, train

#: The recipe chapter's secret (notebooks/erase_your_adapter.ipynb).
RECIPE_SECRET = [5, 9, 14, 7, 20, 3, 11, 18, 6, 12]


@dataclass
class Case:
    """A trained adapter, its data, a removal request and the held-out reference."""

    name: str
    model: nn.Module
    fresh_adapter: Callable[[], nn.Module]
    loss_fn: Any
    collate_fn: Callable | None
    train_data: list
    request: eraserlib.InstanceRemoval
    retained: list
    heldout: list
    training: TrainConfig
    prompt_length: int
    info: dict = field(default_factory=dict)

    def erase_arguments(self) -> dict[str, Any]:
        return {"collate_fn": self.collate_fn, "batch_size": 32, "progress": False}


def recipe_case(seed: int = 0, epochs: int = 80, copies: int = 16, sequences: int = 240) -> Case:
    """The recipe chapter's stand-in (see the module docstring; ``sequences`` < 240 only for quick runs)."""
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences

    config = TinyLoraConfig(hidden_size=32, rank=4, num_examples=sequences, branching=2, seed=seed)
    sequences = make_sequences(config)
    secret = torch.tensor(RECIPE_SECRET)
    train_data = sequences + [secret.clone() for _ in range(copies)]
    training = TrainConfig(epochs=epochs, lr=1e-2, batch_size=32, max_grad_norm=None, seed=seed, decay_to=0.02)
    model = build_model(config)
    train(model, language_model_loss, train_data, training, progress=False)
    generator = torch.Generator().manual_seed(seed + 123)  # random secrets of the same kind: 10 tokens of 3…23
    heldout = [torch.randint(3, config.vocab_size, (len(secret),), generator=generator) for _ in range(32)]
    request = eraserlib.InstanceRemoval([z for z in train_data if torch.equal(z, secret)])
    return Case("recipe stand-in", model, lambda: build_model(config), language_model_loss, None, train_data, request,
                sequences, heldout, training, prompt_length=1,
                info={"p": _parameters(model), "n": len(train_data), "copies": copies, "epochs": epochs,
                      "base": "random (as the recipe chapter)", "adapter": "LoRA r=4 on q_proj, v_proj"})


def secret_case(seed: int = 0, epochs: int = 80, copies: int = 16, sequences: int = 240) -> Case:
    """A memorised secret on a pre-trained base (:func:`eraserlib.toy.secret.memorised_secret`)."""
    stand_in = memorised_secret(seed, epochs, copies, sequences)
    request = eraserlib.InstanceRemoval([z for z in stand_in.train_data if torch.equal(z, stand_in.secret)])
    return Case("memorised secret", stand_in.model, stand_in.fresh_adapter, language_model_loss, None,
                stand_in.train_data, request, stand_in.sequences, stand_in.heldout, stand_in.training,
                prompt_length=1,
                info={"p": _parameters(stand_in.model), "n": len(stand_in.train_data), "copies": copies,
                      "epochs": epochs, "base": "pre-trained on the Markov chain",
                      "adapter": "LoRA r=4 on q_proj, v_proj, lm_head"})


def facts_case(seed: int = 0, num_facts: int = 100, removed: int = 10, epochs: int = 200) -> Case:
    """Memorised facts ⟨1⟩ s ⟨2⟩ a₁ a₂ (see the module docstring)."""
    from eraserlib.losses import CausalLMCollator, causal_lm_loss
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_base_model

    config = TinyLoraConfig(vocab_size=160, hidden_size=32, rank=8, num_examples=240, branching=2, seed=seed)
    base = pretrained_base(config, seed)
    state = copy.deepcopy(base.state_dict())

    def fresh() -> nn.Module:
        again = build_base_model(config)
        again.load_state_dict(state)
        return lora_adapter(again, config.rank, TARGETS, seed)

    generator = torch.Generator().manual_seed(seed + 9)
    subjects = torch.randperm(config.vocab_size - 3, generator=generator)[:num_facts + 32] + 3

    def fact(subject: int) -> dict[str, torch.Tensor]:
        a = torch.randint(3, config.vocab_size, (2,), generator=generator)
        ids = torch.tensor([1, subject, 2, int(a[0]), int(a[1])])
        return {"input_ids": ids, "labels": torch.tensor([-100, -100, -100, int(a[0]), int(a[1])])}

    facts = [fact(int(s)) for s in subjects]
    train_data, heldout = facts[:num_facts], facts[num_facts:]
    collate = CausalLMCollator()
    training = TrainConfig(epochs=epochs, lr=1e-2, batch_size=32, max_grad_norm=1.0, seed=seed, decay_to=0.02)
    model = fresh()
    train(model, causal_lm_loss, train_data, training, collate_fn=collate, progress=False)
    chosen = sorted(torch.randperm(num_facts, generator=torch.Generator().manual_seed(seed + 10))[:removed].tolist())
    request = eraserlib.InstanceRemoval.from_indices(train_data, chosen)
    retained = [z for i, z in enumerate(train_data) if i not in set(chosen)]
    return Case("memorised facts", model, fresh, causal_lm_loss, collate, train_data, request, retained, heldout,
                training, prompt_length=3,
                info={"p": _parameters(model), "n": num_facts, "removed": removed, "epochs": epochs,
                      "base": "pre-trained on the Markov chain (vocabulary 160)",
                      "adapter": "LoRA r=8 on q_proj, v_proj, lm_head"})


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- measuring -------------------------------------------------------------------------------------
def _ids(example: Any) -> torch.Tensor:
    return example["input_ids"] if isinstance(example, dict) else example


def losses(case: Case, model: nn.Module, examples: list) -> list[float]:
    """Each example's loss under ``model`` (forward passes, eval mode)."""
    return secret.losses(model, examples, case.loss_fn, case.collate_fn)


def greedy_reproduces(case: Case, model: nn.Module, example: Any) -> bool:
    """Whether greedy decoding from the example's prompt reproduces the rest of it."""
    return secret.greedy_reproduces(model, _ids(example), case.prompt_length)


def score(case: Case, model: nn.Module) -> dict[str, float]:
    """Removed / held-out / retained mean losses, membership AUC, greedy reproduction of the removed examples."""
    distinct = []
    for z in case.request.examples:  # copies of one secret count once
        if not any(torch.equal(_ids(z), _ids(w)) for w in distinct):
            distinct.append(z)
    removed, held = losses(case, model, distinct), losses(case, model, case.heldout)
    retained = losses(case, model, case.retained)
    membership = secret.membership_auc(removed, held)
    return {"removed_loss": sum(removed) / len(removed), "heldout_loss": sum(held) / len(held),
            "retained_loss": sum(retained) / len(retained), "membership_auc": membership,
            "greedy_reproduced": sum(greedy_reproduces(case, model, z) for z in distinct) / len(distinct)}


def retrain(case: Case, warm: bool) -> tuple[nn.Module, float]:
    """Retrain on the retained data with the same recipe: from the trained adapter (warm) or a fresh one (cold)."""
    model = copy.deepcopy(case.model) if warm else case.fresh_adapter()
    start = time.perf_counter()
    train(model, case.loss_fn, case.retained, case.training, collate_fn=case.collate_fn, progress=False)
    return model, time.perf_counter() - start


def share(value: float, before: float, reference: float) -> float:
    """(value − before) / (reference − before): 1 = the reference's change exactly (NaN when it made none)."""
    return (value - before) / (reference - before) if reference != before else math.nan


DIAGNOSTICS = ("damping", "steps_taken", "corrected_objective", "step_lengths", "step_damping", "step_stop_reason",
               "removal_stop_reason", "gradient_count", "hvp_count", "gauss_newton_count", "forward_count",
               "gauss_newton_method", "stop_reason", "wall_time_s")


def run_method(case: Case, label: str, references: dict[str, dict[str, float]], **arguments: Any) -> dict[str, Any]:
    """Erase with ``arguments``, apply, score; shares of the way to the warm and the cold retrain."""
    model = copy.deepcopy(case.model)
    row: dict[str, Any] = {"method": label, "settings": {k: v for k, v in arguments.items()
                                                          if k not in ("heldout", "options")}}
    try:
        result = eraserlib.erase(model, case.loss_fn, case.train_data, case.request,
                                 **{**case.erase_arguments(), **arguments})
    except eraserlib.EraserError as error:
        row["error"] = f"{type(error).__name__}: {error}"[:300]
        return row
    eraserlib.apply_delta(model, result.delta)
    row.update(score(case, model))
    row.update({k: result.diagnostics.get(k) for k in DIAGNOSTICS})
    return with_shares(row, references)


def with_shares(row: dict[str, Any], references: dict[str, dict[str, float]]) -> dict[str, Any]:
    before = references["before"]
    for name in ("warm", "cold"):
        for quantity in ("removed_loss", "retained_loss"):
            row[f"{quantity}_share_{name}"] = share(row[quantity], before[quantity], references[name][quantity])
    return row


__all__ = ["Case", "facts_case", "recipe_case", "retrain", "run_method", "score", "secret_case", "share",
           "with_shares"]
