"""The text the LLM reads and writes: LLaRA's next-item prompt and TALLRec's yes/no prompt.

* Next item (LLaRA, ``prompt/movie.txt`` and ``prompt/artist.txt`` of the official code, first
  template): the history's names and the candidates' names, each list joined by ", ", then
  "Answer:"; the answer is the next item's name. LLaRA draws one of three wordings per batch at
  random; one fixed wording is used here so that the loss of an example is a function of the
  example (the influence maths needs that). LLaRA ends the answer with "\\n" and keeps the first
  line of the output; here the answer ends with the tokenizer's EOS token.
* Preference (TALLRec): the liked and the disliked history items, then "Whether the user will
  like the target <noun> "<name>"?"; the answer is " Yes" or " No" (TALLRec writes "Yes." /
  "No."; the full stop carries no information and costs a token).

How an item is *shown* is the encoder's choice (:class:`eraserlab.rec.task.PromptEncoder`): its
title (LLaRA's text-only prompt), its atomic item token (the small model's default), or both.
LLaRA's hybrid prompt places a projected SASRec embedding after each title; the item token plays
that part here, with an embedding learnt in pre-training instead of by SASRec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

YES, NO = " Yes", " No"


@dataclass(frozen=True)
class Wording:
    """The domain words of the prompts for one dataset.

    Attributes:
        noun: What an item is ("movie", "music artist", "book").
        consumed: What the user did with the history ("watched", "listened to", "read").
        will_consume: The future form ("will watch", "will listen to", "will read").
        name_kind: What the candidates' names are ("movie titles", "artist names", "book titles").
    """

    noun: str
    consumed: str
    will_consume: str
    name_kind: str


WORDINGS: dict[str, Wording] = {
    "movielens": Wording("movie", "watched", "will watch", "movie titles"),
    "lastfm": Wording("music artist", "listened to", "will listen to", "artist names"),
    "bookcrossing": Wording("book", "read", "will read", "book names"),
}


def wording_for(dataset: str) -> Wording:
    """The :class:`Wording` of a dataset name (``"movielens"``, ``"lastfm"``, ``"bookcrossing"``)."""
    try:
        return WORDINGS[dataset]
    except KeyError:
        raise ValueError(f"No prompt wording for dataset {dataset!r}; one of {sorted(WORDINGS)}.") from None


def next_item_prompt(history: Sequence[str], candidates: Sequence[str], wording: Wording, separator: str = ", ") -> str:
    """LLaRA's first prompt template.

    Args:
        history: How each history item is shown (its title, or its item token), oldest first.
        candidates: How each candidate is shown, in the example's fixed order.
        wording: The dataset's words.
        separator: Between items (", " for titles as LLaRA; "" for atomic item tokens).

    Returns:
        The prompt; the answer follows it directly.
    """
    return (
        f"This user has {wording.consumed} {separator.join(history)} in the previous. "
        f"Please predict the next {wording.noun} this user {wording.will_consume}. Choose the answer "
        f"from the following {len(candidates)} {wording.name_kind}: {separator.join(candidates)}. Answer:"
    )


def preference_prompt(
    history: Sequence[str], liked: Sequence[bool], item: str, wording: Wording, separator: str = ", "
) -> str:
    """TALLRec's prompt: liked and disliked history items, then the question about one item.

    Args:
        history: How each history item is shown.
        liked: Whether the user liked each history item.
        item: How the item asked about is shown.
        wording: The dataset's words.
        separator: Between items.

    Returns:
        The prompt; the answer is :data:`YES` or :data:`NO`.
    """
    yes = [h for h, like in zip(history, liked) if like]
    no = [h for h, like in zip(history, liked) if not like]
    return (
        f"User Preference: {separator.join(yes) or 'none'}. "
        f"User Unpreference: {separator.join(no) or 'none'}. "
        f"Whether the user will like the target {wording.noun} {item}? Answer:"
    )


def preference_answer(label: int) -> str:
    """:data:`YES` for label 1, :data:`NO` for 0."""
    return YES if label else NO


def template_texts(dataset: str) -> list[str]:
    """The fixed words of every prompt of a dataset (to train the tokenizer on)."""
    w = wording_for(dataset)
    return [
        f"This user has {w.consumed} in the previous. Please predict the next {w.noun} this user "
        f"{w.will_consume}. Choose the answer from the following 20 {w.name_kind}: . Answer:",
        f"User Preference: none. User Unpreference: none. Whether the user will like the target "
        f"{w.noun} ? Answer:",
        YES,
        NO,
        ", ",
    ]
