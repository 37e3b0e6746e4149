"""Readers against the counts verified in ../shared/data/README.md, and on hand-made files."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from eraserlab import datasets
from eraserlab.rec import readers

# --- MovieLens ----------------------------------------------------------------------------------


def test_movielens_ratings_match_the_published_counts(movielens_ratings):
    r = movielens_ratings
    assert len(r) == 100_000
    assert r["user"].nunique() == 943 and (r["user"].min(), r["user"].max()) == (1, 943)
    assert r["item"].nunique() == 1682 and (r["item"].min(), r["item"].max()) == (1, 1682)
    assert not r.duplicated(["user", "item"]).any()
    assert r.groupby("user").size().min() == 20
    assert r["rating"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert (r["timestamp"].min(), r["timestamp"].max()) == (874724710, 893286638)


def test_movielens_items_are_read_as_latin1(data_root):
    items = readers.read_movielens_items(data_root).set_index("item")
    assert len(items) == 1682
    assert items.loc[543, "title"] == "Misérables, Les (1995)"
    assert items.loc[1633, "title"].startswith("Á köldum klaka")
    assert items.loc[267, "title"] == "unknown" and items.loc[267, "release_date"] == ""
    assert items.loc[1128, "title"].endswith(" ")  # the original's trailing space is kept


# --- Last.fm ------------------------------------------------------------------------------------


def test_lastfm_listening_matches_the_published_counts(lastfm_root):
    listening = readers.read_lastfm_listening(lastfm_root)
    assert len(listening) == 92_834
    assert listening["user"].nunique() == 1892
    assert listening["item"].nunique() == 17_632
    assert (listening["weight"].min(), listening["weight"].max()) == (1, 352_698)
    assert not listening.duplicated(["user", "item"]).any()


def test_lastfm_artists_cover_every_listened_artist(lastfm_root):
    artists = readers.read_lastfm_artists(lastfm_root)
    assert len(artists) == 17_632 and artists["item"].is_unique
    assert (artists["item"].min(), artists["item"].max()) == (1, 18_745)
    listened = set(readers.read_lastfm_listening(lastfm_root)["item"])
    assert listened <= set(artists["item"])


def test_lastfm_tag_assignments(lastfm_root):
    tags = readers.read_lastfm_tag_assignments(lastfm_root)
    assert len(tags) == 186_479
    assert tags["user"].nunique() == 1892 and tags["item"].nunique() == 12_523
    assert tags["date"].notna().all()
    assert (tags["date"].dt.year < 2000).sum() == 5  # the five implausible years of the original


# --- Book-Crossing ------------------------------------------------------------------------------


def test_bx_partial_ratings_match_the_documented_slice(bx_root):
    with pytest.warns(UserWarning, match="3.4% slice"):
        ratings = readers.read_bx_ratings(bx_root)
    assert ratings.attrs == {
        "source": "BX-Book-Ratings.partial.csv",
        "partial": True,
        "skipped_rows": 0,
    }
    assert len(ratings) == 39_268  # no header line to lose, no row dropped
    assert (ratings["user"].min(), ratings["user"].max()) == (43_842, 55_178)
    assert ratings["user"].nunique() == 4287
    assert ratings["isbn"].nunique() == 29_248
    assert (ratings["rating"] > 0).sum() == 15_111 and (ratings["rating"] == 0).sum() == 24_157
    assert ratings["user"].is_monotonic_increasing


def test_bx_escaped_quotes_and_latin1_isbns(bx_root):
    with pytest.warns(UserWarning):
        ratings = readers.read_bx_ratings(bx_root)
    escaped = ratings[ratings["user"] == 48821]
    assert "8804501367" in set(escaped["isbn"])  # was "\"8804501367\"" in the file
    assert not ratings["isbn"].str.contains('["\\\\]').any()
    assert ratings["isbn"].str.contains("ß").sum() == 1  # byte 0xDF read as latin-1


def test_bx_users(bx_root):
    users = readers.read_bx_users(bx_root)
    assert len(users) == 278_858 and users.attrs["skipped_rows"] == 0
    assert users["user"].tolist() == list(range(1, 278_859))
    assert users["age"].isna().sum() == 110_762
    location = users.loc[users["user"] == 275081, "location"].item()
    assert location == "cernusco s\n, milan, italy"  # the quoted line break survives


BOOKS_HEADER = (
    '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";'
    '"Image-URL-S";"Image-URL-M";"Image-URL-L"\r\n'
)


def book_line(isbn, title, author):
    return f'"{isbn}";"{title}";"{author}";"2000";"Pub";"s";"m";"l"\r\n'


def test_bx_books_skips_lines_with_stray_separators(tmp_path):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    content = (
        BOOKS_HEADER
        + book_line("0195153448", "Classical Mythology", "Mark P. O. Morford")
        + book_line("0002005018", 'A \\"quoted\\" title', "Richard Bruce Wright")
        # the known defect: a backslash before the closing quote swallows a separator
        + '"078946697X";"DK Readers: X-Men (Level 4)\\";"Michael Teitelbaum";'
        + '"2000";"DK";"s";"m";"l"\r\n'
        + book_line("0374157065", "Flu", "Gina Bari Kolata")
    )
    (folder / "BX-Books.csv").write_bytes(content.encode("latin-1"))
    books = readers.read_bx_books(tmp_path)
    assert books["isbn"].tolist() == ["0195153448", "0002005018", "0374157065"]
    assert books.attrs["skipped_rows"] == 1
    assert books.loc[1, "title"] == 'A "quoted" title'
    assert readers.has_bx_books(tmp_path)


def test_bx_books_missing_names_its_destination(tmp_path):
    with pytest.raises(datasets.MissingDataError, match="BX-Books.csv"):
        readers.read_bx_books(tmp_path)
    assert not readers.has_bx_books(tmp_path)


def test_bx_full_ratings_file_with_header_is_preferred(tmp_path, bx_root):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    shutil.copy(bx_root / "book-crossing" / "BX-Book-Ratings.partial.csv", folder)
    (folder / "BX-Book-Ratings.csv").write_bytes(
        b'"User-ID";"ISBN";"Book-Rating"\r\n'
        b'"276725";"034545104X";"0"\r\n"276726";"0155061224";"5"\r\n'
    )
    ratings = readers.read_bx_ratings(tmp_path)  # no warning: this is the full file
    assert ratings.attrs["partial"] is False
    assert ratings.to_dict("list") == {
        "user": [276725, 276726],
        "isbn": ["034545104X", "0155061224"],
        "rating": [0, 5],
    }


def test_bx_users_reads_an_uncompressed_copy(tmp_path, bx_root):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    with gzip.open(bx_root / "book-crossing" / "BX-Users.csv.gz", "rb") as source:
        head = b"".join(source.readline() for _ in range(4))
    (folder / "BX-Users.csv").write_bytes(head)
    users = readers.read_bx_users(tmp_path)
    assert users["user"].tolist() == [1, 2, 3]
    assert np.isnan(users["age"][0]) and users["age"][1] == 18


# --- LLaRA's processed pickles ------------------------------------------------------------------


def test_llara_movielens_pickle_pairs_and_padding(tmp_path):
    pad = (1682, 0)
    frame = pd.DataFrame(
        {
            "seq": [[(10, 4), (11, 5), (12, 3)] + [pad] * 7, [(5, 1)] + [pad] * 9],
            "len_seq": [3, 1],
            "next": [(13, 4), (6, 2)],
        }
    )
    frame.to_pickle(tmp_path / "train_data.df")
    read = readers.read_llara_split(tmp_path / "train_data.df", padding_item_id=1682)
    assert read["seq"].tolist() == [(10, 11, 12), (5,)]
    assert read["len_seq"].tolist() == [3, 1]
    assert read["next"].tolist() == [13, 6]


def test_llara_lastfm_pickle_ints(tmp_path):
    frame = pd.DataFrame({"seq": [[7, 8, 9, 4606, 4606]], "len_seq": [3], "next": [2]})
    frame.to_pickle(tmp_path / "Val_data.df")
    read = readers.read_llara_split(tmp_path / "Val_data.df", padding_item_id=4606)
    assert read["seq"].tolist() == [(7, 8, 9)] and read["next"].tolist() == [2]


def test_llara_pickle_without_its_columns_is_refused(tmp_path):
    pd.DataFrame({"history": [[1]], "target": [2]}).to_pickle(tmp_path / "x.df")
    with pytest.raises(ValueError, match="len_seq"):
        readers.read_llara_split(tmp_path / "x.df", padding_item_id=0)


def test_llara_names(tmp_path):
    (tmp_path / "id2name.txt").write_text("0::Duran Duran\n1:: Morcheeba \n\n", encoding="utf-8")
    assert readers.read_llara_names(tmp_path / "id2name.txt") == {0: "Duran Duran", 1: "Morcheeba"}
