"""The compiled pairs kernels give exactly what the plain numpy definitions give."""

from __future__ import annotations

import numpy as np
import pytest

from jobs import pair_kernels
from jobs.pairs import NegativeSampler, SamplingTables, alias_table


def window_rows_numpy(ids: np.ndarray, sid: np.ndarray, reach: np.ndarray, window: int) -> np.ndarray:
    """Reference: rows by distance, then side (left, right), then centre position, as whole-array passes."""
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


def alias_draw_numpy(bits: np.ndarray, table: np.ndarray, vocab: int) -> np.ndarray:
    """Reference: column from the high 32 bits, keep it if the low 32 bits are below its threshold."""
    low, shift = np.uint64(0xFFFFFFFF), np.uint64(32)
    column = ((bits >> shift) * np.uint64(vocab)) >> shift
    entry = table[column.astype(np.int64)]
    return np.where((bits & low) < (entry & low), column, entry >> shift).astype(np.int32)


@pytest.mark.parametrize("window", [1, 2, 5, 10])
def test_window_rows_match_the_numpy_definition(window: int) -> None:
    rng = np.random.default_rng(window)
    lengths = rng.integers(1, 30, size=400)
    lengths[::7] = 1  # one-token sentences make no pairs
    sid = np.repeat(np.arange(len(lengths)), lengths)
    ids = rng.integers(0, 2**31 - 1, size=len(sid)).astype(np.int32)  # high ids: shifts must not overflow
    reach = rng.integers(1, window + 1, size=len(sid))
    expected = window_rows_numpy(ids, sid, reach, window)
    got = pair_kernels.window_rows(ids, sid, reach, window)
    assert got.dtype == np.uint64 and len(expected) > 0
    assert np.array_equal(got, expected)


def test_window_rows_of_nothing_is_empty() -> None:
    empty = np.zeros(0, np.int64)
    assert len(pair_kernels.window_rows(empty.astype(np.int32), empty, empty, 5)) == 0


def test_alias_draws_match_the_numpy_definition_and_the_sampler() -> None:
    weights = np.random.default_rng(0).pareto(1.0, size=5_000) + 1e-3
    threshold, alias = alias_table(weights)
    tables = SamplingTables(np.ones(len(weights)), threshold, alias)
    sampler = NegativeSampler(tables, np.random.PCG64(7))
    got = sampler.draw(3_000_001)  # more than one chunk
    bits = np.random.PCG64(7).random_raw(3_000_001)
    assert np.array_equal(got, alias_draw_numpy(bits, sampler.table, len(weights)))
