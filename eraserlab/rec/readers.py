"""Readers for the raw recommendation files, each returning a tidy :class:`pandas.DataFrame`.

Every reader takes the data folder (see :func:`eraserlab.datasets.data_dir`) and reads the
files exactly as their publishers distribute them; encodings, separators and the known
malformed lines are described in ``../shared/data/README.md``. Column names are the same
across datasets: ``user``, ``item``, ``rating`` / ``weight``, ``timestamp``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from eraserlab.datasets import dataset_dir, require_files

MOVIELENS = "ml-100k"
LASTFM = "hetrec2011-lastfm-2k"
BOOKCROSSING = "book-crossing"


# --- MovieLens 100K -----------------------------------------------------------------------------


def read_movielens_ratings(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``ml-100k/u.data``: 100,000 ratings, tab-separated, no header.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``user``, ``item`` (ids from 1), ``rating`` (1–5), ``timestamp`` (Unix seconds),
        all int64, in file order.
    """
    folder = require_files(MOVIELENS, ["u.data"], root)
    return pd.read_csv(
        folder / "u.data",
        sep="\t",
        header=None,
        names=["user", "item", "rating", "timestamp"],
        dtype="int64",
    )


def read_movielens_items(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``ml-100k/u.item``: 1,682 movies, ``|``-separated, ISO-8859-1.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``item`` (int, from 1), ``title`` (raw, with its year, e.g.
        ``"Usual Suspects, The (1995)"``), ``release_date`` (str, may be empty), indexed 0..n-1.
    """
    folder = require_files(MOVIELENS, ["u.item"], root)
    # The file is latin-1 (e.g. "Misérables, Les"); reading it as UTF-8 fails on 9 titles.
    frame = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        usecols=[0, 1, 2],
        names=["item", "title", "release_date"],
        dtype={"item": "int64", "title": str, "release_date": str},
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
    )
    return frame


# --- HetRec 2011 Last.fm 2K ---------------------------------------------------------------------


def read_lastfm_listening(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``user_artists.dat``: 92,834 (user, artist, play count) rows; no timestamps.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``user``, ``item`` (the artist id), ``weight`` (play count), all int64.
    """
    folder = require_files(LASTFM, ["user_artists.dat"], root)
    frame = pd.read_csv(folder / "user_artists.dat", sep="\t", dtype="int64")
    return frame.rename(columns={"userID": "user", "artistID": "item"})


def read_lastfm_artists(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``artists.dat``: 17,632 artists (UTF-8, tab-separated).

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``item`` (artist id, int64) and ``name`` (str).
    """
    folder = require_files(LASTFM, ["artists.dat"], root)
    frame = pd.read_csv(
        folder / "artists.dat",
        sep="\t",
        encoding="utf-8",
        usecols=["id", "name"],
        dtype={"id": "int64", "name": str},
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,  # some names contain a double quote that is not a CSV quote
    )
    return frame.rename(columns={"id": "item"})


def read_lastfm_tag_assignments(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``user_taggedartists.dat``: 186,479 (user, artist, tag, day) rows.

    These are the only dates in the Last.fm files (day resolution); see
    :func:`eraserlab.rec.next_item.lastfm_next_item` for why they do not order the histories.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``user``, ``item`` (artist id), ``tag``, ``date`` (``datetime64``).
    """
    folder = require_files(LASTFM, ["user_taggedartists.dat"], root)
    frame = pd.read_csv(folder / "user_taggedartists.dat", sep="\t", dtype="int64")
    dates = pd.to_datetime(
        {"year": frame["year"], "month": frame["month"], "day": frame["day"]}, errors="coerce"
    )
    return pd.DataFrame(
        {"user": frame["userID"], "item": frame["artistID"], "tag": frame["tagID"], "date": dates}
    )


# --- Book-Crossing ------------------------------------------------------------------------------

BX_RATINGS_FULL = "BX-Book-Ratings.csv"
BX_RATINGS_PARTIAL = "BX-Book-Ratings.partial.csv"
BX_USERS = "BX-Users.csv"
BX_BOOKS = "BX-Books.csv"


def read_bx_csv(path: str | os.PathLike, columns: list[str], header: bool | None = None):
    """Parse one Book-Crossing CSV, tolerating its malformed lines.

    The files are ``;``-separated, double-quoted, latin-1, CRLF, with backslash-escaped quotes
    inside fields (``"\\"8804501367\\""``) and quoted line breaks. Rows with the wrong number of
    fields are skipped and counted, never guessed.

    Args:
        path: A ``.csv`` or gzip-compressed ``.csv.gz`` file.
        columns: The names to give the fields, in file order.
        header: Whether the first line is a header; ``None`` detects it (the first field of a
            header is ``User-ID`` or ``ISBN``, never a number).

    Returns:
        ``(frame, skipped)``: a DataFrame of strings with ``columns``, and the number of
        malformed rows skipped.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as raw:
        # newline="" keeps the quoted line break inside User-ID 275081's location intact.
        text = io.TextIOWrapper(raw, encoding="latin-1", newline="")
        reader = csv.reader(text, delimiter=";", quotechar='"', escapechar="\\", doublequote=False)
        rows, skipped = [], 0
        first = True
        for row in reader:
            if first:
                first = False
                is_header = header if header is not None else _looks_like_header(row)
                if is_header:
                    continue
            if len(row) != len(columns):
                skipped += 1
                continue
            rows.append(row)
    return pd.DataFrame(rows, columns=columns, dtype=str), skipped


def read_bx_ratings(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read Book-Crossing ratings: the full ``BX-Book-Ratings.csv`` if present, else the slice.

    The slice ``BX-Book-Ratings.partial.csv`` (39,268 rows, users 43,842–55,178, no header) is
    what the project's data folder holds; a user who supplies the full file gets it instead.
    ISBNs are stripped of the stray quotes and backslashes of the malformed lines.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``user`` (int64), ``isbn`` (str), ``rating`` (int64; 1–10 explicit, 0 implicit).
        ``frame.attrs`` holds ``source`` (the file name), ``partial`` (bool) and ``skipped_rows``.
    """
    folder = require_files(BOOKCROSSING, [f"{BX_RATINGS_FULL}|{BX_RATINGS_PARTIAL}"], root)
    name = BX_RATINGS_FULL if (folder / BX_RATINGS_FULL).is_file() else BX_RATINGS_PARTIAL
    frame, skipped = read_bx_csv(folder / name, ["user", "isbn", "rating"])
    frame["isbn"] = frame["isbn"].str.strip('"\\ ')
    frame = frame.astype({"user": "int64", "rating": "int64"})
    frame.attrs.update(source=name, partial=name == BX_RATINGS_PARTIAL, skipped_rows=skipped)
    if name == BX_RATINGS_PARTIAL:
        warnings.warn(
            f"Book-Crossing: using {name}, a 3.4% slice of the ratings "
            f"({len(frame):,} rows); put the full {BX_RATINGS_FULL} in {folder} to use all "
            "of them.",
            stacklevel=2,
        )
    return frame


def read_bx_users(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``BX-Users.csv.gz`` (or ``BX-Users.csv``): 278,858 users.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``user`` (int64), ``location`` (str), ``age`` (float, NaN where the file says
        ``NULL``). ``frame.attrs["skipped_rows"]`` counts malformed rows.
    """
    folder = require_files(BOOKCROSSING, [f"{BX_USERS}.gz|{BX_USERS}"], root)
    path = folder / f"{BX_USERS}.gz"
    if not path.is_file():
        path = folder / BX_USERS
    frame, skipped = read_bx_csv(path, ["user", "location", "age"], header=True)
    frame["user"] = frame["user"].astype("int64")
    frame["age"] = pd.to_numeric(frame["age"].replace("NULL", np.nan), errors="coerce")
    frame.attrs["skipped_rows"] = skipped
    return frame


def read_bx_books(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read ``BX-Books.csv`` (not in the project's data folder: a user must supply it).

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        Columns ``isbn``, ``title``, ``author``, ``year``, ``publisher`` (str).
        ``frame.attrs["skipped_rows"]`` counts the lines with stray separators that were skipped.

    Raises:
        eraserlab.datasets.MissingDataError: The file is absent; the message says where it goes.
    """
    folder = require_files(BOOKCROSSING, [BX_BOOKS], root)
    columns = ["isbn", "title", "author", "year", "publisher", "image_s", "image_m", "image_l"]
    frame, skipped = read_bx_csv(folder / BX_BOOKS, columns)
    frame = frame[["isbn", "title", "author", "year", "publisher"]].copy()
    frame["isbn"] = frame["isbn"].str.strip('"\\ ')
    frame.attrs["skipped_rows"] = skipped
    return frame


def has_bx_books(root: str | os.PathLike | None = None) -> bool:
    """Whether ``BX-Books.csv`` (book titles and authors) is present.

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        ``True`` when the file exists.
    """
    return (dataset_dir(BOOKCROSSING, root) / BX_BOOKS).is_file()


def _looks_like_header(row: list[str]) -> bool:
    """A BX header starts with a column name (``User-ID``, ``ISBN``), a data row with a value."""
    return bool(row) and row[0] in {"User-ID", "ISBN"}


# --- LLaRA's processed splits -------------------------------------------------------------------

#: LLaRA's file for each split (``data/ref/<dataset>/`` in its repository).
LLARA_FILES = {"train": "train_data.df", "validation": "Val_data.df", "test": "Test_data.df"}


def read_llara_split(path: str | os.PathLike, padding_item_id: int) -> pd.DataFrame:
    """Read one of LLaRA's pickled DataFrames and strip its padding.

    LLaRA stores each split as a pickled DataFrame with ``seq`` (a history padded to 10 with
    ``padding_item_id``), ``len_seq`` (the real length) and ``next`` (the target). MovieLens
    files hold ``(item id, rating)`` pairs, LastFM files plain item ids; both are accepted.
    Unpickling runs code from the file: only read files from a source you trust.

    Args:
        path: ``train_data.df``, ``Val_data.df`` or ``Test_data.df``.
        padding_item_id: LLaRA's padding id (MovieLens 1682, LastFM 4606).

    Returns:
        Columns ``seq`` (tuple of int item ids, oldest first, padding removed), ``len_seq``
        (int, as in the file) and ``next`` (int).
    """
    frame = pd.read_pickle(path)
    missing = {"seq", "len_seq", "next"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a LLaRA split: it lacks the column(s) {sorted(missing)}")
    seqs = [
        tuple(i for i in map(_llara_item_id, seq) if i != padding_item_id) for seq in frame["seq"]
    ]
    return pd.DataFrame(
        {
            "seq": seqs,
            "len_seq": frame["len_seq"].astype("int64").to_numpy(),
            "next": [_llara_item_id(x) for x in frame["next"]],
        }
    )


def read_llara_names(path: str | os.PathLike) -> dict[int, str]:
    """Read LLaRA's ``id2name.txt`` (LastFM): one ``id::name`` per line.

    Args:
        path: The file.

    Returns:
        ``{item id: name}``, names stripped as LLaRA strips them.
    """
    names = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line:
                continue
            item, name = line.split("::", 1)
            names[int(item)] = name.strip()
    return names


def _llara_item_id(entry) -> int:
    """An item id from a LLaRA sequence entry: an int, or an ``(id, rating)`` pair."""
    if isinstance(entry, (tuple, list, np.ndarray)):
        return int(entry[0])
    return int(entry)
