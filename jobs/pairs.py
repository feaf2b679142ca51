"""Training pairs: tokens + vocab -> ``pairs/part-NNNNN.parquet`` (pairs_schema(K)) + manifest.

Run as ``python -m corpus2vec.jobs.pairs --tokens URI --vocab URI --out URI [--master M] [--preset P] [--set k=v]``.

word2vec semantics, exactly (word2vec.c's):

* out-of-vocabulary tokens are dropped *before* windowing (word2vec.c does the same);
* subsampling keeps a word of count f with probability
  ``min(1, (sqrt(f/(sample*T)) + 1) * (sample*T)/f)``, T = retained (in-vocab) tokens;
  ``sample=0`` keeps everything;
* each kept centre draws b uniformly from 1..window and pairs with the kept words at
  offsets 1..b on each side, inside its sentence;
* K negatives per pair from count^ns_exponent (alias method); a negative equal to
  the pair's target word (the ``context`` column) is redrawn;
* roles as word2vec.c's skip-gram: each row is (word in the window, centre), the
  window's word training its input vector against the centre's output vector
  (``input_word="context"``, the default); ``"centre"`` writes the same pairs as
  (centre, word in its window). The shards' ``center`` column is always the word whose
  input vector the row trains, ``context`` its positive target.

Determinism: every random draw is counter-based, ``splitmix64(key + counter *
golden)`` (:func:`corpus2vec.jobs.pair_kernels.splitmix_at`). Subsampling and window draws use
``sentence_key = hash(seed, doc_id, sentence)`` with the token position as counter,
so a sentence yields the same pairs in any task. A shard's rows are then shuffled
(Fisher-Yates, counter = step) and its negatives drawn (counter = row * K + slot),
from two keys hashed from (seed, shard); a shard's content is fixed by document
identity (sorted records), so nothing depends on Spark partitions, and shards are
byte-identical for any partitioning and any numpy version.

Draws: word2vec redraws subsampling, windows and negatives every epoch, and reusing
one draw for every epoch cost 1.5-2 analogy points on the benchmark corpus. So the
job writes ``draws`` independent samples (default: one per training epoch), draw d
with its own seed (:func:`draw_seed`; draw 0 uses the seed itself). Draw 0 is
``part-NNNNN.parquet`` at the top of the folder, draw d >= 1 is ``draw-DD/part-NNNNN.parquet``;
the manifest tags each file with its draw and lists ``draw_pairs``, and training
epoch e reads draw ``e % draws``. Each shard's sentences are gathered once and
every draw is generated from them, so the Spark map and shuffle are shared.

Sharding: a sentence (<= max_sentence_tokens tokens of one document) goes to shard
``hash(seed, doc_id, sentence) % num_shards``. The unit is the sentence rather than
the whole document so that a text8-style corpus (one document) still fills every
shard. Each shard is generated and written by one task, its rows permuted with a
generator seeded by (seed, shard), so neighbouring rows come from different documents.

Memory: a shard task holds its sentences' ids (4 bytes per token) and, for at
most two draws at once (one being generated, one being written), 8 bytes per
pair plus one row group's negatives; the file itself streams to a local temp
file (uploaded in one piece on object stores). Pick ``num_shards`` so that a
draw of a shard is a few hundred MB at most.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus2vec.jobs import common, pair_kernels
from corpus2vec.model import storage
from corpus2vec.model.config import INPUT_WORDS, PairsConfig
from corpus2vec.model.contracts import Pairs, Tokens, Vocab, files_from
from corpus2vec.model.schemas import TOKENS_SCHEMA, pairs_schema

# ----------------------------------------------------------------------------- randomness


def sentence_key(seed: int, doc_id: str, sentence: int) -> int:
    """The 64-bit key of one sentence's random stream."""
    return common.stable_hash64("rng", seed, doc_id, sentence)


def shard_of(seed: int, doc_id: str, sentence: int, num_shards: int) -> int:
    """The shard a sentence's pairs go to."""
    return common.stable_hash64("shard", seed, doc_id, sentence) % num_shards


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class SamplingTables:
    """Per-word tables every task needs, built once on the driver and broadcast."""

    keep_prob: np.ndarray  # float64[V]: subsampling keep probability
    alias_threshold: np.ndarray  # uint64[V]: alias-method acceptance, scaled to 2**32
    alias_index: np.ndarray  # int32[V]: alias-method fallback word


def keep_probabilities(counts: np.ndarray, sample: float, total: int) -> np.ndarray:
    """word2vec.c's keep probability ``(sqrt(f/(s*T)) + 1) * (s*T)/f``, capped at 1; all 1 when s == 0."""
    counts = counts.astype(np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * total
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method for sampling index i with probability weights[i]/sum.

    Returns (acceptance threshold scaled to 2**32 as uint64, alias index int32): a
    draw is column = uniform V, then keep column if u32 < threshold else alias.
    Built once (O(V) Python loop over the small/large worklists is fine for V ~ 1e6).
    """
    n = len(weights)
    prob = weights.astype(np.float64) * n / weights.sum()
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if prob[i] < 1.0]
    large = [i for i in range(n) if prob[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        alias[s] = g
        prob[g] = prob[g] + prob[s] - 1.0
        (small if prob[g] < 1.0 else large).append(g)
    for i in small + large:  # numerical leftovers are certain keeps
        prob[i] = 1.0
    threshold = np.minimum(np.round(prob * 2.0**32), 2.0**32).astype(np.uint64)
    return threshold, alias


def build_tables(counts: np.ndarray, retained_tokens: int, cfg: PairsConfig) -> SamplingTables:
    """Subsampling and negative-sampling tables from vocab counts (id order)."""
    threshold, alias = alias_table(np.power(counts.astype(np.float64), cfg.ns_exponent))
    return SamplingTables(keep_probabilities(counts, cfg.sample, retained_tokens), threshold, alias)


class NegativeSampler:
    """Draws noise words from count^ns_exponent with the alias method, from one counter-based stream.

    One packed table (alias << 32 | threshold) makes a draw one gather;
    :func:`corpus2vec.jobs.pair_kernels.draw_negatives` draws and redraws in one compiled pass.
    """

    _LOW = np.uint64(0xFFFFFFFF)
    _SHIFT = np.uint64(32)

    def __init__(self, tables: SamplingTables, key: int) -> None:
        vocab = len(tables.alias_index)
        certain = tables.alias_threshold >= np.uint64(1 << 32)  # always accepted: alias is itself
        alias = np.where(certain, np.arange(vocab), tables.alias_index).astype(np.uint64)
        self.table = (alias << self._SHIFT) | np.minimum(tables.alias_threshold, self._LOW)
        self.vocab = np.uint64(vocab)
        self.key = np.uint64(key)

    def for_pairs(self, contexts: np.ndarray, negative: int, first_row: int = 0) -> np.ndarray:
        """int32[P, K] negatives of rows ``first_row, ..``; a draw equal to the row's context is redrawn.

        Row r's draws depend only on the key and ``first_row + r``, so drawing a
        shard group by group gives the same negatives as drawing it at once.
        """
        contexts = np.ascontiguousarray(contexts, dtype=np.int32)
        return pair_kernels.draw_negatives(contexts, self.table, self.vocab, self.key, negative, first_row)


# ----------------------------------------------------------------------------- pair generation


def window_pairs(
    ids: np.ndarray,
    lengths: np.ndarray,
    keys: np.ndarray,
    keep_prob: np.ndarray,
    window: int,
    *,
    input_word: str,
) -> tuple[np.ndarray, int]:
    """(packed rows ``input << 32 | target``, tokens kept) for sentences given as concatenated ``ids``.

    ``lengths`` splits ``ids`` into sentences and ``keys`` (uint64 per sentence) seeds
    each sentence's subsampling and window draws (counter = token position), so a
    sentence gives the same pairs wherever and whenever it is processed. The input word
    (the shards' ``center`` column) is the window's centre with ``input_word="centre"``, or
    with ``"context"`` the word in the centre's window, the centre being the target. It has
    no default, so a caller cannot silently get roles other than the configured ones.
    """
    if input_word not in INPUT_WORDS:
        raise ValueError(f"input_word must be one of {', '.join(INPUT_WORDS)}, not {input_word!r}")
    ids, sid, reach = pair_kernels.kept_tokens(
        ids, lengths.astype(np.int64), keys.astype(np.uint64), keep_prob, window
    )
    return pair_kernels.window_rows(ids, sid, reach, window, input_word == "context"), len(ids)


def shard_keys(seed: int, shard: int) -> tuple[int, int]:
    """Keys of one shard's two random streams (row shuffle, negatives), from (seed, shard)."""
    shuffle = common.stable_hash64("shard-shuffle", seed, shard)
    return shuffle, common.stable_hash64("shard-negatives", seed, shard)


def shuffle_rows(packed: np.ndarray, key: int) -> np.ndarray:
    """Uniformly permute packed rows in place (and return them): a compiled Fisher-Yates shuffle
    driven by the counter-based stream ``key`` (one in-place pass over one uint64 array)."""
    if len(packed) >= 1 << 32:
        raise ValueError(f"a shard of {len(packed):,} rows is too large: raise pairs.num_shards")
    pair_kernels.shuffle_rows(packed, np.uint64(key))
    return packed


# ----------------------------------------------------------------------------- tasks

# One sentence on its way to a shard: (doc_id, sentence, int32 vocab ids as bytes).
Record = tuple[str, int, bytes]


def map_row_group(
    url: str, group: int, words: pa.Array, seed: int, num_shards: int
) -> Iterator[tuple[int, Record]]:
    """(shard, record) for each sentence of one tokens row group; OOV tokens dropped, empty sentences skipped."""
    table = common.read_row_group(url, group, ["doc_id", "sentence", "tokens"], TOKENS_SCHEMA)
    tokens = table.column("tokens").combine_chunks()
    ids = pc.index_in(pc.list_flatten(tokens), value_set=words).fill_null(-1).to_numpy(zero_copy_only=False)
    ends = np.cumsum(pc.list_value_length(tokens).to_numpy(zero_copy_only=False))
    doc_ids = table.column("doc_id").to_pylist()
    sentences = table.column("sentence").to_pylist()
    start = 0
    for doc_id, sentence, end in zip(doc_ids, sentences, ends.tolist(), strict=True):
        piece = ids[start:end]
        start = end
        piece = piece[piece >= 0].astype(np.int32)
        if piece.size:
            yield shard_of(seed, doc_id, sentence, num_shards), (doc_id, sentence, piece.tobytes())


@dataclass
class ShardTokens:
    """A shard's sentences as one id array, gathered once and windowed once per draw."""

    ids: np.ndarray  # int32: every sentence's in-vocabulary ids, concatenated
    lengths: np.ndarray  # int64: tokens per sentence
    sentences: list[tuple[str, int]]  # (doc_id, sentence) of each, in the same order

    @classmethod
    def of(cls, records: list[Record]) -> ShardTokens:
        """Sorted by (doc_id, sentence) first, so the content never depends on arrival order."""
        records = sorted(records)
        ids = np.frombuffer(b"".join(r[2] for r in records), dtype=np.int32)
        lengths = np.array([len(r[2]) // 4 for r in records], dtype=np.int64)
        return cls(ids, lengths, [(r[0], r[1]) for r in records])


def shard_rows(tokens: ShardTokens, tables: SamplingTables, cfg: PairsConfig) -> tuple[np.ndarray, int]:
    """(packed (center, context) rows of one draw, tokens kept), in a deterministic order."""
    keys = np.array([sentence_key(cfg.seed, doc, sentence) for doc, sentence in tokens.sentences], np.uint64)
    return window_pairs(
        tokens.ids, tokens.lengths, keys, tables.keep_prob, cfg.window, input_word=cfg.input_word
    )


def adjacent_expected(counts: np.ndarray) -> float:
    """Adjacent rows with equal centre expected if rows with these per-centre ``counts`` were
    uniformly shuffled: ``(P-1) * sum n(n-1) / (P(P-1))``.

    Observed / expected tells how well a shard is mixed: ~1 for a full shuffle, large
    when rows of one centre or document cluster together.
    """
    rows = int(counts.sum())
    if rows < 2:
        return 0.0
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1)).sum() / rows)


def shard_tables(
    center: np.ndarray, context: np.ndarray, sampler: NegativeSampler, negative: int, rows_per_group: int
) -> Iterator[pa.Table]:
    """pairs_schema(K) row groups from shuffled rows; negatives are drawn group by group."""
    schema = pairs_schema(negative)
    for start in range(0, len(center), rows_per_group):
        contexts = context[start : start + rows_per_group]
        negatives = sampler.for_pairs(contexts, negative, first_row=start)
        yield pa.Table.from_arrays(
            [
                pa.array(center[start : start + rows_per_group]),
                pa.array(contexts),
                pa.FixedSizeListArray.from_arrays(pa.array(negatives.ravel()), negative),
            ],
            schema=schema,
        )


# Byte-stream-split + zstd comes within ~1% of the order-0 entropy of shuffled ids
# (measured on enwiki: 12.8 bytes/pair vs 14.7 with dictionary encoding) and writes
# faster; min/max statistics are useless on random ids and cost 12% of write time.
PAIRS_PARQUET = {
    "compression_level": 1,
    "use_dictionary": False,
    "column_encoding": "BYTE_STREAM_SPLIT",
    "write_statistics": False,
}


def draw_seed(seed: int, draw: int) -> int:
    """The seed of draw ``draw``: ``seed`` itself for draw 0 (so ``draws=1`` is the single-draw
    layout), an independent 63-bit stream for the others."""
    return seed if draw == 0 else common.stable_hash64("draw", seed, draw) >> 1


def draw_path(draw: int, shard: int) -> str:
    """Where draw ``draw`` of shard ``shard`` lives, relative to the pairs folder.

    Draw 0 is ``part-NNNNN.parquet`` at the top, exactly the single-draw
    layout, so a consumer that knows nothing of draws still reads one complete,
    valid set of pairs; draw d >= 1 goes to ``draw-DD/``.
    """
    name = f"part-{shard:05d}.parquet"
    return name if draw == 0 else f"draw-{draw:02d}/{name}"


def write_shard(
    index: int, items: Iterable[tuple[int, Record]], out_uri: str, tables: Any, cfg: PairsConfig, env: dict
) -> Iterator[dict[str, Any]]:
    """Task body after the shuffle: generate, shuffle and write shard ``index``, one file per draw.

    The shard's sentences are gathered once; each draw re-runs subsampling, windows,
    row shuffle and negatives from its own seed, so draws are independent samples
    of the same word2vec process (what word2vec does afresh every epoch).

    Draw d's negatives and Parquet write run on a writer thread while this thread
    windows and shuffles draw d+1 (the kernels and pyarrow release the GIL), so the
    core keeps working while a finished file is fsynced; at most two draws are in
    memory.
    """
    common.apply_store_env(env)
    tokens = ShardTokens.of([record for _, record in items])
    vocab = len(tables.value.keep_prob)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pairs-shard-{index}") as writer:
        writing: Future | None = None
        for draw in range(cfg.draws or 1):
            seed = draw_seed(cfg.seed, draw)
            packed, tokens_kept = shard_rows(tokens, tables.value, replace(cfg, seed=seed))
            shuffle_key, negatives_key = shard_keys(seed, index)
            center, context, same, counts = pair_kernels.split_rows(shuffle_rows(packed, shuffle_key), vocab)
            del packed
            facts = {
                "path": draw_path(draw, index),
                "draw": draw,
                "sentences": len(tokens.lengths),
                "tokens_in": len(tokens.ids),
                "tokens_kept": tokens_kept,
                "adjacent_same": same,
                "adjacent_expected": adjacent_expected(counts),
            }
            if writing is not None:
                yield writing.result()
            sampler = NegativeSampler(tables.value, negatives_key)
            writing = writer.submit(_write_draw, out_uri, center, context, sampler, cfg, facts)
            del center, context
        if writing is not None:
            yield writing.result()


def _write_draw(
    out_uri: str,
    center: np.ndarray,
    context: np.ndarray,
    sampler: NegativeSampler,
    cfg: PairsConfig,
    facts: dict,
) -> dict[str, Any]:
    """Draw negatives group by group and write one draw's file; its manifest entry."""
    groups = shard_tables(center, context, sampler, cfg.negative, cfg.row_group_size)
    url = storage.join(out_uri, facts["path"])
    entry = common.write_parquet_atomic(url, pairs_schema(cfg.negative), groups, **PAIRS_PARQUET)
    return {**entry, **facts}


# ----------------------------------------------------------------------------- driver


def sentence_records_broadcast(
    spark: Any, units: list[tuple[str, int]], words: Any, cfg: PairsConfig, partitions: int
) -> Any:
    """RDD of (shard, record), mapping words to ids in tasks with a broadcast vocabulary (``words``)."""
    env = common.store_env()
    seed, shards = cfg.seed, cfg.num_shards

    def run(unit: tuple[str, int]) -> Iterator[tuple[int, Record]]:
        common.apply_store_env(env)
        return map_row_group(unit[0], unit[1], words.value, seed, shards)

    return spark.sparkContext.parallelize(units, partitions).flatMap(run)


def sentence_records_join(
    spark: Any, units: list[tuple[str, int]], vocab: pa.Table, cfg: PairsConfig, partitions: int
) -> Any:
    """RDD of (shard, record), mapping words to ids with a Spark join (vocab too big to broadcast).

    Slower than the broadcast path (every token travels through two shuffles) but
    no task holds the whole vocabulary; the output records are identical.
    """
    env = common.store_env()
    sc = spark.sparkContext
    seed, shards = cfg.seed, cfg.num_shards
    slices = partitions

    def explode(unit: tuple[str, int]) -> Iterator[tuple[str, tuple[str, int, int]]]:
        common.apply_store_env(env)
        table = common.read_row_group(unit[0], unit[1], ["doc_id", "sentence", "tokens"], TOKENS_SCHEMA)
        columns = (table.column(n).to_pylist() for n in ("doc_id", "sentence", "tokens"))
        for doc_id, sentence, tokens in zip(*columns, strict=True):
            for pos, word in enumerate(tokens):
                yield word, (doc_id, sentence, pos)

    def to_record(item: tuple[tuple[str, int], Iterable[tuple[int, int]]]) -> tuple[int, Record]:
        (doc_id, sentence), found = item
        ids = np.array([i for _, i in sorted(found)], dtype=np.int32)
        return shard_of(seed, doc_id, sentence, shards), (doc_id, sentence, ids.tobytes())

    words = vocab.column("word").to_pylist()
    vocab_rdd = sc.parallelize(list(zip(words, range(len(words)), strict=True)), slices)
    return (
        sc.parallelize(units, slices)
        .flatMap(explode)
        .join(vocab_rdd, numPartitions=slices)
        .map(lambda kv: ((kv[1][0][0], kv[1][0][1]), (kv[1][0][2], kv[1][1])))
        .groupByKey(numPartitions=slices)
        .map(to_record)
    )


def make_pairs(
    spark: Any,
    tokens: Tokens,
    vocab: pa.Table,
    vocab_manifest: Vocab,
    out_uri: str,
    cfg: PairsConfig,
    partitions: int | None = None,
) -> list[dict]:
    """Run the map/shuffle/generate/write pipeline; returns one entry per shard.

    ``partitions`` is the number of map-side tasks (default 4 per core); it changes
    nothing in the output, which tests check.
    """
    units = common.manifest_units(tokens)
    partitions = common.task_count(spark, len(units), partitions)
    sc = spark.sparkContext
    counts = vocab.column("count").to_numpy()
    tables = sc.broadcast(build_tables(counts, vocab_manifest.retained_tokens, cfg))
    broadcasts = [tables]
    try:
        if vocab.num_rows <= cfg.broadcast_vocab_max:
            broadcasts.append(sc.broadcast(vocab.column("word").combine_chunks()))
            records = sentence_records_broadcast(spark, units, broadcasts[-1], cfg, partitions)
        else:
            records = sentence_records_join(spark, units, vocab, cfg, partitions)
        env = common.store_env()
        return (
            records.partitionBy(cfg.num_shards, lambda shard: shard)
            .mapPartitionsWithIndex(lambda i, items: write_shard(i, items, out_uri, tables, cfg, env))
            .collect()
        )
    finally:
        for broadcast in broadcasts:
            broadcast.destroy()


def run_pairs(
    spark: Any,
    tokens_uri: str,
    vocab_uri: str,
    out_uri: str,
    cfg: PairsConfig,
    *,
    partitions: int | None = None,
    key: str = "",
) -> Pairs:
    """Write pair shards for a finished tokens and vocab stage; returns the manifest.

    Idempotent (a finished output is returned untouched; leftovers of a killed run are
    cleared first). The manifest carries the vocab sha256 that training checks.
    """
    started = time.time()
    done = Pairs.finished(out_uri)
    if done is not None:
        return done
    tokens = Tokens.read(tokens_uri)
    vocab_manifest = Vocab.read(vocab_uri)
    vocab = vocab_manifest.table()
    if vocab.num_rows < 2:
        raise ValueError(
            f"the vocabulary at {vocab_uri} has {vocab.num_rows} word(s); negatives need at least 2"
        )
    storage.clear_unfinished(out_uri)
    shards = sorted(
        make_pairs(spark, tokens, vocab, vocab_manifest, out_uri, cfg, partitions),
        key=lambda e: (e["draw"], e["path"]),
    )
    draws = cfg.draws or 1
    draw_pairs = [sum(e["rows"] for e in shards if e["draw"] == d) for d in range(draws)]
    first = [e for e in shards if e["draw"] == 0]
    total = sum(draw_pairs)
    same = sum(e["adjacent_same"] for e in shards)
    expected = sum(e["adjacent_expected"] for e in shards)
    gaps = max(1, sum(max(0, e["rows"] - 1) for e in shards))
    return Pairs(
        files=files_from(shards),
        key=key,
        tokens_digest=tokens.digest,
        vocab_digest=vocab_manifest.digest,
        vocab_sha256=vocab_manifest.vocab_sha256,
        vocab_size=vocab.num_rows,
        negative=cfg.negative,
        window=cfg.window,
        sample=cfg.sample,
        ns_exponent=cfg.ns_exponent,
        seed=cfg.seed,
        num_shards=cfg.num_shards,
        input_word=cfg.input_word,
        draws=draws,
        draw_pairs=draw_pairs,
        total_pairs=total,
        tokens_in=sum(e["tokens_in"] for e in first),
        tokens_kept=sum(e["tokens_kept"] for e in first),
        bytes_per_pair=sum(e["bytes"] for e in shards) / max(1, total),
        adjacent_same_center=same / gaps,
        adjacent_same_center_baseline=expected / gaps,
        config=asdict(cfg),
        seconds=round(time.time() - started, 3),
    ).write(out_uri)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m corpus2vec.jobs.pairs --tokens URI --vocab URI --out URI``; prints pair counts."""
    parser = argparse.ArgumentParser(
        prog="python -m corpus2vec.jobs.pairs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tokens", required=True, help="finished tokens stage URL")
    parser.add_argument("--vocab", required=True, help="finished vocab stage URL")
    parser.add_argument("--out", required=True, help="output folder URL (the pairs stage dir)")
    common.common_args(parser)
    args = parser.parse_args(argv)
    keys = ("total_pairs", "tokens_in", "tokens_kept", "bytes_per_pair", "adjacent_same_center", "seconds")
    return common.run_job_main(
        args, "pairs", lambda spark, cfg: run_pairs(spark, args.tokens, args.vocab, args.out, cfg.pairs), keys
    )


if __name__ == "__main__":
    sys.exit(main())
