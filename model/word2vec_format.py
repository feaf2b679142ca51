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


def read_word2vec_binary(handle: BinaryIO, size: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a word2vec binary file (ours or word2vec.c's/gensim's) into words and a float32 table.

    The header's ``V d`` is bounded by the file's size (``size``, else the
    handle's own when it can seek) before anything is allocated: a forged
    ``"99999999999 300"`` header must not ask for terabytes. Every problem is a
    ValueError that says what is wrong and where.
    """
    line = handle.readline(_MAX_HEADER + 1)
    header = line.decode("ascii", errors="replace").split()
    if len(line) > _MAX_HEADER or len(header) != 2 or not all(_is_decimal(h) for h in header):
        raise ValueError(f"not a word2vec binary file: header {line[:40]!r}, expected 'V d'")
    rows, dim = int(header[0]), int(header[1])
    if dim < 1:
        raise ValueError(f"word2vec header says {dim} dimensions; expected at least 1")
    size = _remaining(handle) if size is None else size - len(line)
    width = dim * _DTYPE.itemsize
    if size is not None and rows * (width + 2) > size:  # each row: >= 1 word byte, a space, d floats
        raise ValueError(
            f"word2vec header says {rows} x {dim} but only {size} bytes follow it "
            "(truncated or not a word2vec file)"
        )
    if size is None and rows * width > _MAX_UNSIZED_BYTES:
        raise ValueError(
            f"word2vec header says {rows} x {dim} ({rows * width} bytes) and the stream has no size to check it "
            "against; pass size= to read_word2vec_binary"
        )
    vectors = np.empty((rows, dim), dtype=np.float32)
    words: list[str] = []
    buffer, pos = b"", 0
    while len(words) < rows:
        space = buffer.find(b" ", pos)
        if space < 0 or len(buffer) < space + 1 + width:
            if space < 0 and len(buffer) - pos > _MAX_WORD_BYTES:
                raise ValueError(
                    f"word2vec row {len(words)}: no space within {_MAX_WORD_BYTES} bytes (corrupt)"
                )
            more = handle.read(max(_READ_BYTES, 2 * width))
            if not more:
                raise ValueError(f"word2vec file ends after {len(words)} of {rows} vectors (truncated)")
            buffer, pos = buffer[pos:] + more, 0  # compact only when refilling: O(file) copying
            continue
        raw = buffer[pos:space].lstrip(b"\n")
        try:
            word = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"word2vec row {len(words)}: word is not valid UTF-8 ({exc.reason})") from None
        if not word:
            raise ValueError(f"word2vec row {len(words)}: empty word (corrupt file)")
        words.append(word)
        vectors[len(words) - 1] = np.frombuffer(buffer, dtype=_DTYPE, count=dim, offset=space + 1)
        pos = space + 1 + width
    return words, vectors


_MAX_HEADER = 64
_MAX_WORD_BYTES = 1 << 16
_MAX_UNSIZED_BYTES = 1 << 30


def _is_decimal(text: str) -> bool:
    """Plain ASCII digits only (``str.isdigit`` also accepts superscripts and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def _remaining(handle: BinaryIO) -> int | None:
    """Bytes left after the current position, when the handle can tell (None for a pipe)."""
    try:
        here = handle.tell()
        end = handle.seek(0, 2)
        handle.seek(here)
    except (OSError, ValueError, AttributeError):
        return None
    return end - here
