"""Compiled inner loops of the pairs job (numba), bit-identical to the numpy definitions.

Per shard the pairs job subsamples and windows tokens into (center, context) rows,
shuffles the rows, draws K noise words per row (alias method) and writes Parquet.
As chains of whole-array numpy passes (a mask, a gather and a temporary per window
offset and side; eight passes per noise word) the first three took about as long as
the Parquet write; here each is one loop over the data, 2-5 times faster. The tests
keep the plain numpy definitions (``tests/jobs/numpy_reference.py``) and check
that every kernel gives exactly the same output.

Randomness is counter-based: draw ``c`` of a stream keyed ``k`` is
``splitmix64(k + c * golden)`` (:func:`splitmix_at`), the same function as
``random_u64`` of the numpy definitions. Any draw can be made by any task in any order, and the
shards do not depend on the numpy version (numpy does not promise that its
``Generator.shuffle`` stays the same across releases).

``cache=True`` stores the machine code next to this file, so a Spark Python worker
compiles once per installation, not once per task.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
ATTEMPT_SHIFT = np.uint64(40)  # redraw a of noise slot j uses counter j + (a << 40): slots < 2**40
MAX_ATTEMPTS = 1000


@njit(inline="always")
def splitmix_at(key: np.uint64, counter: np.uint64) -> np.uint64:
    """Element ``counter`` of the splitmix64 sequence seeded with ``key`` (wrapping arithmetic)."""
    z = key + counter * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def below(bits: np.uint64, n: np.uint64) -> np.uint64:
    """``floor(bits * n / 2**64)`` for n < 2**32: a uniform integer in [0, n), bias < n / 2**64.

    The high half of the 128-bit product, from two 32x32-bit products that cannot overflow.
    """
    high = (bits >> np.uint64(32)) * n
    low = ((bits & np.uint64(0xFFFFFFFF)) * n) >> np.uint64(32)
    return (high + low) >> np.uint64(32)


@njit(nogil=True, cache=True)
def kept_tokens(
    ids: np.ndarray, lengths: np.ndarray, keys: np.ndarray, keep_prob: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, sentence index, window reach) of the tokens that survive subsampling.

    Token at position p of sentence s is kept when ``uniform01(draw p of stream 0 of
    keys[s]) < keep_prob[id]``; a kept token's reach is ``1 + (hi32(draw p of stream 1)
    * window) >> 32``, uniform in 1..window (``corpus2vec.jobs.pairs.window_pairs`` in numpy).
    """
    n = ids.shape[0]
    out_ids = np.empty(n + 1, np.int32)  # one spare slot: tokens are written before the test
    out_sid = np.empty(n + 1, np.int64)
    out_reach = np.empty(n + 1, np.int64)
    window_stream = np.uint64(1) << ATTEMPT_SHIFT
    scale = 1.0 / (1 << 53)
    at = 0
    start = 0
    for s in range(lengths.shape[0]):
        key = keys[s]
        for p in range(lengths[s]):
            word = ids[start + p]
            u = np.float64(splitmix_at(key, np.uint64(p)) >> np.uint64(11)) * scale
            bits = splitmix_at(key, np.uint64(p) + window_stream) >> np.uint64(32)
            out_ids[at] = word  # branch-free: written always, kept (at advances) if u < keep
            out_sid[at] = s
            out_reach[at] = 1 + np.int64((bits * np.uint64(window)) >> np.uint64(32))
            at += u < keep_prob[word]
        start += lengths[s]
    return out_ids[:at], out_sid[:at], out_reach[:at]


@njit(nogil=True, cache=True)
def window_rows(
    ids: np.ndarray, sid: np.ndarray, reach: np.ndarray, window: int, context_input: bool = False
) -> np.ndarray:
    """Packed rows ``center << 32 | context`` for offsets 1..reach[i] on both sides of each centre.

    ``ids``, ``sid`` (sentence index, non-decreasing) and ``reach`` are per kept token.
    Rows come out grouped by distance, then side (left before right), then centre
    position, exactly as the numpy definition. With ``context_input`` each row is
    ``context << 32 | center`` instead: the context word trains its input vector against
    the centre, as in word2vec.c's skip-gram (``pairs.input_word = "context"``).
    """
    high = np.uint64(0 if context_input else 32)  # where the centre's id goes
    low = np.uint64(32) - high
    n = ids.shape[0]
    start = np.empty(n, np.int64)  # first index of each token's sentence
    end = np.empty(n, np.int64)  # one past its last
    i = 0
    while i < n:
        j = i
        while j < n and sid[j] == sid[i]:
            j += 1
        for k in range(i, j):
            start[k] = i
            end[k] = j
        i = j
    total = 0
    for k in range(n):
        r = reach[k]
        total += min(r, k - start[k]) + min(r, end[k] - 1 - k)
    out = np.empty(total + 1, np.uint64)  # one spare slot: rows are written before the test
    at = 0
    for distance in range(1, window + 1):
        for sign in (-1, 1):
            for k in range(n):
                room = k - start[k] if sign < 0 else end[k] - 1 - k
                near = min(room, reach[k]) >= distance
                # Branch-free: the row is always written and kept only if near (the
                # test is a coin flip per token, which a branch would mispredict).
                out[at] = (np.uint64(ids[k]) << high) | (
                    np.uint64(ids[max(0, min(n - 1, k + sign * distance))]) << low
                )
                at += near
    return out[:total]


@njit(inline="always")
def alias_pick(bits: np.uint64, table: np.ndarray, vocab: np.uint64) -> np.int32:
    """A noise word from one 64-bit draw: high 32 bits pick a column, low 32 bits the coin.

    ``table[c]`` is ``alias << 32 | threshold``; the column is kept when the coin is
    below its threshold, else its alias is taken (Vose's alias method).
    """
    column = ((bits >> np.uint64(32)) * vocab) >> np.uint64(32)
    entry = table[column]
    keep = (bits & np.uint64(0xFFFFFFFF)) < (entry & np.uint64(0xFFFFFFFF))
    return np.int32(column if keep else entry >> np.uint64(32))


@njit(nogil=True, cache=True)
def shuffle_rows(rows: np.ndarray, key: np.uint64) -> None:
    """Fisher-Yates shuffle in place: step i swaps row i with row ``below(draw i, i + 1)``."""
    for i in range(rows.shape[0] - 1, 0, -1):
        j = below(splitmix_at(key, np.uint64(i)), np.uint64(i + 1))
        held = rows[i]
        rows[i] = rows[j]
        rows[j] = held


@njit(nogil=True, cache=True)
def split_rows(packed: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """(center, context, adjacent rows with equal centre, rows per centre word) of packed rows."""
    n = packed.shape[0]
    center = np.empty(n, np.int32)
    context = np.empty(n, np.int32)
    counts = np.zeros(vocab, np.int64)
    same = 0
    previous = -1
    for i in range(n):
        row = packed[i]
        c = np.int32(row >> np.uint64(32))
        center[i] = c
        context[i] = np.int32(row & np.uint64(0xFFFFFFFF))
        counts[c] += 1
        if c == previous:
            same += 1
        previous = c
    return center, context, same, counts


@njit(nogil=True, cache=True)
def draw_negatives(
    context: np.ndarray, table: np.ndarray, vocab: np.uint64, key: np.uint64, negative: int, first_row: int
) -> np.ndarray:
    """int32[P, K] noise words for rows ``first_row ..``; a draw equal to the row's context is redrawn.

    Slot k of row r is counter ``j = r * K + k`` of stream ``key``; redraw a uses
    counter ``j + (a << 40)``, so a row's negatives do not depend on how rows are
    grouped. Raises after ``MAX_ATTEMPTS`` clashes in one slot (a one-word vocabulary).
    """
    rows = context.shape[0]
    out = np.empty((rows, negative), np.int32)
    flat = out.reshape(-1)
    first = np.uint64(first_row * negative)
    for j in range(flat.shape[0]):  # first draws: a straight loop the compiler can vectorise
        flat[j] = alias_pick(splitmix_at(key, first + np.uint64(j)), table, vocab)
    for r in range(rows):  # redraws, rare: P(clash) = q(context) per slot
        for k in range(negative):
            attempt = 0
            while out[r, k] == context[r]:
                attempt += 1
                if attempt == MAX_ATTEMPTS:
                    raise ValueError(
                        "cannot draw negatives different from the context: the vocabulary needs >= 2 words"
                    )
                slot = first + np.uint64(r * negative + k) + (np.uint64(attempt) << ATTEMPT_SHIFT)
                out[r, k] = alias_pick(splitmix_at(key, slot), table, vocab)
    return out
