"""Pure tokenizer, sentence cutting and dedup functions (no Spark)."""

from __future__ import annotations

import pytest

from corpus2vec.jobs.tokenize import dedup_sorted, document_rows, iter_sentences, part_of, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Don't stop, l'homme!", ["don't", "stop", "l'homme"]),
        ("Don’t use curly quotes", ["don't", "use", "curly", "quotes"]),  # U+2019 becomes '
        ("'quoted' students' books", ["quoted", "students", "books"]),  # outer apostrophes dropped
        ("pi is 3.14, a million is 1,000,000.", ["pi", "is", "3.14", "a", "million", "is", "1,000,000"]),
        ("end. Next", ["end", "next"]),
        ("hello_world foo-bar", ["hello", "world", "foo", "bar"]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # vowel signs (marks) stay inside the word
        ("東京タワー Ελληνικά Москва", ["東京タワー", "ελληνικά", "москва"]),
        ("ﬁnance ＡＢＣ ①", ["finance", "abc", "1"]),  # NFKC folds ligatures, full width, circled digits
        ("e-mail: a@b.com ☺ $5", ["e", "mail", "a", "b", "com", "5"]),
        ("", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_ascii_fast_path_matches_the_full_pattern() -> None:
    import random

    from corpus2vec.jobs.tokenize import TOKEN_RE

    rng = random.Random(0)
    alphabet = "abcXYZ019 .,'\n\t-_!"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert tokenize(text) == TOKEN_RE.findall(text.lower()), text
        assert tokenize(text, lowercase=False) == TOKEN_RE.findall(text), text


def test_tokenize_keeps_case_when_asked() -> None:
    assert tokenize("Paris London", lowercase=False) == ["Paris", "London"]


def test_long_line_is_cut_into_max_sized_sentences() -> None:
    line = " ".join(f"w{i}" for i in range(25_000))
    sentences = list(iter_sentences([line], max_tokens=10_000))
    assert [len(s) for s in sentences] == [10_000, 10_000, 5_000]
    assert sentences[1][0] == "w10000"


def test_streamed_pieces_give_the_same_tokens_as_one_string() -> None:
    """Pieces cut mid-word (as a chunked reader does) must not split tokens."""
    text = "alpha beta gamma 3.14 don't " * 500
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
    streamed = [t for s in iter_sentences(pieces, max_tokens=999) for t in s]
    assert streamed == tokenize(text)
    assert max(len(s) for s in iter_sentences(pieces, max_tokens=999)) == 999


def test_document_rows_number_sentences_and_drop_short_documents() -> None:
    rows = list(document_rows("d1", iter([["a", "b"], ["c"]]), min_tokens=1))
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [("d1", 0, "a b", 2), ("d1", 1, "c", 1)]
    assert rows[0][2] == rows[1][2]  # one content hash per document
    assert list(document_rows("d2", iter([["a", "b"]]), min_tokens=3)) == []


def test_identical_documents_hash_alike_and_meet_in_one_part() -> None:
    a = list(document_rows("a", iter([["x", "y"]]), 1))
    b = list(document_rows("b", iter([["x", "y"]]), 1))
    c = list(document_rows("c", iter([["x", "z"]]), 1))
    assert a[0][2] == b[0][2] != c[0][2]
    assert part_of(a[0][2], 0, 7) == part_of(b[0][2], 0, 7)


def test_dedup_keeps_smallest_doc_id() -> None:
    rows = sorted(
        [
            ("b", 0, b"h1", "x y", 2),
            ("a", 0, b"h1", "x y", 2),
            ("c", 0, b"h2", "z", 1),
            ("d", 1, b"h1", "q", 1),
        ]
    )
    kept, removed = dedup_sorted(rows)
    assert [r[0] for r in kept] == ["a", "c"]
    assert removed == 1  # "b" counted at its sentence 0; "d" sentence 1 dropped but not counted again


def test_very_long_document_is_streamed_not_deduplicated() -> None:
    sentences = iter([["w"]] * 100)
    rows = list(document_rows("long", sentences, 1))
    assert len(rows) == 100
    assert all(r[2].startswith(b"id:") for r in rows)
