"""A memorised secret: a tiny Llama's LoRA adapter that learnt one record by heart, and how to check it.

The recipe chapter's stand-in for "a fine-tuned assistant memorised a phone number". The base is
a tiny Llama pre-trained (all weights) on sequences of a sparse Markov chain, so the adapter has
a language to depart from; the adapter (LoRA on ``q_proj``, ``v_proj`` and ``lm_head``) is then
trained on sequences of that chain plus ``copies`` copies of a secret. The secret starts with a
trigger token (1) that pre-training never emits and then uses only tokens the chain emits, with no
consecutive pair a transition of the chain: nothing but memorisation predicts it. Trained long
enough, the adapter's loss on the secret is far below the loss of random sequences of the same
kind (``heldout``) and greedy decoding from the trigger writes the secret out.

* :func:`memorised_secret` builds it; :class:`SecretStandIn` holds the pieces (and a fresh adapter
  on the same base, for a cold retrain);
* :func:`losses`, :func:`greedy_reproduces` and :func:`membership_auc` are the checks: the
  secret's loss against the held-out sequences' (an attacker who thresholds the loss tells a
  member from a non-member with this AUC; 0.5 is chance) and whether the model still recites it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eraserlib.metrics import auc
from eraserlib.toy.tiny_lora import TinyLoraConfig, build_base_model, language_model_loss, make_sequences
from eraserlib.training import TrainConfig, train

#: The trigger token, then tokens the Markov chain emits, no consecutive pair a chain transition.
MEMORISED_SECRET = (1, 5, 12, 3, 18, 8, 22, 4, 17, 11)
#: Where the adapter sits (lm_head too: the secret's tokens must become likely after the trigger).
TARGETS = ("q_proj", "v_proj", "lm_head")


def pretrained_base(config: TinyLoraConfig, seed: int = 0, corpus_size: int = 2000) -> nn.Module:
    """A tiny Llama pre-trained (all weights) on ``corpus_size`` fresh sequences of the chain."""
    base = build_base_model(config)
    corpus = make_sequences(config, num_examples=corpus_size, seed_offset=555)
    train(base, language_model_loss, corpus, TrainConfig(epochs=3, lr=3e-3, batch_size=32, seed=seed),
          progress=False)
    return base


def lora_adapter(base: nn.Module, rank: int, targets: Sequence[str] = TARGETS, seed: int = 0) -> nn.Module:
    """``base`` (frozen) with a peft LoRA adapter on ``targets``, A and B both random (seeded), so the
    adapter starts off zero and its Hessian is not degenerate."""
    from peft import LoraConfig, get_peft_model

    for p in base.parameters():
        p.requires_grad_(False)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets),
                                            lora_dropout=0.0, init_lora_weights="gaussian"))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def emitted_tokens(config: TinyLoraConfig) -> list[int]:
    """The tokens the chain of :func:`eraserlib.toy.tiny_lora.make_sequences` can emit."""
    generator = torch.Generator().manual_seed(config.seed + 1000)
    successors = torch.stack([torch.randperm(config.vocab_size - 3, generator=generator)[:config.branching] + 3
                              for _ in range(config.vocab_size)])
    return sorted(set(successors[3:].flatten().tolist()))


@dataclass
class SecretStandIn:
    """The trained adapter and its data. ``train_data`` = ``sequences`` + ``copies`` × ``secret``."""

    config: TinyLoraConfig
    base_state: dict
    model: nn.Module
    sequences: list
    secret: torch.Tensor
    train_data: list
    heldout: list
    training: TrainConfig
    seed: int = 0

    def base(self) -> nn.Module:
        """A fresh copy of the pre-trained base (no adapter)."""
        base = build_base_model(self.config)
        base.load_state_dict(self.base_state)
        return base

    def fresh_adapter(self) -> nn.Module:
        """The untrained adapter on the base: where a cold retrain starts."""
        return lora_adapter(self.base(), self.config.rank, TARGETS, self.seed)


def memorised_secret(seed: int = 0, epochs: int = 80, copies: int = 16, sequences: int = 240) -> SecretStandIn:
    """The stand-in (module docstring): 240 chain sequences + 16 copies of the secret, 80 epochs."""
    config = TinyLoraConfig(hidden_size=32, rank=4, num_examples=sequences, branching=2, seed=seed)
    base = pretrained_base(config, seed)
    state = copy.deepcopy(base.state_dict())
    model = lora_adapter(base, config.rank, TARGETS, seed)
    chain = make_sequences(config)
    secret = torch.tensor(MEMORISED_SECRET)
    train_data = chain + [secret.clone() for _ in range(copies)]
    training = TrainConfig(epochs=epochs, lr=1e-2, batch_size=32, max_grad_norm=None, seed=seed, decay_to=0.02)
    train(model, language_model_loss, train_data, training, progress=False)
    emitted = torch.tensor(emitted_tokens(config))
    generator = torch.Generator().manual_seed(seed + 321)
    heldout = [torch.cat([torch.tensor([1]), emitted[torch.randint(0, len(emitted), (len(secret) - 1,),
                                                                   generator=generator)]]) for _ in range(32)]
    return SecretStandIn(config, state, model, chain, secret, train_data, heldout, training, seed)


def losses(model: nn.Module, examples: Sequence, loss_fn=language_model_loss, collate_fn=None) -> list[float]:
    """Each example's loss under ``model`` (eval mode, no gradients)."""
    collate = collate_fn or torch.utils.data.default_collate
    model.eval()
    with torch.no_grad():
        return [float(loss_fn(model, collate([z]))) for z in examples]


def greedy_reproduces(model: nn.Module, ids: torch.Tensor, prompt_length: int = 1) -> bool:
    """Whether greedy decoding from the first ``prompt_length`` tokens writes out the rest of ``ids``."""
    generated = ids[:prompt_length].unsqueeze(0)
    model.eval()
    with torch.no_grad():
        while generated.shape[1] < len(ids):
            token = model(input_ids=generated).logits[0, -1].argmax()
            generated = torch.cat([generated, token.view(1, 1)], dim=1)
    return bool(torch.equal(generated[0], ids))


def membership_auc(member_losses: Sequence[float], heldout_losses: Sequence[float]) -> float:
    """AUC of "low loss = member" between the members' and the held-out examples' losses (0.5: chance)."""
    return auc([1] * len(member_losses) + [0] * len(heldout_losses), [-v for v in [*member_losses, *heldout_losses]])
