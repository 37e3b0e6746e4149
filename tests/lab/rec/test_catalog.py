"""Title cleaning (LLaRA's rule, without LLaRA's slicing bugs) and the item catalogues."""

import pytest

from eraserlab.rec import catalog


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Toy Story (1995)", "Toy Story"),
        ("Usual Suspects, The (1995)", "The Usual Suspects"),
        ("Fish Called Wanda, A (1988)", "A Fish Called Wanda"),
        # LLaRA tests ", A" before ", An" and gives "A American Werewolf in Londonn".
        ("American Werewolf in London, An (1981)", "An American Werewolf in London"),
        # Article before an alternative title in parentheses.
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "The City of Lost Children (Cité des enfants perdus, La)",
        ),
        # Foreign articles stay, as in LLaRA; an English article inside the alternative title too.
        ("Misérables, Les (1995)", "Misérables, Les"),
        (
            "Double vie de Véronique, La (Double Life of Veronique, The) (1991)",
            "Double vie de Véronique, La (Double Life of Veronique, The)",
        ),
        # Quirks of u.item: trailing space, no year, year not last.
        ("Heidi Fleiss: Hollywood Madam (1995) ", "Heidi Fleiss: Hollywood Madam"),
        ("unknown", "unknown"),
        (
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "Land Before Time III: The Time of the Great Giving (V)",
        ),
        # A comma followed by a word that only starts like an article is not an article.
        ("Crossing Guard, Ace (1995)", "Crossing Guard, Ace"),
        ("2001: A Space Odyssey (1968)", "2001: A Space Odyssey"),
    ],
)
def test_clean_movie_title(raw, clean):
    assert catalog.clean_movie_title(raw) == clean


def test_movielens_titles(movielens_titles):
    titles = movielens_titles
    assert len(titles) == 1682 and min(titles) == 1 and max(titles) == 1682
    assert titles[12] == "The Usual Suspects"
    assert titles[64] == "The Shawshank Redemption"
    assert titles[1] == "Toy Story"
    assert not any("(19" in t[-6:] for t in titles.values())  # no year left at the end
    assert all(t == t.strip() for t in titles.values())


def test_lastfm_names(lastfm_root):
    names = catalog.lastfm_names(lastfm_root)
    assert len(names) == 17_632
    assert all(n == n.strip() for n in names.values())


def test_book_names_fall_back_to_isbn_without_bx_books(tmp_path):
    names, source = catalog.book_names(["0195153448", "0002005018"], tmp_path)
    assert source == "isbn"
    assert names == {"0195153448": "0195153448", "0002005018": "0002005018"}


def test_book_names_use_titles_when_bx_books_is_present(tmp_path):
    folder = tmp_path / "book-crossing"
    folder.mkdir()
    (folder / "BX-Books.csv").write_bytes(
        b'"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"S";"M";"L"\r\n'
        b'"0195153448";"Classical Mythology";"Mark P. O. Morford";"2002";"OUP";"s";"m";"l"\r\n'
    )
    names, source = catalog.book_names(["0195153448", "9999999999"], tmp_path)
    assert source == "title"
    assert names["0195153448"] == '"Classical Mythology" by Mark P. O. Morford'
    assert names["9999999999"] == "9999999999"  # not in BX-Books.csv: still named by ISBN
