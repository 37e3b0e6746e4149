"""The LLaRA-style next-item task: from a user's last items, name the next one among 20.

Each example holds a history of up to 10 items (at least 3), the true next item, and 20
candidates: the target and 19 negatives, none of which is in the history. Unlike the official
LLaRA/LLMEraser code, which re-samples the candidates every time an example is read (so
metrics move between identical runs), the candidates here are drawn once, from
random numbers that are a hash of ``(seed, user, position)`` (:func:`random_draws`): the same
seed gives the same candidates whatever subset of examples is built, and another seed gives
others. Negatives are also kept distinct *by name* from each other, from the target and from
the history: once the year is dropped, 22 MovieLens names belong to two or three ids (remakes,
movies listed twice), and a generated title must identify exactly one candidate.

Splits are per-user leave-last-out (see :mod:`eraserlab.rec.sequences`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eraserlab.rec import catalog, readers
from eraserlab.rec.random_draws import random_draws
from eraserlab.rec.sequences import (
    SPLITS,
    UserSequence,
    describe_split,
    iter_targets,
    user_sequences,
)

NUM_CANDIDATES = 20
MIN_HISTORY = 3
MAX_HISTORY = 10


@dataclass(frozen=True)
class NextItemExample:
    """One next-item prediction: history → target, with its fixed candidate list.

    Args:
        user: The user id (for LLaRA's processed files, which have none: the row number).
        position: Index of the target in the user's ordered sequence.
        history: Item ids, oldest first (1 to 10 of them).
        history_titles: Their names, aligned with ``history``.
        target: The true next item.
        target_title: Its name.
        candidates: ``num_candidates`` item ids in a shuffled order; the target is among them
            exactly once and no history item is.
        candidate_titles: Their names, aligned with ``candidates`` and all distinct. Only the
            target's name may also occur in the history (a user who rated both MovieLens copies
            of a movie).
    """

    user: int
    position: int
    history: tuple[int, ...]
    history_titles: tuple[str, ...]
    target: int
    target_title: str
    candidates: tuple[int, ...]
    candidate_titles: tuple[str, ...]

    @property
    def target_index(self) -> int:
        """Position of the target in ``candidates``."""
        return self.candidates.index(self.target)


@dataclass(frozen=True)
class NextItemDataset:
    """The three splits of a next-item task, with the item names they use.

    Args:
        name: ``"movielens"``, ``"lastfm"`` or ``"llara-<folder>"``.
        item_titles: ``{item id: name}`` of every item a candidate can be drawn from.
        train: Training examples, by user then position.
        validation: One example per user (where the user has enough items).
        test: One example per user: their last item.
        seed: The seed the candidates were drawn with.
        notes: How the data was built, in sentences for a reader (the book prints them).
    """

    name: str
    item_titles: Mapping[int, str]
    train: tuple[NextItemExample, ...]
    validation: tuple[NextItemExample, ...]
    test: tuple[NextItemExample, ...]
    seed: int
    notes: tuple[str, ...] = ()

    def split(self, name: str) -> tuple[NextItemExample, ...]:
        """The examples of one split (``"train"``, ``"validation"`` or ``"test"``)."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; one of {SPLITS}")
        return getattr(self, name)


def sample_candidates(
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    keys: np.ndarray,
    pool: np.ndarray,
    titles: Mapping[int, str],
    seed: int,
    num_candidates: int = NUM_CANDIDATES,
) -> list[tuple[int, ...]]:
    """For each example, draw ``num_candidates - 1`` negatives and place the target among them.

    A negative is an item of ``pool`` whose id and name differ from the target's, from every
    history item's and from the negatives drawn before it (uniform rejection sampling over
    :func:`random_draws`). The target's slot is uniform too. An example's candidates are a
    function of ``(seed, key, history, target, pool, titles)`` only.

    Args:
        histories: Each example's history item ids.
        targets: Each example's true next item.
        keys: ``(E, K)`` integers identifying each example (user, position).
        pool: ``(N,)`` ids to draw negatives from (the catalogue).
        titles: ``{id: name}`` covering ``pool``, the histories and the targets.
        seed: The dataset seed.
        num_candidates: Length of each returned tuple.

    Returns:
        One tuple per example: the candidates, target included once, in random order.

    Raises:
        ValueError: The pool has too few eligible items for some example.
    """
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be at least 2, got {num_candidates}")
    if len(targets) == 0:
        return []
    need = num_candidates - 1
    # Draws per round: at most ~11 ids are excluded, so one round of 2x nearly always suffices.
    width = 2 * num_candidates
    keys = np.asarray(keys, dtype=np.int64).reshape(len(targets), -1)
    first = random_draws(seed, keys, 0, width + 1)
    slots = (first[:, width] % np.uint64(num_candidates)).tolist()
    first_items = pool[first[:, :width] % np.uint64(len(pool))].tolist()
    result = []
    for index, (history, target) in enumerate(zip(histories, targets)):
        excluded_ids = {int(i) for i in history} | {int(target)}
        excluded_names = {titles[i] for i in excluded_ids}
        negatives: list[int] = []
        draws, round_number = first_items[index], 0
        while len(negatives) < need:
            if round_number > 0:  # rare: more draws for this example only, from later counters
                if round_number > 100:
                    raise ValueError(
                        f"could not draw {need} negatives distinct from a history of "
                        f"{len(history)} items from a pool of {len(pool)}"
                    )
                start = (width + 1) * round_number
                more = random_draws(seed, keys[index : index + 1], start, width)
                draws = pool[more[0] % np.uint64(len(pool))].tolist()
            for item in draws:
                name = titles[item]
                if item in excluded_ids or name in excluded_names:
                    continue
                excluded_ids.add(item)
                excluded_names.add(name)
                negatives.append(item)
                if len(negatives) == need:
                    break
            round_number += 1
        slot = slots[index]
        result.append(tuple(negatives[:slot] + [int(target)] + negatives[slot:]))
    return result


def make_example(
    user: int,
    position: int,
    history: Sequence[int],
    target: int,
    candidates: Sequence[int],
    titles: Mapping[int, str],
) -> NextItemExample:
    """Build a :class:`NextItemExample`, looking up every name in ``titles``.

    Args:
        user: The user id.
        position: Index of the target in the user's sequence.
        history: History item ids, oldest first.
        target: The next item.
        candidates: The candidate ids (target included).
        titles: ``{id: name}``.

    Returns:
        The example.
    """
    history = tuple(map(int, history))
    candidates = tuple(map(int, candidates))
    return NextItemExample(
        user=int(user),
        position=int(position),
        history=history,
        history_titles=tuple(map(titles.__getitem__, history)),
        target=int(target),
        target_title=titles[int(target)],
        candidates=candidates,
        candidate_titles=tuple(map(titles.__getitem__, candidates)),
    )


def build_next_item_dataset(
    name: str,
    sequences: Sequence[UserSequence],
    item_titles: Mapping[int, str],
    *,
    seed: int = 0,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    num_candidates: int = NUM_CANDIDATES,
    max_train_per_user: int | None = None,
    notes: Sequence[str] = (),
) -> NextItemDataset:
    """Turn ordered user sequences into next-item examples with fixed candidates.

    Args:
        name: The dataset's name.
        sequences: From :func:`eraserlab.rec.sequences.user_sequences`.
        item_titles: ``{id: name}``; negatives are drawn from its keys.
        seed: Seeds the candidates (per example, see :func:`random_draws`).
        min_history: Fewest history items (LLaRA: 3).
        max_history: Most history items, the most recent (LLaRA: 10).
        num_candidates: Candidates per example (LLaRA: 20).
        max_train_per_user: Keep only each user's most recent training targets.
        notes: Sentences describing the data, stored on the dataset.

    Returns:
        The dataset.
    """
    pool = np.array(sorted(item_titles), dtype=np.int64)
    targets = list(iter_targets(sequences, min_history, max_history, max_train_per_user))
    histories = [sequence.items[window].tolist() for _, sequence, _, window in targets]
    next_items = [int(sequence.items[position]) for _, sequence, position, _ in targets]
    keys = np.array([(sequence.user, position) for _, sequence, position, _ in targets])
    candidates = sample_candidates(
        histories, next_items, keys, pool, item_titles, seed, num_candidates
    )
    splits: dict[str, list[NextItemExample]] = {split: [] for split in SPLITS}
    for (split, sequence, position, _), history, target, cands in zip(
        targets, histories, next_items, candidates
    ):
        splits[split].append(
            make_example(sequence.user, position, history, target, cands, item_titles)
        )
    return NextItemDataset(
        name=name,
        item_titles=dict(item_titles),
        train=tuple(splits["train"]),
        validation=tuple(splits["validation"]),
        test=tuple(splits["test"]),
        seed=seed,
        notes=tuple(notes),
    )


def movielens_next_item(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    num_candidates: int = NUM_CANDIDATES,
    max_train_per_user: int | None = None,
) -> NextItemDataset:
    """MovieLens 100K as LLaRA uses it: every rating is an interaction, ordered by time.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        seed: Seeds the candidates.
        min_history: Fewest history items.
        max_history: Most history items.
        num_candidates: Candidates per example.
        max_train_per_user: Keep only each user's most recent training targets (``None``: all).

    Returns:
        The dataset; items keep their MovieLens ids (1–1682; LLaRA's files use id − 1).
    """
    ratings = readers.read_movielens_ratings(root)
    titles = catalog.movielens_titles(root)
    sequences = user_sequences(ratings, ["timestamp"], rating_column="rating")
    notes = (
        f"MovieLens 100K: {len(ratings):,} ratings of {len(sequences):,} users on {len(titles):,} "
        "movies; every rating counts as an interaction, ordered by timestamp (ties by item id).",
        "Titles cleaned as LLaRA does: year dropped, a trailing 'The'/'A'/'An' moved to the front. "
        f"{_shared_names(titles)} names then belong to more than one id (remakes such as "
        "'Cape Fear', and movies listed twice); the negatives of one example never share a name.",
        describe_split(min_history, max_history, max_train_per_user),
        _candidates_note(num_candidates),
    )
    return build_next_item_dataset(
        "movielens",
        sequences,
        titles,
        seed=seed,
        min_history=min_history,
        max_history=max_history,
        num_candidates=num_candidates,
        max_train_per_user=max_train_per_user,
        notes=notes,
    )


def lastfm_next_item(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    min_listeners: int = 3,
    min_history: int = MIN_HISTORY,
    max_history: int = MAX_HISTORY,
    num_candidates: int = NUM_CANDIDATES,
    max_train_per_user: int | None = None,
) -> NextItemDataset:
    """HetRec Last.fm 2K as a next-artist task.

    Which artists: those with at least ``min_listeners`` listeners in ``user_artists.dat``.
    With 3 that keeps 4,614 of 17,632 artists and 77,477 of 92,834 listening pairs, close to
    the 4,606 artists of LLaRA's processed split (whose exact rule is not published).

    Order: ``user_artists.dat`` has no timestamps, and the only dates, the days on which a user
    tagged an artist (``user_taggedartists.dat``), cover 20,665 of the 92,834 listening pairs
    with a median of 3 distinct days per user, too few to order histories. So each user's
    artists are ordered by play count, *ascending* (ties by artist id): a history is a run of
    artists the user played less than the target, and the test target is the user's
    most-played artist. These are pseudo-sequences, not time.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).
        seed: Seeds the candidates.
        min_listeners: Keep artists with at least this many listeners.
        min_history: Fewest history items.
        max_history: Most history items.
        num_candidates: Candidates per example.
        max_train_per_user: Keep only each user's most recent training targets (``None``: all).

    Returns:
        The dataset; items are Last.fm artist ids.
    """
    listening = readers.read_lastfm_listening(root)
    names = catalog.lastfm_names(root)
    listeners = listening.groupby("item")["user"].nunique()
    kept = set(listeners.index[listeners >= min_listeners].tolist())
    listening = listening[listening["item"].isin(kept)]
    titles = {item: names[item] for item in sorted(kept)}
    sequences = user_sequences(listening, ["weight"], rating_column="weight")
    notes = (
        f"Last.fm 2K: artists with at least {min_listeners} listeners ({len(titles):,} of "
        f"{len(names):,}; LLaRA keeps 4,606), {len(listening):,} listening pairs of "
        f"{len(sequences):,} users.",
        "user_artists.dat has no timestamps: each user's artists are ordered by play count, "
        "ascending, so histories are pseudo-sequences and the test target is the most-played "
        "artist.",
        describe_split(min_history, max_history, max_train_per_user),
        _candidates_note(num_candidates),
    )
    return build_next_item_dataset(
        "lastfm",
        sequences,
        titles,
        seed=seed,
        min_history=min_history,
        max_history=max_history,
        num_candidates=num_candidates,
        max_train_per_user=max_train_per_user,
        notes=notes,
    )


def llara_next_item(
    folder: str | os.PathLike,
    item_titles: Mapping[int, str],
    *,
    padding_item_id: int,
    seed: int = 0,
    min_history: int = MIN_HISTORY,
    num_candidates: int = NUM_CANDIDATES,
) -> NextItemDataset:
    """LLaRA's processed splits (``train_data.df``, ``Val_data.df``, ``Test_data.df``) as examples.

    For users who have the official data. Item ids are LLaRA's (0-based); pass names keyed the
    same way: for MovieLens ``{i - 1: t for i, t in catalog.movielens_titles(root).items()}``
    with ``padding_item_id=1682``; for LastFM :func:`eraserlab.rec.readers.read_llara_names` on
    its ``id2name.txt`` with ``padding_item_id=4606``. Candidates are fixed by ``seed`` and the
    row (LLaRA re-samples them on every read).

    Args:
        folder: The folder with the three pickles.
        item_titles: ``{LLaRA item id: name}``; negatives are drawn from its keys.
        padding_item_id: The id LLaRA pads short histories with.
        seed: Seeds the candidates.
        min_history: Rows with a shorter history are dropped, as LLaRA does (``len_seq >= 3``).
        num_candidates: Candidates per example.

    Returns:
        The dataset. LLaRA's files carry no user id: ``user`` is the row number within its split.
    """
    pool = np.array(sorted(item_titles), dtype=np.int64)
    splits = {}
    for code, (split, file_name) in enumerate(readers.LLARA_FILES.items()):
        frame = readers.read_llara_split(os.path.join(folder, file_name), padding_item_id)
        frame = frame[frame["len_seq"] >= min_history]
        histories, next_items = list(frame["seq"]), [int(x) for x in frame["next"]]
        keys = np.array([(code, row) for row in range(len(frame))]).reshape(len(frame), 2)
        candidates = sample_candidates(
            histories, next_items, keys, pool, item_titles, seed, num_candidates
        )
        examples = [
            make_example(row, len(history), history, target, cands, item_titles)
            for row, (history, target, cands) in enumerate(zip(histories, next_items, candidates))
        ]
        splits[split] = tuple(examples)
    return NextItemDataset(
        name=f"llara-{os.path.basename(os.path.normpath(folder))}",
        item_titles=dict(item_titles),
        seed=seed,
        notes=(
            f"LLaRA's processed splits from {folder}, rows with len_seq >= {min_history}; "
            f"{num_candidates} candidates per example fixed by seed {seed}.",
        ),
        **splits,
    )


def _candidates_note(num_candidates: int) -> str:
    """The sentence that says how candidates were drawn (datasets' notes)."""
    return (
        f"{num_candidates} candidates per example: the target and {num_candidates - 1} negatives, "
        "none in the history and all with distinct names, fixed by the seed."
    )


def _shared_names(titles: Mapping[int, str]) -> int:
    """How many names are shared by more than one id."""
    counts: dict[str, int] = {}
    for name in titles.values():
        counts[name] = counts.get(name, 0) + 1
    return sum(count > 1 for count in counts.values())
