"""Fixtures for the recommendation-arm tests: the real data folder and small slices of it.

The tests read the real files in ``../shared/data`` (or ``$ERASER_DATA_DIR``); where no data
folder exists they are skipped with the reason, never silently passed.
"""

import pytest

from eraserlab import datasets
from eraserlab.rec import catalog, readers
from eraserlab.rec.sequences import user_sequences


def _root_with(name: str):
    """The data folder if it holds dataset ``name``, else skip the test."""
    try:
        root = datasets.data_dir()
    except datasets.MissingDataError as error:
        pytest.skip(f"no data folder: {error}")
    if not (root / name).is_dir():
        pytest.skip(f"{root / name} is absent")
    return root


@pytest.fixture(scope="session")
def data_root():
    """The data folder with MovieLens (most tests need it)."""
    return _root_with("ml-100k")


@pytest.fixture(scope="session")
def lastfm_root():
    """The data folder with Last.fm."""
    return _root_with("hetrec2011-lastfm-2k")


@pytest.fixture(scope="session")
def bx_root():
    """The data folder with Book-Crossing."""
    return _root_with("book-crossing")


@pytest.fixture(scope="session")
def movielens_ratings(data_root):
    return readers.read_movielens_ratings(data_root)


@pytest.fixture(scope="session")
def movielens_titles(data_root):
    return catalog.movielens_titles(data_root)


@pytest.fixture(scope="session")
def movielens_sequences(movielens_ratings):
    return user_sequences(movielens_ratings, ["timestamp"], rating_column="rating")
