"""The word2vec binary writer/reader against gensim's own loader and writer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model.word2vec_format import read_word2vec_binary, write_word2vec_binary


def _table(rows: int = 1000, dim: int = 7) -> tuple[list[str], np.ndarray]:
    words = [f"w{i}" for i in range(rows - 3)] + ["naïve", "日本", "a-b.c_d"]
    return words, np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)


def test_gensim_loads_what_we_write(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    words, vectors = _table(20_000)  # more than one write chunk
    path = tmp_path / "vectors.bin"
    with open(path, "wb") as handle:
        written = write_word2vec_binary(handle, words, vectors)
    assert written == path.stat().st_size
    assert path.read_bytes().startswith(b"20000 7\nw0 ")
    kv = KeyedVectors.load_word2vec_format(str(path), binary=True)
    assert kv.index_to_key == words
    assert np.array_equal(kv.vectors, vectors)


def test_round_trip_and_we_read_gensims_output(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    words, vectors = _table()
    buffer = io.BytesIO()
    write_word2vec_binary(buffer, words, vectors)
    buffer.seek(0)
    got_words, got = read_word2vec_binary(buffer)
    assert got_words == words and np.array_equal(got, vectors)

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)
    kv.save_word2vec_format(str(tmp_path / "g.bin"), binary=True)  # gensim writes no trailing newline
    with open(tmp_path / "g.bin", "rb") as handle:
        got_words, got = read_word2vec_binary(handle)
    assert got_words == words and np.array_equal(got, vectors)


def test_refuses_words_with_whitespace_and_truncated_files() -> None:
    vectors = np.zeros((2, 3), dtype=np.float32)
    for bad in (["ok", "two words"], ["ok", ""], ["tab\there", "ok"]):
        with pytest.raises(ValueError, match="whitespace"):
            write_word2vec_binary(io.BytesIO(), bad, vectors)
    buffer = io.BytesIO()
    write_word2vec_binary(buffer, ["a", "b"], vectors)
    with pytest.raises(ValueError, match="truncated"):
        read_word2vec_binary(io.BytesIO(buffer.getvalue()[:-6]))
    with pytest.raises(ValueError, match="not a word2vec"):
        read_word2vec_binary(io.BytesIO(b"hello world\n"))
