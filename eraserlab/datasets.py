"""Where the recommendation data lives, and how to fetch it from its publishers with checksums.

The raw files are never stored in this repository (their licences forbid redistribution, see
``../shared/data/README.md``). :func:`data_dir` finds the folder; :func:`require_files` turns a
missing file into an error that says which file to put where; :func:`download` fetches the two
datasets GroupLens still serves and checks every extracted file against the SHA-256 sums below,
which are the sums of the copies the project was built and tested on.

Layout of a data folder (one sub-folder per dataset)::

    <data dir>/ml-100k/u.data, u.item, ...
    <data dir>/hetrec2011-lastfm-2k/user_artists.dat, artists.dat, ...
    <data dir>/book-crossing/BX-Users.csv.gz, BX-Book-Ratings[.partial].csv, [BX-Books.csv]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from eraserlib.errors import EraserError

#: Environment variable that overrides the default data folder.
DATA_DIR_ENV = "ERASER_DATA_DIR"


class MissingDataError(EraserError, FileNotFoundError):
    """A data file the code needs is not on disk; the message says which file goes where."""


class ChecksumError(EraserError, ValueError):
    """A file's SHA-256 differs from the sum recorded for the original distribution."""


@dataclass(frozen=True)
class DatasetSource:
    """One public dataset: where its publisher serves it and what its files must hash to.

    Args:
        name: Folder name under the data directory (also the key of :data:`DATASETS`).
        title: Human-readable name.
        publisher_url: Page of the publisher, for the user to read the terms of use.
        archive_url: Direct URL of the archive, or ``None`` when the publisher no longer serves it.
        sha256: Expected SHA-256 of each file, by file name inside the dataset folder.
        documentation: File names that are documentation only (README); a different sum is a
            warning, not an error, because publishers refresh READMEs without changing the data.
        note: What to tell the user when the archive cannot be downloaded.
    """

    name: str
    title: str
    publisher_url: str
    archive_url: str | None
    sha256: dict[str, str]
    documentation: frozenset[str] = field(default_factory=frozenset)
    note: str = ""


#: The three datasets of the recommendation arm. Sums from ``../shared/data/README.md``.
DATASETS: dict[str, DatasetSource] = {
    "ml-100k": DatasetSource(
        name="ml-100k",
        title="MovieLens 100K (GroupLens)",
        publisher_url="https://grouplens.org/datasets/movielens/100k/",
        archive_url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        sha256={
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
        },
        documentation=frozenset({"README"}),
    ),
    "hetrec2011-lastfm-2k": DatasetSource(
        name="hetrec2011-lastfm-2k",
        title="HetRec 2011 Last.fm 2K (GroupLens)",
        publisher_url="https://grouplens.org/datasets/hetrec-2011/",
        archive_url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        sha256={
            "readme.txt": "6fe5d1e6f67b025fc50cd70883dd1a1ff16c5ff37b5b7abfb33644b83468b209",
            "artists.dat": "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648",
            "tags.dat": "e95175f259be4c0c47644ae23d66131cd6d5767142a1405000e79f5584691d70",
            "user_artists.dat": "001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b",
            "user_friends.dat": "9a3a8f7fa5f5ec832335e5b58ed69a4cf27c6f6f6afcde62134810eea46445a7",
            "user_taggedartists.dat": (
                "d31fe938fcfeed6f0059f37a36b156f63674d073fc2553e5cc9dc1595e365bc7"
            ),
        },
        documentation=frozenset({"readme.txt"}),
    ),
    "book-crossing": DatasetSource(
        name="book-crossing",
        title="Book-Crossing (Ziegler et al., 2005)",
        publisher_url="http://www2.informatik.uni-freiburg.de/~cziegler/BX/",
        archive_url=None,
        sha256={
            "BX-Users.csv.gz": "d93e0c00d771cfd93b646bdbeb3fb3f64c738e91b898d2ba02c6e9d4e81ee3f1",
            "BX-Users.csv": "33cfe23088cb9f857861f240553425f87372888c22edce59c94fd17fb97b1c82",
            "BX-Book-Ratings.partial.csv": (
                "cc5452845681b6c2ac400506bb27e7d4cfa2a35713297d992ca2d1093e169d74"
            ),
        },
        note=(
            "The publisher's page (http://www2.informatik.uni-freiburg.de/~cziegler/BX/, archive "
            "BX-CSV-Dump.zip) is no longer online, so it cannot be downloaded automatically. "
            "Obtain BX-CSV-Dump.zip elsewhere (cite Ziegler et al., WWW 2005) and put its three "
            "files, unchanged, in {folder}: BX-Book-Ratings.csv, BX-Users.csv (or BX-Users.csv.gz) "
            "and BX-Books.csv. Without BX-Books.csv items are named by their ISBN."
        ),
    ),
}


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Find the folder that holds one sub-folder per dataset.

    Resolution order: the ``path`` argument, then the ``ERASER_DATA_DIR`` environment variable,
    then the first ``shared/data`` folder found walking up from this package (in the project's
    checkout that is ``../shared/data`` relative to the repository root).

    Args:
        path: An explicit folder; returned as is (it need not exist yet, e.g. before a download).

    Returns:
        The data folder as an absolute path.

    Raises:
        MissingDataError: Nothing given and no ``shared/data`` folder above the package.
    """
    if path is not None:
        return Path(path).expanduser().resolve()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().resolve()
    for ancestor in Path(__file__).resolve().parents:
        candidate = ancestor / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise MissingDataError(
        "No data folder found: pass data_dir=..., or set the environment variable "
        f"{DATA_DIR_ENV}, or place the datasets in a folder 'shared/data' next to the repository "
        "(see eraserlab.datasets.download for the datasets GroupLens serves)."
    )


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of one dataset inside the data folder (it may not exist).

    Args:
        name: A key of :data:`DATASETS` (``"ml-100k"``, ``"hetrec2011-lastfm-2k"``,
            ``"book-crossing"``).
        root: The data folder; resolved by :func:`data_dir` when ``None``.

    Returns:
        ``data_dir(root) / name``.
    """
    _source(name)
    return data_dir(root) / name


def require_files(name: str, files: Iterable[str], root: str | os.PathLike | None = None) -> Path:
    """Check that files of a dataset are present, and say exactly what is missing if not.

    Args:
        name: A key of :data:`DATASETS`.
        files: File names inside the dataset folder. An entry ``"a|b"`` is satisfied by either
            ``a`` or ``b`` (e.g. ``"BX-Users.csv.gz|BX-Users.csv"``).
        root: The data folder; resolved by :func:`data_dir` when ``None``.

    Returns:
        The dataset folder.

    Raises:
        MissingDataError: One or more files are absent; the message lists each one with its full
            destination path and how to obtain it.
    """
    source = _source(name)
    folder = dataset_dir(name, root)
    missing = []
    for entry in files:
        alternatives = entry.split("|")
        if not any((folder / alt).is_file() for alt in alternatives):
            missing.append(" or ".join(str(folder / alt) for alt in alternatives))
    if missing:
        if source.archive_url:
            how = (
                f"Download {source.title} from {source.archive_url} "
                f"(terms: {source.publisher_url}) "
                f"with eraserlab.datasets.download({name!r}, {str(folder.parent)!r}), or unzip it "
                f"into {folder}."
            )
        else:
            how = source.note.format(folder=folder)
        raise MissingDataError(
            f"{source.title}: missing file(s): " + "; ".join(missing) + ". " + how
        )
    return folder


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks.

    Args:
        path: The file.

    Returns:
        64 lowercase hex characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(name: str, root: str | os.PathLike | None = None) -> dict[str, bool]:
    """Compare every present file of a dataset with its recorded SHA-256.

    Args:
        name: A key of :data:`DATASETS`.
        root: The data folder; resolved by :func:`data_dir` when ``None``.

    Returns:
        ``{file name: sum matches}`` for the files with a recorded sum that are present.
    """
    source = _source(name)
    folder = dataset_dir(name, root)
    return {
        file_name: sha256_of(folder / file_name) == expected
        for file_name, expected in source.sha256.items()
        if (folder / file_name).is_file()
    }


def fetch_url(url: str, destination: Path) -> None:
    """Download ``url`` to ``destination`` (tests replace this function; they never go online).

    Args:
        url: The archive's URL.
        destination: Where to write it.
    """
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out)


def download(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    fetch: Callable[[str, Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Fetch a dataset from its original publisher, check every file's SHA-256, install it.

    The archive goes to a temporary folder; its members are matched by base name (the two
    GroupLens zips nest them differently), checked, and only then moved into
    ``<root>/<name>/``. A data file with a wrong sum stops the install and nothing is written;
    a README with a different sum only warns.

    Args:
        name: ``"ml-100k"`` or ``"hetrec2011-lastfm-2k"``. ``"book-crossing"`` raises, because its
            publisher's page is offline; the error says where to put the files by hand.
        root: The data folder to install into; resolved by :func:`data_dir` when ``None``.
        fetch: ``fetch(url, destination_path)``; defaults to :func:`fetch_url` (looked up at call
            time so tests can monkeypatch it).
        overwrite: Replace files that are already present.

    Returns:
        The dataset folder.

    Raises:
        MissingDataError: The publisher no longer serves the dataset, or the archive lacks a file.
        ChecksumError: A data file's SHA-256 differs from the recorded one.
    """
    source = _source(name)
    folder = dataset_dir(name, root)
    if source.archive_url is None:
        raise MissingDataError(f"{source.title}: " + source.note.format(folder=folder))
    fetch = fetch if fetch is not None else fetch_url
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        scratch = Path(scratch)
        archive = scratch / Path(source.archive_url).name
        fetch(source.archive_url, archive)
        extracted = _extract_by_base_name(archive, source.sha256, scratch / "files")
        absent = sorted(set(source.sha256) - set(extracted))
        if absent:
            raise MissingDataError(
                f"{archive.name} from {source.archive_url} lacks {', '.join(absent)}: "
                "the publisher may have changed the archive."
            )
        bad = []
        for file_name, path in extracted.items():
            actual = sha256_of(path)
            if actual == source.sha256[file_name]:
                continue
            if file_name in source.documentation:
                warnings.warn(
                    f"{file_name} from {source.archive_url} differs from the recorded copy "
                    "(a refreshed README?); installing it anyway.",
                    stacklevel=2,
                )
            else:
                bad.append(f"{file_name}: expected {source.sha256[file_name]}, got {actual}")
        if bad:
            raise ChecksumError(
                f"{source.title} from {source.archive_url} does not match the recorded files, so "
                "nothing was installed: " + "; ".join(bad)
            )
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, path in extracted.items():
            target = folder / file_name
            if target.exists() and not overwrite:
                continue
            shutil.move(str(path), target)
    return folder


def _extract_by_base_name(archive: Path, wanted: Iterable[str], out: Path) -> dict[str, Path]:
    """Extract the members of a zip whose base name is wanted; no path from the zip is trusted."""
    wanted = set(wanted)
    out.mkdir(parents=True, exist_ok=True)
    extracted = {}
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                base = Path(info.filename).name
                if info.is_dir() or base not in wanted or base in extracted:
                    continue
                target = out / base  # base name only: a hostile '../' path cannot escape
                with zipped.open(info) as member, open(target, "wb") as handle:
                    shutil.copyfileobj(member, handle)
                extracted[base] = target
    except zipfile.BadZipFile as error:
        raise ChecksumError(f"{archive.name} is not a valid zip archive: {error}") from error
    return extracted


def _source(name: str) -> DatasetSource:
    """Look up a dataset by folder name, with the list of known names in the error."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"Unknown dataset {name!r}; known: {', '.join(DATASETS)}.") from None
