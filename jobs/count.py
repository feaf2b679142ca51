"""Count words and build the vocabulary: tokens stage -> ``vocab/vocab.parquet`` + manifest.

Run as ``python -m corpus2vec.jobs.count --tokens URI --out URI [--master M] [--preset P] [--set k=v]``.

Tasks read the row groups the tokens manifest lists (fsspec + pyarrow, so s3 works
without s3a) and count with ``pyarrow.compute.value_counts`` in C++; Spark sums
the per-task counts (reduceByKey). Only the retained vocabulary (after ``min_count``) comes
back to the driver, which writes the single small ``vocab.parquet``.

``max_vocab_size`` keeps the most frequent words after ``min_count`` (ties by word).
This differs on purpose from gensim, whose ``max_vocab_size`` prunes rare words
*while* counting to bound memory: here counting is exact and distributed.
"""

from __future__ import annotations

import argparse
import io
import operator
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus2vec.jobs import common
from corpus2vec.model import storage
from corpus2vec.model.config import VocabConfig
from corpus2vec.model.contracts import VOCAB_FILE, Tokens, Vocab, entry_for
from corpus2vec.model.schemas import TOKENS_SCHEMA, VOCAB_SCHEMA

COUNTS_SCHEMA = pa.schema([pa.field("word", pa.string()), pa.field("count", pa.int64())])


def count_row_group(url: str, group: int) -> pa.RecordBatch:
    """(word, count) of one tokens row group, counted in C++."""
    table = common.read_row_group(url, group, ["tokens"], TOKENS_SCHEMA)
    flat = pc.list_flatten(table.column("tokens"))
    counts = pc.value_counts(flat)
    return pa.RecordBatch.from_arrays(
        [counts.field("values"), counts.field("counts").cast(pa.int64())], schema=COUNTS_SCHEMA
    )


def count_units(units: Iterable[tuple[str, int]], env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Task body: (word, count) summed over this task's row groups (pre-aggregated in C++)."""
    common.apply_store_env(env)
    batches = [count_row_group(url, group) for url, group in units]
    if not batches:
        return
    table = (
        pa.Table.from_batches(batches, schema=COUNTS_SCHEMA).group_by("word").aggregate([("count", "sum")])
    )
    yield from zip(table.column("word").to_pylist(), table.column("count_sum").to_pylist(), strict=True)


def word_partition(word: str) -> int:
    """Stable partitioner for words (Python's str hash is salted per process)."""
    return zlib.crc32(word.encode("utf-8"))


def count_words(spark: Any, units: list[tuple[str, int]], partitions: int | None = None) -> Any:
    """RDD of ``(word, count)`` summed over the corpus, from tokens work units ``(url, row_group)``.

    Plain RDDs rather than DataFrame Arrow UDFs: those need pandas, which the jobs
    extra does not install.
    """
    env = common.store_env()
    sc = spark.sparkContext
    return (
        sc.parallelize(units, common.task_count(spark, len(units), partitions))
        .mapPartitions(lambda part: count_units(part, env))
        .reduceByKey(
            operator.add, numPartitions=max(1, sc.defaultParallelism * 2), partitionFunc=word_partition
        )
    )


def select_vocab(counts: Any, min_count: int) -> pa.Table:
    """(word, count) table of words occurring at least ``min_count`` times (only these reach the driver)."""
    kept = counts.filter(lambda wc: wc[1] >= min_count).collect()
    return pa.Table.from_arrays(
        [pa.array([w for w, _ in kept], pa.string()), pa.array([c for _, c in kept], pa.int64())],
        schema=COUNTS_SCHEMA,
    )


def order_vocab(words: pa.Table, max_vocab_size: int | None) -> pa.Table:
    """VOCAB_SCHEMA table: ids 0..V-1 by descending count, ties by word (code point order)."""
    order = pc.sort_indices(words, sort_keys=[("count", "descending"), ("word", "ascending")])
    if max_vocab_size is not None:
        order = order.slice(0, max_vocab_size)
    ordered = words.take(order)
    ids = pa.array(range(ordered.num_rows), pa.int32())
    return pa.Table.from_arrays([ids, ordered.column("word"), ordered.column("count")], schema=VOCAB_SCHEMA)


def vocab_bytes(vocab: pa.Table) -> bytes:
    """The vocab as one zstd Parquet file in memory (small; written once from the driver)."""
    buffer = io.BytesIO()
    pq.write_table(vocab, buffer, compression="zstd", compression_level=common.ZSTD_LEVEL)
    return buffer.getvalue()


def run_count(
    spark: Any,
    tokens_uri: str,
    out_uri: str,
    cfg: VocabConfig,
    *,
    partitions: int | None = None,
    key: str = "",
) -> Vocab:
    """Build the vocabulary of a finished tokens stage and return its manifest.

    Idempotent (a finished output is returned untouched). Raises ValueError when no
    word reaches ``min_count``, with the setting to change.
    """
    started = time.time()
    done = Vocab.finished(out_uri)
    if done is not None:
        return done
    tokens = Tokens.read(tokens_uri)
    storage.clear_unfinished(out_uri)
    counts = count_words(spark, common.manifest_units(tokens), partitions).persist()
    try:
        types, total = counts.aggregate((0, 0), lambda acc, wc: (acc[0] + 1, acc[1] + wc[1]), _add_pairs)
        kept = select_vocab(counts, cfg.min_count)
    finally:
        counts.unpersist()
    if kept.num_rows == 0:
        raise ValueError(
            f"no word occurs at least min_count={cfg.min_count} times in {total} tokens; "
            "lower it with --set min_count=... or give a larger corpus"
        )
    vocab = order_vocab(kept, cfg.max_vocab_size)
    data = vocab_bytes(vocab)
    storage.write_bytes_atomic(storage.join(out_uri, VOCAB_FILE), data)
    retained = int(pc.sum(vocab.column("count")).as_py())
    return Vocab(
        files=(entry_for(out_uri, VOCAB_FILE, rows=vocab.num_rows),),
        key=key,
        tokens_digest=tokens.digest,
        vocab_size=vocab.num_rows,
        total_tokens=total,
        retained_tokens=retained,
        coverage=retained / total if total else 0.0,
        types=types,
        min_count=cfg.min_count,
        max_vocab_size=cfg.max_vocab_size,
        seconds=round(time.time() - started, 3),
    ).write(out_uri)


def _add_pairs(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m corpus2vec.jobs.count --tokens URI --out URI``; prints vocab size and coverage."""
    parser = argparse.ArgumentParser(
        prog="python -m corpus2vec.jobs.count", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tokens", required=True, help="finished tokens stage URL")
    parser.add_argument("--out", required=True, help="output folder URL (the vocab stage dir)")
    common.common_args(parser)
    args = parser.parse_args(argv)
    keys = ("vocab_size", "total_tokens", "retained_tokens", "coverage", "types", "seconds")
    return common.run_job_main(
        args, "count", lambda spark, cfg: run_count(spark, args.tokens, args.out, cfg.vocab), keys
    )


if __name__ == "__main__":
    sys.exit(main())
