"""Compiled inner loops of the pairs job (numba), bit-identical to the numpy definitions.

The pairs job spends its time in three places per shard: windowing kept tokens into
(center, context) rows, mapping random bits to noise words (alias method), and the
Parquet write. The first two were chains of whole-array numpy passes (a boolean
mask, a gather and a temporary per window offset and side; eight passes per noise
word); here each is one loop over the data, about 3-5 times faster, with the same
output order and values, so shards are byte-identical to the reference numpy code
that the tests keep (``tests/jobs/test_pair_kernels.py``).

``cache=True`` stores the machine code next to this file, so a Spark Python worker
compiles once per installation, not once per task.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def window_rows(ids: np.ndarray, sid: np.ndarray, reach: np.ndarray, window: int) -> np.ndarray:
    """Packed rows ``center << 32 | context`` for offsets 1..reach[i] on both sides of each centre.

    ``ids``, ``sid`` (sentence index, non-decreasing) and ``reach`` are per kept token.
    Rows come out grouped by distance, then side (left before right), then centre
    position: the order of the numpy reference, so the shard bytes do not change.
    """
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
    out = np.empty(total, np.uint64)
    at = 0
    for distance in range(1, window + 1):
        for sign in (-1, 1):
            for k in range(n):
                room = k - start[k] if sign < 0 else end[k] - 1 - k
                if reach[k] >= distance and room >= distance:
                    out[at] = (np.uint64(ids[k]) << np.uint64(32)) | np.uint64(ids[k + sign * distance])
                    at += 1
    return out


@njit(nogil=True, cache=True)
def alias_draw(bits: np.ndarray, table: np.ndarray, vocab: np.uint64, out: np.ndarray) -> None:
    """Noise words from raw 64-bit draws: high 32 bits pick a column, low 32 bits the coin.

    ``table[c]`` is ``alias << 32 | threshold``; the column is kept when the coin is
    below its threshold, else its alias is taken (Vose's alias method).
    """
    low = np.uint64(0xFFFFFFFF)
    shift = np.uint64(32)
    for i in range(bits.shape[0]):
        b = bits[i]
        column = ((b >> shift) * vocab) >> shift
        entry = table[column]
        if (b & low) < (entry & low):
            out[i] = np.int32(column)
        else:
            out[i] = np.int32(entry >> shift)
