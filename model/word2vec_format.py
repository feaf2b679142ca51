"""The word2vec binary format, streamed: what ``KeyedVectors.load_word2vec_format(binary=True)`` reads.

Layout (word2vec.c's ``-binary 1`` output): an ASCII header ``"V d\\n"``, then
for every word its UTF-8 bytes, one space, ``d`` little-endian float32 and a
newline. Written and read in chunks of rows so a multi-GB table never needs a
second in-memory copy, and without pickles so a file from a store cannot run code.
Only numpy is needed: the pull client uses this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

_DTYPE = np.dtype("<f4")
_CHUNK_ROWS = 8192
_READ_BYTES = 1 << 20


def check_words(words: Sequence[str]) -> None:
    """Refuse words the format cannot carry: empty, or containing whitespace that delimits records."""
    for row, word in enumerate(words):
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(
                f"word {word!r} at row {row} is empty or contains whitespace; "
                "the word2vec format separates words by spaces, fix the tokenizer"
            )


def write_word2vec_binary(handle: BinaryIO, words: Sequence[str], vectors: np.ndarray) -> int:
    """Write ``words``/``vectors`` to an open binary file; returns the number of bytes written."""
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors have shape {vectors.shape} but there are {len(words)} words")
    check_words(words)
    rows, dim = vectors.shape
    written = handle.write(f"{rows} {dim}\n".encode())
    for start in range(0, rows, _CHUNK_ROWS):
        block = np.ascontiguousarray(vectors[start : start + _CHUNK_ROWS], dtype=_DTYPE)
        parts = []
        for word, row in zip(words[start : start + len(block)], block, strict=True):
            parts += [word.encode("utf-8"), b" ", row.tobytes(), b"\n"]
        written += handle.write(b"".join(parts))
    return written


def read_word2vec_binary(handle: BinaryIO) -> tuple[list[str], np.ndarray]:
    """Read a word2vec binary file (ours or word2vec.c's/gensim's) into words and a float32 table."""
    header = handle.readline().decode("ascii", errors="replace").split()
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise ValueError(f"not a word2vec binary file: header {header!r}, expected 'V d'")
    rows, dim = int(header[0]), int(header[1])
    vectors = np.empty((rows, dim), dtype=np.float32)
    words: list[str] = []
    buffer, pos, width = b"", 0, dim * _DTYPE.itemsize
    while len(words) < rows:
        space = buffer.find(b" ", pos)
        if space < 0 or len(buffer) < space + 1 + width:
            more = handle.read(max(_READ_BYTES, 2 * width))
            if not more:
                raise ValueError(f"word2vec file ends after {len(words)} of {rows} vectors (truncated)")
            buffer, pos = buffer[pos:] + more, 0  # compact only when refilling: O(file) copying
            continue
        words.append(buffer[pos:space].lstrip(b"\n").decode("utf-8"))
        vectors[len(words) - 1] = np.frombuffer(buffer, dtype=_DTYPE, count=dim, offset=space + 1)
        pos = space + 1 + width
    return words, vectors
