"""The compiled pairs kernels give exactly what the plain numpy definitions give."""

from __future__ import annotations

import numpy as np
import pytest

from corpus2vec.jobs import pair_kernels
from corpus2vec.jobs.pairs import (
    NegativeSampler,
    SamplingTables,
    alias_table,
    sentence_key,
    shuffle_rows,
    window_pairs,
)
from tests.jobs import numpy_reference as ref


def sentences(seed: int, count: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lengths, keys) of random sentences, some of one token."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=count)
    lengths[::7] = 1  # one-token sentences make no pairs
    ids = rng.integers(0, 1000, size=int(lengths.sum())).astype(np.int32)
    keys = np.array([sentence_key(seed, "doc", i) for i in range(count)], np.uint64)
    return ids, lengths, keys


@pytest.mark.parametrize("window", [1, 2, 5, 10])
def test_window_rows_match_the_numpy_definition(window: int) -> None:
    rng = np.random.default_rng(window)
    ids, lengths, _ = sentences(window)
    sid = np.repeat(np.arange(len(lengths)), lengths)
    ids = rng.integers(0, 2**31 - 1, size=len(sid)).astype(np.int32)  # high ids: shifts must not overflow
    reach = rng.integers(1, window + 1, size=len(sid))
    expected = ref.window_rows(ids, sid, reach, window)
    got = pair_kernels.window_rows(ids, sid, reach, window)
    assert got.dtype == np.uint64 and len(expected) > 0
    assert np.array_equal(got, expected)


def test_context_input_rows_are_the_same_pairs_with_roles_swapped() -> None:
    rng = np.random.default_rng(3)
    ids, lengths, _ = sentences(3)
    sid = np.repeat(np.arange(len(lengths)), lengths)
    ids = rng.integers(0, 2**31 - 1, size=len(sid)).astype(np.int32)
    reach = rng.integers(1, 6, size=len(sid))
    centre_first = pair_kernels.window_rows(ids, sid, reach, 5)
    context_first = pair_kernels.window_rows(ids, sid, reach, 5, True)
    assert len(context_first) == len(centre_first) > 0
    assert np.array_equal(context_first, (centre_first << np.uint64(32)) | (centre_first >> np.uint64(32)))
    assert not np.array_equal(context_first, centre_first)


def test_window_rows_of_nothing_is_empty() -> None:
    empty = np.zeros(0, np.int64)
    assert len(pair_kernels.window_rows(empty.astype(np.int32), empty, empty, 5)) == 0


@pytest.mark.parametrize("window", [1, 5])
def test_subsampling_and_reach_match_the_numpy_definition(window: int) -> None:
    ids, lengths, keys = sentences(window + 10)
    keep_prob = np.random.default_rng(1).uniform(0.05, 1.0, size=1000)
    expected = ref.kept_tokens(ids, lengths, keys, keep_prob, window)
    got = pair_kernels.kept_tokens(ids, lengths.astype(np.int64), keys, keep_prob, window)
    assert 0 < len(got[0]) < len(ids)
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    rows, kept = window_pairs(ids, lengths, keys, keep_prob, window, input_word="centre")
    assert kept == len(expected[0])
    assert np.array_equal(rows, ref.window_rows(*expected, window))


def test_shuffle_matches_the_numpy_definition() -> None:
    rows = np.arange(5_000, dtype=np.uint64) * np.uint64(2**33 + 7)
    got = shuffle_rows(rows.copy(), 12345)
    assert np.array_equal(got, ref.shuffle_rows(rows, 12345))
    assert not np.array_equal(got, rows) and np.array_equal(np.sort(got), np.sort(rows))


def test_bounded_draw_is_the_high_half_of_the_product() -> None:
    """The kernel's 32x32-bit split of ``bits * n >> 64`` never overflows, even at the extremes."""
    bits = np.array([0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 0xDEADBEEFCAFEBABE], np.uint64)
    for n in (1, 2, 1000, 2**31, 2**32 - 1):
        expected = ref.below(bits, np.full(len(bits), n, np.uint64))
        got = [int(pair_kernels.below(b, np.uint64(n))) for b in bits]
        assert got == expected.tolist()
        assert (expected < n).all()


def test_split_rows_gives_columns_and_the_mixing_counts() -> None:
    center = np.array([3, 3, 1, 0, 3, 1, 1], np.int32)
    context = np.array([9, 8, 7, 6, 5, 4, 2**31 - 1], np.int32)
    packed = (center.astype(np.uint64) << np.uint64(32)) | context.astype(np.uint64)
    got_center, got_context, same, counts = pair_kernels.split_rows(packed, 5)
    assert np.array_equal(got_center, center) and np.array_equal(got_context, context)
    assert same == 2
    assert counts.tolist() == [1, 3, 0, 3, 0]


def noise_table(weights: np.ndarray) -> NegativeSampler:
    threshold, alias = alias_table(weights)
    return NegativeSampler(SamplingTables(np.ones(len(weights)), threshold, alias), key=7)


def test_negatives_match_the_numpy_definition_and_do_not_depend_on_grouping() -> None:
    weights = np.random.default_rng(0).pareto(1.0, size=5_000) + 1e-3
    sampler = noise_table(weights)
    context = np.random.default_rng(1).integers(0, 5_000, size=200_001).astype(np.int32)
    got = sampler.for_pairs(context, 5)
    assert np.array_equal(got, ref.draw_negatives(context, sampler.table, 5_000, 7, 5))
    in_two = np.concatenate(
        [sampler.for_pairs(context[:70_000], 5), sampler.for_pairs(context[70_000:], 5, 70_000)]
    )
    assert np.array_equal(in_two, got)


def test_negatives_redraws_match_the_numpy_definition() -> None:
    """A three-word vocabulary dominated by word 0: most draws clash with context 0 and are redrawn."""
    sampler = noise_table(np.array([50.0, 1.0, 1.0]))
    context = np.zeros(10_000, np.int32)
    got = sampler.for_pairs(context, 3, first_row=11)
    assert not (got == 0).any()
    assert np.array_equal(got, ref.draw_negatives(context, sampler.table, 3, 7, 3, first_row=11))
