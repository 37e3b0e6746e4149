"""eraserlab.datasets: data-folder resolution, missing-file errors, checksums, the download helper.

The download tests never touch the network: ``fetch_url`` is replaced by a function that
copies a zip built in the test, and ``urllib.request.urlopen`` is made to fail loudly.
"""

import hashlib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from eraserlab import datasets

ML_FILES = ["README", "u.data", "u.item", "u.user", "u.genre", "u.info", "u.occupation"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def real_ml_members(data_root, prefix="ml-100k/"):
    """The real MovieLens files, as the GroupLens zip nests them (under ``ml-100k/``)."""
    return {prefix + name: (data_root / "ml-100k" / name).read_bytes() for name in ML_FILES}


def serve(monkeypatch, archive: Path, calls: list):
    def fake_fetch(url, destination):
        calls.append(url)
        Path(destination).write_bytes(archive.read_bytes())

    monkeypatch.setattr(datasets, "fetch_url", fake_fetch)


# --- data_dir -----------------------------------------------------------------------------------


def test_data_dir_prefers_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "from-env"))
    assert datasets.data_dir(tmp_path / "given") == (tmp_path / "given").resolve()
    assert datasets.data_dir() == (tmp_path / "from-env").resolve()


def test_data_dir_walks_up_to_a_sibling_shared_data(monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    package = Path(datasets.__file__).resolve()
    expected = next(
        (a / "shared" / "data" for a in package.parents if (a / "shared" / "data").is_dir()), None
    )
    if expected is None:
        with pytest.raises(datasets.MissingDataError, match=datasets.DATA_DIR_ENV):
            datasets.data_dir()
    else:
        assert datasets.data_dir() == expected
        assert expected.parts[-2:] == ("shared", "data")


# --- require_files / verify ---------------------------------------------------------------------


def test_missing_file_error_names_the_file_its_place_and_the_source(tmp_path):
    with pytest.raises(datasets.MissingDataError) as error:
        datasets.require_files("ml-100k", ["u.data", "u.item"], tmp_path)
    message = str(error.value)
    assert str(tmp_path / "ml-100k" / "u.data") in message
    assert str(tmp_path / "ml-100k" / "u.item") in message
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message
    assert isinstance(error.value, FileNotFoundError)


def test_missing_book_crossing_says_the_publisher_is_offline(tmp_path):
    with pytest.raises(datasets.MissingDataError) as error:
        datasets.require_files("book-crossing", ["BX-Books.csv"], tmp_path)
    message = str(error.value)
    assert str(tmp_path / "book-crossing" / "BX-Books.csv") in message
    assert "no longer online" in message


def test_alternatives_are_satisfied_by_either_file(tmp_path):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    (folder / "BX-Users.csv").write_text("x")
    found = datasets.require_files("book-crossing", ["BX-Users.csv.gz|BX-Users.csv"], tmp_path)
    assert found == folder


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(KeyError, match="ml-100k"):
        datasets.dataset_dir("ml-1m")


def test_real_files_match_their_recorded_sums(data_root):
    for name in datasets.DATASETS:
        if not (data_root / name).is_dir():
            continue
        result = datasets.verify(name, data_root)
        assert result, f"no file of {name} has a recorded sum"
        differing = [file_name for file_name, same in result.items() if not same]
        assert not differing, f"{name}: sums differ for {differing}"


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1_000_000)
    assert datasets.sha256_of(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


# --- download -----------------------------------------------------------------------------------


def test_download_extracts_and_checks_a_correct_archive(data_root, tmp_path, monkeypatch):
    calls = []
    serve(monkeypatch, make_zip(tmp_path / "ml-100k.zip", real_ml_members(data_root)), calls)
    root = tmp_path / "data"
    folder = datasets.download("ml-100k", root)
    assert calls == [datasets.DATASETS["ml-100k"].archive_url]
    assert folder == root / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ML_FILES)
    assert all(datasets.verify("ml-100k", root).values())
    # Nothing else is left behind (the temporary download folder is gone).
    assert [p.name for p in root.iterdir()] == ["ml-100k"]


def test_download_rejects_a_corrupted_data_file_and_installs_nothing(
    data_root, tmp_path, monkeypatch
):
    members = real_ml_members(data_root)
    members["ml-100k/u.data"] = members["ml-100k/u.data"].replace(b"\t5\t", b"\t4\t", 1)
    serve(monkeypatch, make_zip(tmp_path / "ml-100k.zip", members), [])
    root = tmp_path / "data"
    with pytest.raises(datasets.ChecksumError, match="u.data: expected 06416e59"):
        datasets.download("ml-100k", root)
    assert not (root / "ml-100k").exists()


def test_download_only_warns_about_a_refreshed_readme(data_root, tmp_path, monkeypatch):
    members = real_ml_members(data_root)
    members["ml-100k/README"] = b"a newer README\n"
    serve(monkeypatch, make_zip(tmp_path / "ml-100k.zip", members), [])
    with pytest.warns(UserWarning, match="README"):
        folder = datasets.download("ml-100k", tmp_path / "data")
    assert (folder / "u.data").is_file()


def test_download_reports_a_member_missing_from_the_archive(data_root, tmp_path, monkeypatch):
    members = real_ml_members(data_root)
    del members["ml-100k/u.item"]
    serve(monkeypatch, make_zip(tmp_path / "ml-100k.zip", members), [])
    with pytest.raises(datasets.MissingDataError, match="lacks u.item"):
        datasets.download("ml-100k", tmp_path / "data")


def test_download_rejects_something_that_is_not_a_zip(tmp_path, monkeypatch):
    page = tmp_path / "error.html"
    page.write_text("<html>503 Service Unavailable</html>")
    serve(monkeypatch, page, [])
    with pytest.raises(datasets.ChecksumError, match="not a valid zip"):
        datasets.download("hetrec2011-lastfm-2k", tmp_path / "data")


def test_download_ignores_paths_inside_the_zip(data_root, tmp_path, monkeypatch):
    # A member named '../../u.data' must land in the dataset folder, not above it.
    members = real_ml_members(data_root, prefix="")
    members["../../u.data"] = members.pop("u.data")
    serve(monkeypatch, make_zip(tmp_path / "ml-100k.zip", members), [])
    folder = datasets.download("ml-100k", tmp_path / "a" / "data")
    assert (folder / "u.data").is_file()
    assert not (tmp_path / "u.data").exists()


def test_download_book_crossing_explains_where_to_put_the_files(tmp_path, monkeypatch):
    serve(monkeypatch, tmp_path / "never-used", [])
    with pytest.raises(datasets.MissingDataError) as error:
        datasets.download("book-crossing", tmp_path / "data")
    message = str(error.value)
    assert "no longer online" in message
    assert str(tmp_path / "data" / "book-crossing") in message
    assert "BX-Books.csv" in message


def test_every_recorded_sum_is_a_sha256():
    for source in datasets.DATASETS.values():
        for name, digest in source.sha256.items():
            assert len(digest) == 64 and int(digest, 16) >= 0, name
