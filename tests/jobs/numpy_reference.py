"""The pairs job's random draws and kernels as plain whole-array numpy: the definitions.

The job runs compiled loops (``jobs/pair_kernels.py``); ``test_pair_kernels.py``
checks that they give exactly what these give, and the statistical tests of
``test_job_pairs_stats.py`` test word2vec semantics on these, where each step is
one readable line.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
STREAM_SHIFT = np.uint64(40)  # counters below 2**40, stream number above
SUBSAMPLE, WINDOW = 0, 1


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 output function on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_u64(keys: np.ndarray, counters: np.ndarray, stream: int) -> np.ndarray:
    """Draw ``counters`` of ``stream`` in each stream ``keys``: element ``counter`` of the
    splitmix64 sequence seeded with the key."""
    counters = counters.astype(np.uint64) + (np.uint64(stream) << STREAM_SHIFT)
    with np.errstate(over="ignore"):
        return splitmix64(np.asarray(keys, np.uint64) + counters * GOLDEN)


def uniform01(bits: np.ndarray) -> np.ndarray:
    """Doubles in [0, 1) from the top 53 bits."""
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def subsample_mask(
    ids: np.ndarray, pos: np.ndarray, tok_keys: np.ndarray, keep_prob: np.ndarray
) -> np.ndarray:
    """Token at ``pos`` of the sentence keyed ``tok_keys`` is kept with probability ``keep_prob[id]``."""
    return uniform01(random_u64(tok_keys, pos, SUBSAMPLE)) < keep_prob[ids]


def kept_tokens(
    ids: np.ndarray, lengths: np.ndarray, keys: np.ndarray, keep_prob: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, sentence index, reach in 1..window) of the tokens that survive subsampling."""
    sid = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    tok_keys = keys[sid]
    keep = subsample_mask(ids, pos, tok_keys, keep_prob)
    bits = random_u64(tok_keys[keep], pos[keep], WINDOW) >> np.uint64(32)
    reach = 1 + ((bits * np.uint64(window)) >> np.uint64(32)).astype(np.int64)
    return ids[keep], sid[keep], reach


def window_rows(ids: np.ndarray, sid: np.ndarray, reach: np.ndarray, window: int) -> np.ndarray:
    """Rows ``center << 32 | context`` by distance, then side (left, right), then centre position."""
    n = len(ids)
    index = np.arange(n)
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if n else np.zeros(0, np.int64)
    run = np.diff(np.r_[starts, n])
    room_left = index - np.repeat(starts, run)
    room_right = np.repeat(starts + run, run) - index - 1
    as_center = ids.astype(np.uint64) << np.uint64(32)
    as_context = ids.astype(np.uint64)
    rows = [np.zeros(0, np.uint64)]
    for distance in range(1, window + 1):
        near = reach >= distance
        for sign, room in ((-1, room_left), (1, room_right)):
            centers = np.flatnonzero(near & (room >= distance))
            rows.append(as_center[centers] | as_context[centers + sign * distance])
    return np.concatenate(rows)


def below(bits: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``floor(bits * n / 2**64)``, exactly, through Python integers."""
    return np.array([(int(b) * int(m)) >> 64 for b, m in zip(bits, n, strict=True)], np.int64)


def shuffle_rows(rows: np.ndarray, key: int) -> np.ndarray:
    """Fisher-Yates: step i (from the last row down to 1) swaps rows i and ``below(draw i, i + 1)``."""
    rows = rows.copy()
    steps = np.arange(len(rows) - 1, 0, -1)
    targets = below(random_u64(np.full(len(steps), key, np.uint64), steps, 0), steps + 1)
    for i, j in zip(steps, targets, strict=True):
        rows[i], rows[j] = rows[j], rows[i]
    return rows


def alias_pick(bits: np.ndarray, table: np.ndarray, vocab: int) -> np.ndarray:
    """Column from the high 32 bits, kept if the low 32 bits are below its threshold, else its alias."""
    low, shift = np.uint64(0xFFFFFFFF), np.uint64(32)
    column = ((bits >> shift) * np.uint64(vocab)) >> shift
    entry = table[column.astype(np.int64)]
    return np.where((bits & low) < (entry & low), column, entry >> shift).astype(np.int32)


def draw_negatives(
    context: np.ndarray, table: np.ndarray, vocab: int, key: int, negative: int, first_row: int = 0
) -> np.ndarray:
    """Slot k of row r is draw ``r * K + k``; redraw a of a clashing slot is draw ``slot + (a << 40)``."""
    slots = np.arange(len(context) * negative, dtype=np.uint64) + np.uint64(first_row * negative)
    keys = np.full(len(slots), key, np.uint64)
    out = alias_pick(random_u64(keys, slots, 0), table, vocab)
    wanted = np.repeat(context, negative)
    for attempt in range(1, 1000):
        clash = np.flatnonzero(out == wanted)
        if not clash.size:
            break
        out[clash] = alias_pick(random_u64(keys[clash], slots[clash], attempt), table, vocab)
    return out.reshape(-1, negative)


def pack_rows(center: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Rows as one uint64 array ``center << 32 | context``, the layout the pairs job shuffles."""
    packed = center.astype(np.uint64)
    packed <<= np.uint64(32)
    packed |= context.astype(np.uint64)
    return packed


def unpack_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) int32 columns of packed rows."""
    return (packed >> np.uint64(32)).astype(np.int32), (packed & np.uint64(0xFFFFFFFF)).astype(np.int32)
