"""Per-user ordering and the leave-last-out split."""

import numpy as np
import pandas as pd
import pytest

from eraserlab.rec.sequences import iter_targets, leave_last_out, user_sequences


def test_user_sequences_order_by_time_then_item():
    frame = pd.DataFrame(
        {
            "user": [2, 1, 1, 1, 2],
            "item": [9, 30, 10, 20, 8],
            "timestamp": [5, 7, 7, 3, 5],
            "rating": [1, 2, 3, 4, 5],
        }
    )
    sequences = user_sequences(frame, ["timestamp"], rating_column="rating")
    assert [s.user for s in sequences] == [1, 2]
    assert sequences[0].items.tolist() == [20, 10, 30]  # t=3, then the t=7 tie by item id
    assert sequences[0].ratings.tolist() == [4, 3, 2]
    assert sequences[1].items.tolist() == [8, 9]


def test_real_movielens_sequences_are_chronological(movielens_sequences, movielens_ratings):
    assert len(movielens_sequences) == 943
    assert sum(len(s.items) for s in movielens_sequences) == 100_000
    times = movielens_ratings.set_index(["user", "item"])["timestamp"]
    for sequence in movielens_sequences[:50]:
        stamps = times.loc[[(sequence.user, i) for i in sequence.items]].to_numpy()
        assert (np.diff(stamps) >= 0).all()


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (3, {"train": [], "validation": [], "test": []}),
        (4, {"train": [], "validation": [], "test": [3]}),
        (5, {"train": [], "validation": [3], "test": [4]}),
        (8, {"train": [3, 4, 5], "validation": [6], "test": [7]}),
    ],
)
def test_leave_last_out(length, expected):
    assert leave_last_out(length, min_history=3) == expected


def test_iter_targets_windows_and_cap():
    frame = pd.DataFrame({"user": [1] * 15, "item": range(100, 115), "t": range(15)})
    sequences = user_sequences(frame, ["t"])
    rows = list(iter_targets(sequences, min_history=3, max_history=10))
    assert [r[2] for r in rows] == list(range(3, 15))
    split, sequence, position, window = rows[-1]
    assert split == "test" and position == 14
    assert sequence.items[window].tolist() == list(range(104, 114))  # the 10 most recent
    assert sequence.items[rows[0][3]].tolist() == [100, 101, 102]
    capped = list(iter_targets(sequences, 3, 10, max_train_per_user=2))
    assert [(r[0], r[2]) for r in capped] == [
        ("train", 11), ("train", 12), ("validation", 13), ("test", 14)
    ]
    assert [r[0] for r in iter_targets(sequences, 3, 10, max_train_per_user=0)] == [
        "validation", "test"
    ]


def test_iter_targets_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="min_history"):
        list(iter_targets([], min_history=5, max_history=3))


def test_every_movielens_split_count(movielens_sequences):
    counts = {"train": 0, "validation": 0, "test": 0}
    for split, *_ in iter_targets(movielens_sequences, 3, 10):
        counts[split] += 1
    # Every user has >= 20 ratings: 3 start a history, 2 are held out, the rest are training.
    assert counts == {"train": 100_000 - 5 * 943, "validation": 943, "test": 943}
