"""The TALLRec-style binary task on MovieLens and Book-Crossing."""

import shutil
import warnings

import pytest

from eraserlab.rec import preference
from eraserlab.rec.preference import MissingTitlesWarning, build_preference_examples

USERS = 60


@pytest.fixture(scope="module")
def small(movielens_sequences, movielens_titles):
    return build_preference_examples(movielens_sequences[:USERS], movielens_titles, like_above=3)


def test_labels_follow_the_rating_threshold(small, movielens_ratings):
    r = movielens_ratings
    rating = dict(zip(zip(r["user"], r["item"]), r["rating"]))
    examples = small["train"] + small["validation"] + small["test"]
    assert {e.label for e in examples} == {0, 1}
    for e in examples:
        assert e.rating == rating[(e.user, e.item)]
        assert e.label == int(e.rating > 3)  # 3 is "not liked": TALLRec's rule is strict
        assert e.history_liked == tuple(rating[(e.user, i)] > 3 for i in e.history)
        assert 3 <= len(e.history) <= 10 and e.item not in e.history


def test_same_split_as_the_next_item_task(small, movielens_sequences):
    lengths = {s.user: len(s.items) for s in movielens_sequences[:USERS]}
    assert {e.user: e.position for e in small["test"]} == {u: n - 1 for u, n in lengths.items()}
    assert len(small["train"]) == sum(n - 5 for n in lengths.values())


def test_movielens_preference_dataset(data_root):
    dataset = preference.movielens_preference(data_root, max_train_per_user=1)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (943, 943, 943)
    assert dataset.title_source == "title" and dataset.like_above == 3
    assert "55.4% of ratings" in dataset.notes[0]  # (34,174 + 21,201) / 100,000 rated 4 or 5


@pytest.fixture(scope="module")
def bookcrossing(bx_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTitlesWarning)
        return preference.bookcrossing_preference(bx_root, seed=0)


def test_bookcrossing_warns_that_books_are_named_by_isbn(bx_root):
    with pytest.warns(MissingTitlesWarning, match="ISBN"):
        preference.bookcrossing_preference(bx_root, seed=0, max_train_per_user=0)


def test_bookcrossing_is_named_by_isbn_and_says_so(bookcrossing):
    dataset = bookcrossing
    assert dataset.title_source == "isbn"
    assert any("named by their ISBN" in note for note in dataset.notes)
    assert any("3.4% slice" in note for note in dataset.notes)
    e = dataset.test[0]
    assert e.item_title == dataset.item_keys[e.item]  # the name is the ISBN itself
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (8575, 559, 699)


def test_bookcrossing_explicit_ratings_and_threshold(bookcrossing, bx_root):
    dataset = bookcrossing
    examples = dataset.train + dataset.validation + dataset.test
    assert min(e.rating for e in examples) >= 1  # implicit 0s are left out by default
    assert all(e.label == int(e.rating >= 6) for e in examples)
    with pytest.warns(MissingTitlesWarning):
        implicit = preference.bookcrossing_preference(
            bx_root, seed=0, include_implicit=True, max_train_per_user=2
        )
    zeros = [e for e in implicit.train if e.rating == 0]
    assert zeros and all(e.label == 0 for e in zeros)  # TALLRec counts them as "not liked"


def test_bookcrossing_order_is_seeded(bookcrossing, bx_root):
    a = bookcrossing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingTitlesWarning)
        b = preference.bookcrossing_preference(bx_root, seed=0)
        c = preference.bookcrossing_preference(bx_root, seed=1)
    assert a == b
    assert [e.user for e in a.test] == [e.user for e in c.test]  # same users...
    assert [e.item for e in a.test] != [e.item for e in c.test]  # ...in another order


def test_bookcrossing_uses_titles_when_bx_books_is_supplied(tmp_path, bx_root, bookcrossing):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    shutil.copy(bx_root / "book-crossing" / "BX-Book-Ratings.partial.csv", folder)
    known = bookcrossing.test[0].item_title
    (folder / "BX-Books.csv").write_bytes(
        b'"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"S";"M";"L"\r\n'
        + f'"{known}";"A Known Book";"Some Author";"2001";"P";"s";"m";"l"\r\n'.encode("latin-1")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingTitlesWarning)
        dataset = preference.bookcrossing_preference(tmp_path, seed=0, max_train_per_user=0)
    assert dataset.title_source == "title"
    assert dataset.test[0].item_title == '"A Known Book" by Some Author'
