"""Write vocab and pair-shard stage outputs with pyarrow, as the Spark jobs would, for model tests.

The planted corpus has words in groups: a pair's centre and context always come
from the same group, negatives from the unigram^0.75 distribution over all words.
Trained vectors should therefore put words of a group close together, which
gives the tests a quality signal that needs no real text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus2vec.model import storage
from corpus2vec.model.checkpoint import save_npy
from corpus2vec.model.contracts import Pairs, Train, Vocab, entry_for
from corpus2vec.model.schemas import VOCAB_SCHEMA, pairs_schema


@pytest.fixture()
def one_torch_thread():
    """What ``python -m corpus2vec.model.train`` sets; OpenMP spinning is slow on a busy 2-core machine."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@dataclass(frozen=True)
class Planted:
    """Where a planted corpus was written and which group each word id belongs to."""

    pairs_uri: str
    vocab_uri: str
    groups: np.ndarray  # group of each word id
    total_pairs: int


def write_vocab(uri: str, words: list[str], counts: np.ndarray) -> Vocab:
    """``{uri}/vocab.parquet`` + manifest, ids by descending count."""
    table = pa.table(
        {"id": np.arange(len(words), dtype=np.int32), "word": words, "count": counts.astype(np.int64)},
        schema=VOCAB_SCHEMA,
    )
    fs, path = storage.get_fs(storage.join(uri, "vocab.parquet"))
    fs.makedirs(storage.get_fs(uri)[1], exist_ok=True)
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle)
    return Vocab(
        files=(entry_for(uri, "vocab.parquet", rows=len(words)),),
        key="planted",
        tokens_digest="0" * 64,
        vocab_size=len(words),
        total_tokens=int(counts.sum()),
        retained_tokens=int(counts.sum()),
        coverage=1.0,
        types=len(words),
        min_count=1,
        max_vocab_size=None,
    ).write(uri)


def write_pairs(
    uri: str,
    vocab_sha256: str,
    center: np.ndarray,
    context: np.ndarray,
    negatives: np.ndarray,
    *,
    shards: int,
    row_group_rows: int,
    seed: int = 1,
) -> Pairs:
    """Split the pairs into ``shards`` Parquet files (zstd, given row-group size) plus manifest."""
    negative = negatives.shape[1]
    schema = pairs_schema(negative)
    fs, root = storage.get_fs(uri)
    fs.makedirs(root, exist_ok=True)
    entries = []
    for i, idx in enumerate(np.array_split(np.arange(center.shape[0]), shards)):
        name = f"part-{i:05d}.parquet"
        neg = pa.FixedSizeListArray.from_arrays(pa.array(negatives[idx].reshape(-1), pa.int32()), negative)
        table = pa.Table.from_arrays(
            [pa.array(center[idx], pa.int32()), pa.array(context[idx], pa.int32()), neg], schema=schema
        )
        with fs.open(storage.join(root, name), "wb") as handle:
            pq.write_table(table, handle, compression="zstd", row_group_size=row_group_rows)
        entries.append(entry_for(uri, name, rows=len(idx)))
    total = int(center.shape[0])
    return Pairs(
        files=tuple(entries),
        key="planted",
        tokens_digest="0" * 64,
        vocab_digest="0" * 64,
        vocab_sha256=vocab_sha256,
        vocab_size=int(max(center.max(), context.max(), negatives.max())) + 1,
        negative=negative,
        window=5,
        sample=0.0,
        ns_exponent=0.75,
        seed=seed,
        num_shards=shards,
        draws=1,
        draw_pairs=[total],
        total_pairs=total,
        tokens_in=total,
        tokens_kept=total,
        bytes_per_pair=sum(e.bytes for e in entries) / max(1, total),
        adjacent_same_center=0.0,
        adjacent_same_center_baseline=0.0,
        config={},
    ).write(uri)


def planted_corpus(
    root: str,
    *,
    groups: int = 10,
    per_group: int = 20,
    pairs: int = 100_000,
    negative: int = 5,
    shards: int = 4,
    row_group_rows: int = 10_000,
    seed: int = 0,
) -> Planted:
    """A vocab + pairs stage under ``root`` with group structure (see the module docstring)."""
    rng = np.random.default_rng(seed)
    vocab_size = groups * per_group
    freq = 1.0 / np.arange(1, vocab_size + 1) ** 0.7  # Zipf-like, ids already by descending count
    word_group = rng.permutation(np.arange(vocab_size) % groups)
    center = rng.choice(vocab_size, pairs, p=freq / freq.sum()).astype(np.int32)
    members = [np.flatnonzero(word_group == g) for g in range(groups)]
    context = np.empty(pairs, dtype=np.int32)
    for g, ids in enumerate(members):
        rows = np.flatnonzero(word_group[center] == g)
        context[rows] = rng.choice(ids, rows.shape[0])
    noise = freq**0.75
    negatives = rng.choice(vocab_size, (pairs, negative), p=noise / noise.sum()).astype(np.int32)
    counts = np.maximum(1, (freq / freq.sum() * pairs).astype(np.int64))
    counts = np.sort(counts)[::-1]
    words = [f"w{i:04d}g{word_group[i]}" for i in range(vocab_size)]
    vocab_uri, pairs_uri = storage.join(root, "vocab"), storage.join(root, "pairs")
    vocab = write_vocab(vocab_uri, words, counts)
    write_pairs(
        pairs_uri,
        vocab.vocab_sha256,
        center,
        context,
        negatives,
        shards=shards,
        row_group_rows=row_group_rows,
    )
    return Planted(pairs_uri, vocab_uri, word_group, pairs)


def group_separation(vectors: np.ndarray, groups: np.ndarray) -> float:
    """Mean cosine within groups minus mean cosine across groups (higher is better, ~0 untrained)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    same = groups[:, None] == groups[None, :]
    np.fill_diagonal(same, False)
    other = groups[:, None] != groups[None, :]
    return float(sims[same].mean() - sims[other].mean())


def write_train(
    uri: str, vectors: np.ndarray, vocab: Vocab, *, metrics: dict | None = None, pairs_trained: int = 123
) -> Train:
    """A finished train stage holding ``vectors`` for ``vocab``, as the trainer would leave it."""
    save_npy(storage.join(uri, "vectors.npy"), vectors.astype(np.float32))
    save_npy(storage.join(uri, "output_vectors.npy"), np.zeros_like(vectors, dtype=np.float32))
    storage.write_json_atomic(storage.join(uri, "metrics.json"), metrics or {})
    return Train(
        files=tuple(entry_for(uri, n) for n in ("vectors.npy", "output_vectors.npy", "metrics.json")),
        key="planted",
        pairs_digest="0" * 64,
        vocab_digest=vocab.digest,
        vocab_sha256=vocab.vocab_sha256,
        vocab_size=int(vectors.shape[0]),
        vector_size=int(vectors.shape[1]),
        pairs_uri="",
        vocab_uri=vocab.uri,
        total_pairs=pairs_trained,
        config={"x": 1},
        world_size=1,
        backend="none",
        kernel="numba",
        pairs_per_s=1.0,
        pairs_trained=pairs_trained,
        bytes_communicated=0,
        final_loss=None,
    ).write(uri)
