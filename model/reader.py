"""Pair-shard reader: follows the pairs manifest, gives each rank its own shards, prefetches.

What each rank reads in epoch ``e`` (world size ``W``, seed ``s``):

* Epoch ``e`` reads draw ``e % draws`` of the pairs (the pairs job writes ``draws``
  independent samples, one per epoch by default, as word2vec redraws every epoch);
  the files of other draws are not read that epoch.
* The epoch's files are permuted with ``numpy.random.default_rng([s, e])`` and their
  row groups concatenated in that order into one sequence of ``N`` pairs; rank ``r``
  takes the contiguous range ``[r·N // W, (r+1)·N // W)`` of it, so the shares are
  disjoint, cover every pair, differ by at most one pair, and are reshuffled every
  epoch. A row group that straddles two ranks' ranges is read by both (each keeps its
  part): at most two extra partial reads per rank and epoch. The old rule, whole
  files per rank (row groups when there were fewer files than ranks), left ranks with
  2.9x each other's share at 16 ranks on the 2M-word bench and half of 32 ranks with
  nothing to train on (16 single-row-group files per draw); the slowest rank sets the
  pace of every sync, so that was time and, for idle ranks, quality lost. At ``W = 1``
  the order is the same as before: one rank still reads whole files in permuted order.
* The rank's row groups are grouped, in order, into *buffers* of at least
  ``buffer_rows`` rows; each buffer is shuffled with ``default_rng([s, e, r, i])``
  and cut into batches. The shuffle is block-interleaved (:func:`buffer_order`):
  the buffer is cut into 256 segments, taken in random order, and consecutive
  output rows come from different segments. Neighbouring pairs thus come from
  places thousands of pairs apart (which is what decorrelates SGD updates and
  keeps Hogwild threads off the same rows), while each segment is still read
  sequentially, so the gather costs about a third of a full random permutation
  on a 28 MB buffer (cache misses). The stream is therefore a pure function of
  ``(manifest, seed, epoch, rank, world)``, which is what makes resuming exact:
  :meth:`PairReader.epoch_batches` can skip the first ``N`` pairs by skipping
  whole buffers from the Parquet metadata and dropping the head of one.

Files are opened through fsspec (local folders or ``s3://``), only those the
manifest lists, and their schema is checked against ``pairs_schema(K)``. A
background thread reads and shuffles ahead so that training never waits on I/O
while the queue has batches.

With ``threads > 1`` that thread hands whole buffers (decode, sha256 check,
shuffle, id check: each a pure function of the buffer and its seed) to a pool of
``threads`` workers, up to ``threads`` buffers ahead, and yields them in buffer
order, so the stream is the same pair for pair at any thread count. Parquet decode,
hashing and the compiled shuffle release the GIL, so the workers run on separate
cores: that is what a GPU rank needs, whose kernel trains far faster than one core
decodes (tests/bench/bench_reader.py). A CPU rank keeps one thread: its cores
belong to the Hogwild kernel. Memory grows by about two buffers per thread
(``buffer_rows`` or more pairs each, 28 bytes a pair at ``negative=5``).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from numba import njit

from corpus2vec.model import storage
from corpus2vec.model.contracts import VOCAB_FILE, Pairs, Vocab
from corpus2vec.model.schemas import check_schema, pairs_schema


class VocabMismatchError(ValueError):
    """The pair shards were built from a different vocabulary than the one given."""


@dataclass(frozen=True)
class RowGroup:
    """Rows ``[start, start + rows)`` of one Parquet row group of one listed shard."""

    path: str  # relative to the pairs dir, as in the manifest
    index: int
    rows: int
    start: int = 0  # first row of the group that belongs to this piece


@dataclass(frozen=True)
class Batch:
    """A batch of pairs as int32 numpy arrays: ``center[B]``, ``context[B]``, ``negatives[B, K]``."""

    center: np.ndarray
    context: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return int(self.center.shape[0])

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three arrays, without copying (``dataclasses.astuple`` would deep-copy them)."""
        return self.center, self.context, self.negatives


def check_inputs(pairs_uri: str, vocab_uri: str) -> tuple[Pairs, Vocab]:
    """The (pairs, vocab) manifests, after checking that the shards belong to this vocabulary.

    The vocab file is hashed again rather than trusting its manifest, because a
    swapped vocab.parquet would silently scramble every word's vector.
    """
    pairs = Pairs.read(pairs_uri)
    vocab = Vocab.read(vocab_uri)
    actual = storage.sha256_of(storage.join(vocab_uri, VOCAB_FILE))
    if actual != vocab.vocab_sha256:
        raise VocabMismatchError(
            f"{storage.join(vocab_uri, VOCAB_FILE)} has sha256 {actual[:12]}… but its manifest says "
            f"{vocab.vocab_sha256[:12]}…; the vocab stage output is corrupt, rerun it"
        )
    if pairs.vocab_sha256 != actual:
        raise VocabMismatchError(
            f"pairs at {pairs_uri} were built from vocab {pairs.vocab_sha256[:12]}… but "
            f"{vocab_uri} is vocab {actual[:12]}…; rerun the pairs stage with this vocabulary "
            "or point --vocab at the one the pairs were made from"
        )
    return pairs, vocab


class PairReader:
    """Streams one rank's share of the pair shards listed in a pairs manifest.

    ``verify_sha256`` hashes each of this rank's files once before its first read
    (an extra pass over the data; worth it when shards cross a network).
    ``threads`` workers prepare buffers in parallel (see the module docstring); the
    stream does not depend on it.
    """

    def __init__(
        self,
        pairs_uri: str,
        manifest: Pairs,
        vocab_size: int,
        *,
        rank: int = 0,
        world: int = 1,
        seed: int = 1,
        batch_size: int = 65536,
        buffer_rows: int = 1 << 20,
        prefetch: int = 8,
        verify_sha256: bool = False,
        threads: int = 1,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside world size {world}")
        if threads < 1:
            raise ValueError(f"the reader needs at least one thread, not {threads}")
        self.uri, self.manifest, self.vocab_size = pairs_uri, manifest, vocab_size
        self.rank, self.world, self.seed = rank, world, seed
        self.batch_size, self.buffer_rows, self.prefetch = batch_size, buffer_rows, prefetch
        self.verify_sha256, self.threads = verify_sha256, threads
        self.negative = manifest.negative
        self._schema = pairs_schema(self.negative)
        self._files = {f.path: f for f in manifest.files}
        self._verified: set[str] = set()
        # one lock per file, so that two workers reading one shard hash it once
        self._verify_locks = {f.path: threading.Lock() for f in manifest.files}
        self._row_groups = self._scan_row_groups()

    def _scan_row_groups(self) -> dict[str, list[RowGroup]]:
        """Row-group sizes of every listed file, after checking schema and row count."""
        out: dict[str, list[RowGroup]] = {}
        for entry in self.manifest.files:
            url = storage.join(self.uri, entry.path)
            fs, path = storage.get_fs(url)
            with fs.open(path, "rb") as handle:
                meta = pq.ParquetFile(handle)
                check_schema(meta.schema_arrow, self._schema, url)
                groups = [
                    RowGroup(entry.path, i, meta.metadata.row_group(i).num_rows)
                    for i in range(meta.num_row_groups)
                ]
            if entry.rows is not None and sum(g.rows for g in groups) != entry.rows:
                raise ValueError(
                    f"{url} has {sum(g.rows for g in groups)} rows but the manifest lists {entry.rows}; "
                    "the pairs output is inconsistent, rerun the pairs stage"
                )
            out[entry.path] = groups
        return out

    def assignment(self, epoch: int, rank: int | None = None) -> list[RowGroup]:
        """The row-group pieces ``rank`` (default: this reader's) reads in ``epoch``, in reading order."""
        rank = self.rank if rank is None else rank
        paths = [f.path for f in self.manifest.shards(self.manifest.draw_of(epoch))]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(paths))
        groups = [g for i in order for g in self._row_groups[paths[i]]]
        total = sum(g.rows for g in groups)
        lo, hi = rank * total // self.world, (rank + 1) * total // self.world
        mine: list[RowGroup] = []
        offset = 0
        for group in groups:
            first, last = max(lo, offset), min(hi, offset + group.rows)
            if first < last:
                mine.append(RowGroup(group.path, group.index, last - first, first - offset))
            offset += group.rows
            if offset >= hi:
                break
        return mine

    def rank_pairs(self, epoch: int, rank: int | None = None) -> int:
        """How many pairs ``rank`` (default: this one) reads in ``epoch``; known from metadata alone.

        Every rank can compute every other rank's share, which is how they agree
        on a common sync schedule without talking.
        """
        return sum(g.rows for g in self.assignment(epoch, rank))

    def _buffers(self, epoch: int) -> list[list[RowGroup]]:
        buffers: list[list[RowGroup]] = []
        current: list[RowGroup] = []
        for group in self.assignment(epoch):
            current.append(group)
            if sum(g.rows for g in current) >= self.buffer_rows:
                buffers.append(current)
                current = []
        if current:
            buffers.append(current)
        return buffers

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterator[Batch]:
        """This rank's batches for ``epoch``, shuffled, after skipping its first ``skip`` pairs.

        Reading runs ``prefetch`` batches ahead on a background thread; errors
        there are raised here.
        """
        stream = self._produce(epoch, skip)
        if self.prefetch <= 0:
            yield from stream
            return
        yield from _prefetched(stream, self.prefetch)

    def _produce(self, epoch: int, skip: int) -> Iterator[Batch]:
        jobs: list[tuple[int, list[RowGroup], int]] = []  # (buffer index, its row groups, rows to drop)
        for index, buffer in enumerate(self._buffers(epoch)):
            rows = sum(g.rows for g in buffer)
            if skip >= rows:
                skip -= rows
                continue
            jobs.append((index, buffer, skip))
            skip = 0
        for shuffled in self._prepared(epoch, jobs):
            for lo in range(0, len(shuffled), self.batch_size):
                hi = lo + self.batch_size
                yield Batch(shuffled.center[lo:hi], shuffled.context[lo:hi], shuffled.negatives[lo:hi])

    def _prepared(self, epoch: int, jobs: list[tuple[int, list[RowGroup], int]]) -> Iterator[Batch]:
        """Each job's shuffled buffer, in job order; with ``threads > 1`` up to that many ahead."""
        if self.threads == 1:
            for job in jobs:
                yield self._prepare(epoch, *job)
            return
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="pair-decode")
        pending: deque[Future[Batch]] = deque()
        try:
            for job in jobs:
                pending.append(pool.submit(self._prepare, epoch, *job))
                if len(pending) > self.threads:  # every worker stays busy while one is handed on
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # also when the consumer stops early: drop what was not started
            pool.shutdown(wait=True, cancel_futures=True)

    def _prepare(self, epoch: int, index: int, buffer: list[RowGroup], skip: int) -> Batch:
        """Buffer ``index`` decoded, checked and shuffled, without its first ``skip`` rows."""
        raw = self._read_buffer(buffer)
        perm = buffer_order(len(raw), np.random.default_rng([self.seed, epoch, self.rank, index]))
        center, context, negatives, bad = _shuffle_and_check(
            perm[skip:], raw.center, raw.context, raw.negatives, self.vocab_size
        )
        if bad:
            self._raise_bad_ids(buffer)
        return Batch(center, context, negatives)

    def _read_buffer(self, buffer: list[RowGroup]) -> Batch:
        """Read and concatenate a buffer's row groups, in file order."""
        parts = [self._read_group(group) for group in buffer]
        if len(parts) == 1:
            return parts[0]
        return Batch(*(np.concatenate(cols) for cols in zip(*(p.columns() for p in parts), strict=True)))

    def _read_group(self, group: RowGroup) -> Batch:
        url = storage.join(self.uri, group.path)
        self._verify(group.path, url)
        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as handle:
            # beside our own decode workers pyarrow's column threads would only contend with them
            table = pq.ParquetFile(handle).read_row_group(group.index, use_threads=self.threads == 1)
        check_schema(table.schema, self._schema, url)
        if group.start or group.rows != table.num_rows:
            table = table.slice(group.start, group.rows)
        center = table.column("center").to_numpy().astype(np.int32, copy=False)
        context = table.column("context").to_numpy().astype(np.int32, copy=False)
        flat = table.column("negatives").combine_chunks().flatten().to_numpy()
        return Batch(center, context, flat.astype(np.int32, copy=False).reshape(-1, self.negative))

    def _raise_bad_ids(self, buffer: list[RowGroup]) -> None:
        # The numba kernel does not bounds-check, so a bad id must never reach it.
        for group in buffer:
            part = self._read_group(group)
            for col in part.columns():
                if col.size and (int(col.min()) < 0 or int(col.max()) >= self.vocab_size):
                    raise ValueError(
                        f"{storage.join(self.uri, group.path)} row group {group.index} (rows "
                        f"{group.start}-{group.start + group.rows - 1}) has word ids outside "
                        f"0..{self.vocab_size - 1}; the shards do not belong to this vocabulary, "
                        "rerun the pairs stage"
                    )
        raise AssertionError("ids out of range in a buffer but in none of its row groups")

    def _verify(self, rel: str, url: str) -> None:
        if not self.verify_sha256 or rel in self._verified:
            return
        with self._verify_locks[rel]:
            if rel in self._verified:
                return
            expected = self._files[rel].sha256
            actual = storage.sha256_of(url)
            if actual != expected:
                raise ValueError(
                    f"{url} has sha256 {actual[:12]}… but the pairs manifest lists {expected[:12]}…; "
                    "the shard changed after the pairs stage finished, rerun it"
                )
            self._verified.add(rel)


SEGMENTS = 256


def buffer_order(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Row order for a buffer: segment ``j`` of every segment in a random order, for j = 0, 1, ..."""
    segments = max(1, min(SEGMENTS, rows))
    length = -(-rows // segments)
    order = (rng.permutation(segments)[None, :] * length + np.arange(length)[:, None]).ravel()
    return order[order < rows]


@njit(nogil=True, cache=True)
def _shuffle_and_check(
    perm: np.ndarray, center: np.ndarray, context: np.ndarray, negatives: np.ndarray, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:  # pragma: no cover - compiled
    """Gather rows in ``perm`` order into new contiguous arrays; flag any id outside the vocabulary.

    One compiled pass instead of three numpy fancy-index gathers plus min/max
    scans: reading shares the cores with training, so it has to stay cheap.
    """
    n, k = perm.shape[0], negatives.shape[1]
    c = np.empty(n, dtype=np.int32)
    o = np.empty(n, dtype=np.int32)
    g = np.empty((n, k), dtype=np.int32)
    bad = False
    for i in range(n):
        j = perm[i]
        c[i], o[i] = center[j], context[j]
        bad |= not (0 <= c[i] < vocab_size and 0 <= o[i] < vocab_size)
        for t in range(k):
            g[i, t] = negatives[j, t]
            bad |= not (0 <= g[i, t] < vocab_size)
    return c, o, g, bad


_DONE = object()


def _prefetched(stream: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Run ``stream`` on a daemon thread, ``depth`` items ahead; re-raise its errors here."""
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in stream:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:  # on this thread, so that the reader's decode pool stops here, not in the consumer
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="pair-prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
