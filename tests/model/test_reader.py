"""Pair-shard reader: manifest and vocab checks, disjoint complete rank shares, reshuffles, skips,
decode threads, S3."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus2vec.model import storage
from corpus2vec.model.contracts import Pairs
from corpus2vec.model.reader import PairReader, VocabMismatchError, buffer_order, check_inputs
from tests.model.pairs_fixtures import Planted, planted_corpus, write_vocab


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = str(tmp_path_factory.mktemp("reader"))
    return planted_corpus(root, pairs=20_000, shards=6, row_group_rows=1_500)


def _reader(planted: Planted, **kwargs) -> PairReader:
    manifest, vocab = check_inputs(planted.pairs_uri, planted.vocab_uri)
    kwargs.setdefault("batch_size", 1000)
    kwargs.setdefault("buffer_rows", 4000)
    return PairReader(planted.pairs_uri, manifest, vocab.vocab_size, **kwargs)


def _rows(batches) -> np.ndarray:
    """All pairs of a stream as rows ``[center, context, neg...]``."""
    parts = [np.column_stack([b.center, b.context, b.negatives]) for b in batches]
    return np.concatenate(parts) if parts else np.empty((0, 7), dtype=np.int32)


def _all_pairs(planted: Planted) -> np.ndarray:
    tables = [pq.read_table(f"{planted.pairs_uri}/part-{i:05d}.parquet") for i in range(6)]
    table = pa.concat_tables(tables)
    neg = np.asarray(table.column("negatives").combine_chunks().flatten()).reshape(-1, 5)
    return np.column_stack([table.column("center"), table.column("context"), neg])


def _sorted(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_read_disjoint_shares_that_cover_every_pair(planted: Planted, world: int) -> None:
    readers = [_reader(planted, rank=r, world=world) for r in range(world)]
    rows = [
        (g.path, g.index, i)
        for r in readers
        for g in r.assignment(epoch=0)
        for i in range(g.start, g.start + g.rows)
    ]
    assert len(rows) == len(set(rows)) == 20_000  # disjoint row ranges that cover every pair
    shares = [r.rank_pairs(0) for r in readers]
    assert max(shares) - min(shares) <= 1  # balanced to the pair: the slowest rank paces every sync
    streams = [_rows(r.epoch_batches(0)) for r in readers]
    assert [len(s) for s in streams] == [r.rank_pairs(0) for r in readers]
    np.testing.assert_array_equal(_sorted(np.concatenate(streams)), _sorted(_all_pairs(planted)))


def test_shards_are_reshuffled_each_epoch_and_reproducible(planted: Planted) -> None:
    reader = _reader(planted, rank=0, world=2)
    orders = [[g.path for g in reader.assignment(e)] for e in range(6)]
    assert len({tuple(o) for o in orders}) > 1
    assert [g.path for g in _reader(planted, rank=0, world=2).assignment(3)] == orders[3]
    first, again = _rows(reader.epoch_batches(1)), _rows(_reader(planted, rank=0, world=2).epoch_batches(1))
    np.testing.assert_array_equal(first, again)
    # rows are shuffled inside buffers, not streamed in file order
    file_order = np.concatenate([_rows([b]) for b in _reader(planted, buffer_rows=1).epoch_batches(1)])
    assert not np.array_equal(_rows(_reader(planted).epoch_batches(1)), file_order)


@pytest.mark.parametrize("rows", [1, 7, 256, 1000, 100_003])
def test_buffer_order_is_a_permutation_that_separates_neighbours(rows: int) -> None:
    order = buffer_order(rows, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(order), np.arange(rows))
    if rows >= 1000:  # consecutive output rows come from different segments of the buffer
        assert np.median(np.abs(np.diff(order))) > rows / 10


@pytest.mark.parametrize("world", [5, 32])
def test_more_ranks_than_shards_or_row_groups_still_get_equal_shares(tmp_path, world: int) -> None:
    # 2 files of 3 row groups: whole files or row groups per rank left 32 ranks 26 idle
    planted = planted_corpus(str(tmp_path), pairs=6_000, shards=2, row_group_rows=1_000)
    readers = [_reader(planted, rank=r, world=world) for r in range(world)]
    shares = [r.rank_pairs(0) for r in readers]
    assert min(shares) == 6_000 // world and max(shares) == -(-6_000 // world) and sum(shares) == 6_000
    streams = [_rows(r.epoch_batches(0)) for r in readers]
    assert [len(s) for s in streams] == shares
    whole = _rows(_reader(planted, rank=0, world=1).epoch_batches(0))
    np.testing.assert_array_equal(_sorted(np.concatenate(streams)), _sorted(whole))


def test_one_rank_reads_whole_files_in_the_epochs_order(planted: Planted) -> None:
    pieces = _reader(planted).assignment(2)
    assert all(g.start == 0 for g in pieces) and sum(g.rows for g in pieces) == 20_000
    files = [g.path for g in pieces]
    assert sorted(set(files)) == [f"part-{i:05d}.parquet" for i in range(6)]
    assert files == sorted(files, key=files.index)  # each file's groups are read together


@pytest.mark.parametrize("skip", [0, 1, 999, 4000, 4001, 10_000])
def test_skipping_resumes_the_same_stream(planted: Planted, skip: int) -> None:
    full = _rows(_reader(planted, rank=1, world=2).epoch_batches(2))
    rest = _rows(_reader(planted, rank=1, world=2, prefetch=0).epoch_batches(2, skip=skip))
    np.testing.assert_array_equal(rest, full[skip:])


def test_a_pairs_stage_from_another_vocabulary_is_refused(planted: Planted, tmp_path) -> None:
    other = str(tmp_path / "other-vocab")
    write_vocab(other, ["a", "b"], np.array([5, 3]))
    with pytest.raises(VocabMismatchError, match="rerun the pairs stage"):
        check_inputs(planted.pairs_uri, other)


def test_a_vocab_file_that_does_not_match_its_manifest_is_refused(tmp_path) -> None:
    planted = planted_corpus(str(tmp_path), pairs=1_000, shards=1)
    write_vocab(str(tmp_path / "tmp"), ["x"], np.array([1]))
    (tmp_path / "vocab" / "vocab.parquet").write_bytes((tmp_path / "tmp" / "vocab.parquet").read_bytes())
    with pytest.raises(VocabMismatchError, match="corrupt"):
        check_inputs(planted.pairs_uri, planted.vocab_uri)


def test_a_shard_with_the_wrong_schema_is_refused(tmp_path) -> None:
    planted = planted_corpus(str(tmp_path), pairs=1_000, shards=2)
    table = pa.table({"center": pa.array([1], pa.int64()), "context": [2], "negatives": [[1, 2, 3, 4, 5]]})
    pq.write_table(table, tmp_path / "pairs" / "part-00001.parquet")
    with pytest.raises(ValueError, match=r"part-00001.parquet: schema"):
        _reader(planted)


@pytest.mark.parametrize("threads", [1, 3])
def test_a_changed_shard_fails_its_checksum(tmp_path, threads: int) -> None:
    planted = planted_corpus(str(tmp_path), pairs=2_000, shards=2, row_group_rows=500)
    path = tmp_path / "pairs" / "part-00001.parquet"
    table = pq.read_table(path)
    pq.write_table(table, path, compression="snappy", row_group_size=500)  # same rows, other bytes
    with pytest.raises(ValueError, match=r"part-00001\.parquet has sha256"):
        _rows(_reader(planted, verify_sha256=True, threads=threads).epoch_batches(0))
    assert len(_rows(_reader(planted, verify_sha256=False, threads=threads).epoch_batches(0))) == 2_000


@pytest.mark.parametrize("threads", [1, 3])
def test_word_ids_outside_the_vocabulary_are_refused(tmp_path, threads: int) -> None:
    planted = planted_corpus(str(tmp_path), pairs=1_000, shards=1)
    manifest, _ = check_inputs(planted.pairs_uri, planted.vocab_uri)
    reader = PairReader(planted.pairs_uri, manifest, vocab_size=10, threads=threads)
    with pytest.raises(ValueError, match=r"part-00000.parquet row group 0 .* outside 0\.\.9"):
        _rows(reader.epoch_batches(0))


@pytest.mark.parametrize(("world", "skip"), [(1, 0), (2, 0), (3, 4001), (2, 5_500)])
def test_the_stream_is_the_same_at_any_reader_thread_count(planted: Planted, world: int, skip: int) -> None:
    """Decode threads prepare buffers ahead; the pairs, their order and the batches stay the same."""
    for rank in range(world):
        one = list(_reader(planted, rank=rank, world=world, verify_sha256=True).epoch_batches(1, skip))
        assert len(one) > 2
        for threads in (2, 5):
            reader = _reader(planted, rank=rank, world=world, verify_sha256=True, threads=threads)
            many = list(reader.epoch_batches(1, skip))
            assert [len(b) for b in many] == [len(b) for b in one]
            np.testing.assert_array_equal(_rows(many), _rows(one))


@pytest.mark.parametrize("prefetch", [0, 8])
def test_a_consumer_that_stops_early_leaves_no_reader_threads(planted: Planted, prefetch: int) -> None:
    """Training can stop mid-epoch (an error, a signal): the decode pool must not outlive it."""

    def reader_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(("pair-decode", "pair-prefetch"))]

    assert reader_threads() == []
    stream = _reader(planted, threads=3, buffer_rows=1_500, prefetch=prefetch).epoch_batches(0)
    assert len(next(stream)) == 1000
    assert any(name.startswith("pair-decode") for name in reader_threads())
    stream.close()
    deadline = time.monotonic() + 10
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader_threads() == []


def test_the_reader_needs_a_thread(planted: Planted) -> None:
    with pytest.raises(ValueError, match="at least one thread, not 0"):
        _reader(planted, threads=0)


def test_only_files_listed_in_the_manifest_are_read(tmp_path) -> None:
    planted = planted_corpus(str(tmp_path), pairs=3_000, shards=3)
    full = Pairs.read(planted.pairs_uri)
    manifest = dataclasses.replace(full, files=full.files[:2])
    reader = PairReader(planted.pairs_uri, manifest, vocab_size=200)
    listed = sum(f.rows for f in manifest.files)
    assert 0 < listed < full.total_pairs
    assert len(_rows(reader.epoch_batches(0))) == listed


def test_reads_shards_from_s3(s3_bucket: str, tmp_path) -> None:
    planted = planted_corpus(storage.join(s3_bucket, "run"), pairs=3_000, shards=2, row_group_rows=1_000)
    local = planted_corpus(str(tmp_path), pairs=3_000, shards=2, row_group_rows=1_000)
    remote_rows = _rows(_reader(planted, verify_sha256=True).epoch_batches(0))
    np.testing.assert_array_equal(remote_rows, _rows(_reader(local).epoch_batches(0)))
