"""Item catalogues: the name an LLM reads for each item id, cleaned the way LLaRA cleans it.

LLaRA shows a movie as its title without the year and with a trailing English article moved
to the front ("Usual Suspects, The (1995)" → "The Usual Suspects"). Its code does this with
``title[:-7]`` and substring tests, which mangles four kinds of MovieLens titles; the rule
here is written as a pattern so that it does what LLaRA intends on all of them:

* ``"American Werewolf in London, An (1981)"``: LLaRA tests ``", A"`` before ``", An"`` and
  gives "A American Werewolf in Londonn"; here "An American Werewolf in London".
* ``"Heidi Fleiss: Hollywood Madam (1995) "`` (trailing space in the file) and ``"unknown"``
  (no year): LLaRA cuts 7 characters anyway; here the year is removed only where there is one.
* ``"Land Before Time III: ... (1995) (V)"``: the year is not last; here it is removed all the same.

Foreign articles ("Misérables, Les", "Postino, Il") stay where they are, as in LLaRA.
"""

from __future__ import annotations

import os
import re

from eraserlab.rec import readers

# A four-digit year in parentheses, with what follows it (e.g. " (V)") kept.
_YEAR = re.compile(r"\s*\(\d{4}\)")
# ", The" / ", A" / ", An" ending the main title: at the end, or before an alternative title
# in parentheses ("City of Lost Children, The (Cité des enfants perdus, La)").
_TRAILING_ARTICLE = re.compile(r"^(?P<main>.+?), (?P<article>The|An|A)(?P<rest>(?: \(.*\))?)$")


def clean_movie_title(raw: str) -> str:
    """Turn a MovieLens title into the name LLaRA shows: no year, English article in front.

    Args:
        raw: A title as in ``u.item``, e.g. ``"Shawshank Redemption, The (1994)"``.

    Returns:
        The cleaned title, e.g. ``"The Shawshank Redemption"``.
    """
    title = raw.strip()
    years = list(_YEAR.finditer(title))
    if years:  # drop the last year only: "(1995)" in "Nixon (1995)", not digits of a name
        last = years[-1]
        title = (title[: last.start()] + title[last.end() :]).strip()
    match = _TRAILING_ARTICLE.match(title)
    if match:
        title = f"{match['article']} {match['main']}{match['rest']}"
    return title


def movielens_titles(root: str | os.PathLike | None = None) -> dict[int, str]:
    """Cleaned MovieLens titles by item id (ids from 1, as in ``u.data``).

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        ``{item id: cleaned title}`` for the 1,682 movies. Titles are not unique (a few movies
        appear under two ids); the candidate sampler keeps the names within one prompt distinct.
    """
    items = readers.read_movielens_items(root)
    return {int(i): clean_movie_title(t) for i, t in zip(items["item"], items["title"])}


def lastfm_names(root: str | os.PathLike | None = None) -> dict[int, str]:
    """Last.fm artist names by artist id, stripped of surrounding spaces (as LLaRA does).

    Args:
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        ``{artist id: name}`` for the 17,632 artists.
    """
    artists = readers.read_lastfm_artists(root)
    return {int(i): str(n).strip() for i, n in zip(artists["item"], artists["name"])}


def book_names(isbns, root: str | os.PathLike | None = None) -> tuple[dict[str, str], str]:
    """Names for Book-Crossing ISBNs: '"Title" by Author' when ``BX-Books.csv`` is present.

    Args:
        isbns: The ISBNs to name.
        root: The data folder (``None``: :func:`eraserlab.datasets.data_dir`).

    Returns:
        ``(names, source)``: ``{isbn: name}`` and ``"title"`` when names come from
        ``BX-Books.csv``, or ``"isbn"`` when the file is missing and each book is named by its
        ISBN (also for ISBNs that ``BX-Books.csv`` lacks).
    """
    isbns = list(isbns)
    if not readers.has_bx_books(root):
        return {isbn: isbn for isbn in isbns}, "isbn"
    books = readers.read_bx_books(root).drop_duplicates("isbn").set_index("isbn")
    names = {}
    for isbn in isbns:
        if isbn in books.index:
            row = books.loc[isbn]
            names[isbn] = f'"{row["title"].strip()}" by {row["author"].strip()}'
        else:
            names[isbn] = isbn
    return names, "title"
