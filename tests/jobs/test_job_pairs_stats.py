"""word2vec sampling semantics, tested with real statistics on the job's functions and the numpy definitions.

Seeds are fixed, so each test is deterministic; thresholds are set so that a correct
implementation passes with a wide margin and the listed wrong ones fail.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from corpus2vec.jobs.pairs import (
    NegativeSampler,
    SamplingTables,
    alias_table,
    build_tables,
    keep_probabilities,
    map_row_group,
    sentence_key,
    shard_keys,
    shuffle_rows,
    window_pairs,
)
from corpus2vec.model.config import INPUT_WORDS, PairsConfig
from corpus2vec.model.schemas import TOKENS_SCHEMA
from tests.jobs.numpy_reference import pack_rows, random_u64, subsample_mask, uniform01, unpack_rows


def zipf_counts(vocab: int, top: int = 200_000) -> np.ndarray:
    return np.maximum(1, (top / np.arange(1, vocab + 1) ** 1.05)).astype(np.int64)


def test_counter_rng_is_uniform() -> None:
    keys = np.repeat(np.array([sentence_key(1, f"d{i}", 0) for i in range(50)], np.uint64), 2000)
    u = uniform01(random_u64(keys, np.tile(np.arange(2000), 50), 0))
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    other = uniform01(random_u64(keys, np.tile(np.arange(2000), 50), 1))
    assert abs(stats.pearsonr(u, other).statistic) < 0.01  # streams are independent


def test_keep_probability_is_word2vec_formula() -> None:
    counts = np.array([1, 10, 1_000, 100_000])
    total, sample = 1_000_000, 1e-3
    expected = [min(1.0, (np.sqrt(f / (sample * total)) + 1) * (sample * total) / f) for f in counts]
    assert keep_probabilities(counts, sample, total) == pytest.approx(expected)
    assert (keep_probabilities(counts, 0.0, total) == 1).all()


def test_keep_rate_per_frequency_band_matches_the_formula() -> None:
    counts = zipf_counts(300)
    ids = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int32)
    keep_prob = keep_probabilities(counts, 1e-3, int(counts.sum()))
    lengths = np.full(len(ids) // 1000, 1000)
    ids = ids[: lengths.sum()]
    keys = np.array([sentence_key(7, f"doc{i}", 0) for i in range(len(lengths))], np.uint64)
    sid = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(ids)) - sid * 1000
    kept = subsample_mask(ids, pos, keys[sid], keep_prob)
    bands = np.digitize(keep_prob[ids], [0.05, 0.1, 0.2, 0.4, 0.7, 0.99])
    z = []
    for band in np.unique(bands):
        p = keep_prob[ids[bands == band]]
        observed = kept[bands == band].sum()
        var = (p * (1 - p)).sum()
        z.append((observed - p.sum()) / np.sqrt(var) if var > 0 else 0.0)
        assert abs(z[-1]) < 4, f"band {band}: kept {observed}, expected {p.sum():.0f}"
    chi2 = float(np.sum(np.square(z)))
    assert stats.chi2.sf(chi2, len(z)) > 1e-3
    _, tokens_kept = window_pairs(ids, lengths, keys, keep_prob, 5, input_word="context")
    assert tokens_kept == kept.sum()


def alias_probabilities(threshold: np.ndarray, alias: np.ndarray) -> np.ndarray:
    accept = threshold.astype(np.float64) / 2**32
    prob = accept.copy()
    np.add.at(prob, alias, 1 - accept)
    return prob / len(alias)


def test_alias_table_is_exact() -> None:
    weights = zipf_counts(1000).astype(np.float64) ** 0.75
    threshold, alias = alias_table(weights)
    assert alias_probabilities(threshold, alias) == pytest.approx(weights / weights.sum(), rel=1e-6, abs=1e-9)


def test_negatives_follow_count_to_the_075_by_chi_square() -> None:
    counts = zipf_counts(40)
    tables = build_tables(counts, int(counts.sum()), PairsConfig(negative=5))
    q = counts**0.75 / (counts**0.75).sum()
    contexts = np.random.default_rng(3).choice(len(counts), size=100_000, p=q).astype(np.int32)
    negatives = NegativeSampler(tables, shard_keys(1, 0)[1]).for_pairs(contexts, 5)
    assert not (negatives == contexts[:, None]).any()
    # Expected: each slot draws from q restricted to words != context (redraw = rejection).
    per_context = np.bincount(contexts, minlength=len(q))
    expected = np.zeros(len(q))
    for c, n in enumerate(per_context):
        conditional = q.copy()
        conditional[c] = 0
        expected += 5 * n * conditional / conditional.sum()
    observed = np.bincount(negatives.ravel(), minlength=len(q))
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # The test has power: plain unigram (exponent 1) is rejected outright.
    unigram = counts / counts.sum() * observed.sum()
    assert stats.chisquare(observed, unigram).pvalue < 1e-9


def test_offsets_follow_the_reduced_window() -> None:
    """Unique ids per position make offset = context - centre; P(|offset| = k) ∝ window - k + 1."""
    window, n = 5, 400_000
    ids = np.arange(n, dtype=np.int32)
    lengths = np.full(n // 10_000, 10_000)
    keys = np.array([sentence_key(1, "d", i) for i in range(len(lengths))], np.uint64)
    rows, _ = window_pairs(ids, lengths, keys, np.ones(n), window, input_word="centre")
    center, context = unpack_rows(rows)
    assert ((center // 10_000) == (context // 10_000)).all()  # never across sentences
    offsets = context.astype(np.int64) - center
    assert set(np.unique(np.abs(offsets))) == set(range(1, window + 1))
    observed = np.bincount(np.abs(offsets), minlength=window + 1)[1:]
    weights = window - np.arange(1, window + 1) + 1.0
    assert stats.chisquare(observed, weights / weights.sum() * observed.sum()).pvalue > 1e-3
    assert stats.binomtest(int((offsets > 0).sum()), len(offsets)).pvalue > 1e-3  # both sides alike
    full_window = np.full(window, observed.sum() / window)
    assert stats.chisquare(observed, full_window).pvalue < 1e-9  # a fixed window would fail


def test_window_counts_positions_after_subsampling() -> None:
    """word2vec.c windows over the kept tokens: dropped words do not leave gaps."""
    n = 200_000
    ids = np.arange(n, dtype=np.int32)
    lengths = np.array([n])
    keys = np.array([sentence_key(1, "d", 0)], np.uint64)
    keep_prob = np.full(n, 0.5)
    rows, kept = window_pairs(ids, lengths, keys, keep_prob, 3, input_word="centre")
    center, context = unpack_rows(rows)
    kept_ids = np.flatnonzero(subsample_mask(ids, np.arange(n), np.repeat(keys, n), keep_prob))
    rank = np.full(n, -1)
    rank[kept_ids] = np.arange(len(kept_ids))
    assert kept == len(kept_ids) and (rank[center] >= 0).all() and (rank[context] >= 0).all()
    assert set(np.unique(np.abs(rank[context] - rank[center]))) == {1, 2, 3}


@pytest.mark.parametrize("input_word", INPUT_WORDS)
def test_pairs_of_a_sentence_do_not_depend_on_its_batch(input_word: str) -> None:
    """The same sentence gives the same pairs alone or among others (partition independence),
    in either roles."""
    rng = np.random.default_rng(5)
    counts = zipf_counts(100)
    keep = keep_probabilities(counts, 1e-2, int(counts.sum()))
    sentences = [rng.integers(0, 100, size=rng.integers(5, 50)).astype(np.int32) for _ in range(20)]
    keys = np.array([sentence_key(3, "doc", i) for i in range(20)], np.uint64)
    together, _ = window_pairs(
        np.concatenate(sentences), np.array([len(s) for s in sentences]), keys, keep, 5, input_word=input_word
    )
    alone = [
        window_pairs(s, np.array([len(s)]), keys[i : i + 1], keep, 5, input_word=input_word)[0]
        for i, s in enumerate(sentences)
    ]
    assert sorted(together.tolist()) == sorted(np.concatenate(alone).tolist())
    assert len(together) > 100


def test_shuffle_is_a_uniform_permutation() -> None:
    center = np.repeat(np.arange(10, dtype=np.int32), 1000)
    context = np.arange(10_000, dtype=np.int32)
    shuffled_center, shuffled_context = unpack_rows(
        shuffle_rows(pack_rows(center, context), shard_keys(1, 0)[0])
    )
    assert sorted(shuffled_context.tolist()) == context.tolist()
    assert (shuffled_center == shuffled_context // 1000).all()  # rows stay intact
    # Position of each original row is uniform over the array.
    assert stats.kstest(np.argsort(shuffled_context) / 10_000, "uniform").pvalue > 1e-3


def test_oov_tokens_are_dropped_before_windowing(tmp_path) -> None:
    table = pa.table(
        {
            "doc_id": ["a", "b"],
            "sentence": pa.array([0, 0], pa.int32()),
            "tokens": [["x", "oov", "y"], ["oov"]],
        },
        schema=TOKENS_SCHEMA,
    )
    pq.write_table(table, tmp_path / "part.parquet")
    records = list(map_row_group(str(tmp_path / "part.parquet"), 0, pa.array(["y", "x"]), 1, 4))
    assert len(records) == 1  # the all-OOV sentence disappears
    _, (doc_id, sentence, ids) = records[0]
    assert (doc_id, sentence, np.frombuffer(ids, np.int32).tolist()) == ("a", 0, [1, 0])


def test_single_word_vocabulary_cannot_draw_negatives() -> None:
    tables = SamplingTables(np.ones(1), np.array([2**32], np.uint64), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="needs >= 2 words"):
        NegativeSampler(tables, shard_keys(1, 0)[1]).for_pairs(np.zeros(3, np.int32), 2)


def test_window_pairs_refuses_unknown_roles() -> None:
    """A typo in the roles must not fall back to either mode (the shards would look valid)."""
    ids = np.arange(20, dtype=np.int32)
    keys = np.array([sentence_key(1, "d", 0)], np.uint64)
    with pytest.raises(ValueError, match="input_word must be one of centre, context, not 'center'"):
        window_pairs(ids, np.array([20]), keys, np.ones(20), 5, input_word="center")
