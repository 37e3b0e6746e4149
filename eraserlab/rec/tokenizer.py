"""A tokenizer trained offline on the item names and the prompt words, saved and reloaded locally.

A byte-level BPE (GPT-2's scheme, so any string can be encoded and nothing is ever ``<unk>``)
trained with the ``tokenizers`` library on the catalogue's names plus the words of the
prompts. With a few thousand merges nearly every word of a title becomes one token (MovieLens:
about 4.5 tokens per title), which keeps the 30-title LLaRA prompt near 170 tokens: short enough
for a laptop CPU. It is wrapped as a :class:`transformers.PreTrainedTokenizerFast`, so it saves
and reloads with ``save_pretrained`` / ``from_pretrained`` on a local folder like any
Hugging Face tokenizer, and a real model's tokenizer can take its place.

Item tokens: with ``item_ids`` the tokenizer also gets one atomic token per item, written
``<item_ID>`` (an added token, so it never splits and never matches natural text). The small
model reads and writes items as these tokens (``PromptEncoder(item_text="token")``). With titles
as text (4.5 tokens each, 174-token prompts) a 64-wide, 2-layer Llama did not learn to copy a
candidate's title into its answer on a CPU budget: 2% of greedy answers named a candidate after
1,000 pre-training steps, 14.5% after 1,400 steps with an added copy curriculum (MovieLens, 200
test users). One token per item cuts the prompt to 64 tokens and the copy to one token.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import re

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
ITEM_TOKEN = re.compile(r"<item_(\d+)>")


def item_token(item: int) -> str:
    """The atomic token of an item id, e.g. ``<item_6>``."""
    return f"<item_{int(item)}>"


def train_tokenizer(
    item_names: Iterable[str],
    prompt_texts: Sequence[str] = (),
    vocab_size: int = 2000,
    prompt_weight: int = 20,
    item_ids: Iterable[int] | None = None,
    atomic_texts: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on item names and prompt words (plus atomic item tokens).

    Args:
        item_names: The catalogue (one name per item; each is seen once).
        prompt_texts: Fixed prompt wording (templates, answers such as " Yes"); repeated
            ``prompt_weight`` times so that its words become single tokens.
        vocab_size: Vocabulary size including the 256 byte symbols and 4 special tokens.
        prompt_weight: How often each prompt text is repeated in the training corpus.
        item_ids: If given, one atomic ``<item_ID>`` token per id is added after the BPE vocabulary.
        atomic_texts: Strings that must be one token whatever the vocabulary size (the answers
            " Yes" and " No", whose probabilities the binary task compares).

    Returns:
        A fast tokenizer with ``<pad>``, ``<unk>``, ``<s>`` and ``</s>``; it adds no special
        tokens by itself (the prompt code places them).
    """
    names = [" " + name for name in item_names]  # names follow a space in every prompt
    if not names:
        raise ValueError("train_tokenizer needs at least one item name.")
    corpus = names + [text for text in prompt_texts for _ in range(prompt_weight)]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    backend.add_tokens([AddedToken(text, normalized=False, special=False) for text in atomic_texts
                        if len(backend.encode(text, add_special_tokens=False).ids) != 1])
    if item_ids is not None:
        backend.add_tokens([AddedToken(item_token(i), single_word=False, normalized=False, special=False)
                            for i in sorted(set(item_ids))])
    return wrap(backend)


def wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` as a transformers tokenizer with this module's special tokens."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS
    )
    tokenizer.padding_side = "left"  # prompts end where the answer starts (see task.py)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | os.PathLike) -> None:
    """Write the tokenizer to ``folder`` (``tokenizer.json`` and its config)."""
    tokenizer.save_pretrained(os.fspath(folder))


def load_tokenizer(folder: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Reload a tokenizer saved by :func:`save_tokenizer` (or any local fast tokenizer folder).

    Args:
        folder: A local folder; nothing is fetched from the Hugging Face hub.

    Returns:
        The tokenizer, with a pad token (the EOS token when the folder defines none, as is
        usual for LLaMA checkpoints) and left padding.
    """
    from transformers import AutoTokenizer

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No tokenizer folder at {folder}: pass a local directory.")
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(folder), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer
