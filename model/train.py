"""SGNS training entry point: one script for ``python -m corpus2vec.model.train`` and ``torchrun ... -m corpus2vec.model.train``.

    python -m torch.distributed.run --nproc_per_node=2 -m corpus2vec.model.train \\
        --pairs URI --vocab URI --out URI --config '{"vector_size": 50, "epochs": 3}'

``RANK``/``WORLD_SIZE`` from the environment decide: without them this is one
process and no process group. On CPU the backend is gloo and the kernel the
numba word2vec.c loop; on CUDA, nccl and the batched torch kernel (model/sgns.py).

Distributed strategy: local SGD, learning-rate-scaled averaging, hot rows synced often
-----------------------------------------------------------------------------------------
Each rank trains its own disjoint shards (model/reader.py) with the fast
single-process kernel, and every ``sync_every`` pairs per rank (default: 2M pairs
across all ranks, i.e. ``2M / world`` per rank, see :func:`sync_interval`) the
ranks all-reduce both tables. Between two such full syncs (from 2 ranks on, see
:func:`hot_row_count`) there are ``sync_hot_splits - 1`` (15) partial ones: partial
sync ``n`` merges only the first
``sync_hot_rows * 2**trailing_zeros(n)`` rows (1024, 2048, 1024, 4096, ...; ids are
by descending count), the schedule of IntelLabs' pWord2Vec (Ji et al. 2016). The
hottest rows are the ones every replica moves, so they drift apart fastest; a
contiguous prefix costs one small all-reduce. How the replicas are merged
(``sync_average``):

* ``"scaled"`` (default): every rank trains at ``k = world`` times the learning rate
  and the replicas are averaged, ``new = mean_r table_r`` (model averaging with the
  linear learning-rate scaling of Ji et al. 2016 and BlazingText's multi-GPU mode).
  A row only one rank touched (the rare-word regime) moves by ``(1/W)·W·lr·grad``,
  what one process would do; a hot row that every replica drove to the same
  equilibrium ends at the mean of those equilibria. The local rate grows with the
  world size, so ``k`` is capped at ``max_local_alpha / alpha`` (:func:`scaled_lr_factor`):
  0.4, i.e. ``k = 8`` at the default alpha 0.05, uncapped up to 8 ranks. With full
  syncs only, 8 ranks at a local 0.4 failed on 2M and 10M words (3.1%, 0.7%; so with
  ``sync_hot_rows=0`` set ``max_local_alpha=0.3``); with the partial syncs below they
  held on 2M, 10M and 25M words, and a local 0.6 diverged even so. A cap of 0.3
  (``k = 6``) cost the 2M prefix 12-16% analogy at 8 ranks: a hot row, the mean
  of 8 replicas each stepping at ``6·alpha``, then learns at 6/8 of one process's
  rate, which a small corpus (rate-starved at 3 epochs) cannot afford; at 10M it
  made no difference. Once capped (beyond 8 ranks) the plain mean would move a rare row
  only ``k/W`` of the way, so the merge becomes per row: ``new = last + Σ_r (table_r
  - last) / max(k, m)`` with ``m`` the ranks that touched the row since the last
  sync (one float32 count per row rides along): ``1/k`` undoes the scaling where the
  updates add up, ``1/m`` is the mean of the touchers where they saturate, and the
  merged row never lands beyond that mean. At 16 ranks on the 2M prefix that lost 23%
  analogy and 0.076 WS353 (almost every row is touched by all 16 ranks between syncs, so it
  learns at k/W = half the rate); ``capped_merge_reach = r`` divides by ``max(k, m / r)``
  instead. The default r = 2 (= W/k at 16 ranks: every change over k, up to twice the touchers'
  mean) scored +8% there, and on 10M words 16 ranks came within 0.7 analogy points and
  +0.011 WS353 of one process (one seed; docs/bench/sixteen_ranks.md). Past ``r·k`` ranks
  the hottest rows starve again (32 ranks: -22% on 2M, two seeds; -2.0 points on 10M), and
  ``r > 2`` cannot help: rows each replica already moved most of the way land ``r`` times as
  far, ``e <- (1 - r) e``, which diverged at 3 and 4 (docs/bench/thirty_two_ranks.md; :func:`capped_merge_warning`).
  What gives those rows their rate back is momentum on the merged change (``capped_merge_momentum``,
  heavy ball as in DiLoCo's outer step, per row): ``step = mu * step + merged``, applied as
  ``new = last + step``, with ``mu = 1 - k / d`` for a row whose divisor is ``d = max(k, m / r)``.
  Where a row's changes add up its steps settle at ``merged / (1 - mu) = d / k * merged``, the
  sum over k a process would make; where a replica already moved it to its equilibrium (a step
  of 2, ``e <- -e``), the momentum damps instead (``|e|`` shrinks by ``sqrt(mu)`` a sync). Up to
  ``r·k`` ranks no divisor exceeds ``k``, so ``mu = 0`` and it is a no-op (16 ranks and fewer train
  bit for bit as without it); it sends nothing (every rank computes it from the merged sums) and
  keeps one more table of each kind, saved in checkpoints. At 32 ranks: 2M words 5.2% / 0.413
  against one process's 5.1% / 0.414 (two seeds; without it 4.3% / 0.344), 10M words 26.7% / 0.606
  against 25.4% / 0.605 (one seed; without it -2.0 points on another draw; docs/bench/merge_momentum.md).
* ``"sum"``: ``new = last + Σ_r (table_r - last)``. Right for rare rows, but a hot
  row that each replica moved most of the way to its equilibrium ends ``W`` times
  as far: for ``W > 2`` that overshoots past the equilibrium by more than it
  started (the map ``x -> x + W·(x* - x)`` diverges once ``W > 2``), which is the
  collapse measured at 4 and 8 ranks (analogy 0.1%, the loss rising from 3.6 to 123).
* ``"mean"``: the plain average without the scaling: each update counts ``1/W``.
* ``"touched"``: mean over the ranks that updated the row since the last sync.

Overlapped partial syncs (``overlap_partial_syncs``, default on, :func:`overlaps_partial_syncs`):
each partial sync sends a copy of its rows and training goes on; the sum lands at the next sync
point as ``row <- mean + (row - sent)``, the replicas' mean at the send plus what this rank
learnt since (:func:`start_mean_merge`, :func:`land_mean_merge`), in the manner of overlap local
SGD. A rank then waits for a partial sync one segment later, so one rank's slow segment no
longer stops the other: on 2 ranks on 2 cores the time in syncs fell from 20-25% to 10-17% of
the wall time at every corpus size, at the same quality (2M words, six seeds: 6.2% / 0.412
against 6.2% / 0.406 blocking; 10M and 25M within a seed's noise; docs/bench/overlap.md). The
delay costs the partial syncs what they are for once ranks step fast: a rank's own un-merged
change (``k`` times a process's step) stays in its hot rows a segment longer. Overlapped, 4
ranks (local rate 0.2) lost 1.4 analogy points on 10M words, 6 ranks 1.6, and 8 ranks (0.4)
diverged (0.3%), as with full syncs only; so the overlap runs only up to a local rate of
``OVERLAP_LOCAL_ALPHA`` (0.1: 2 ranks at alpha 0.05) and never in the capped merge, whose counts
and snapshots belong to a sync.

Chosen with tests/bench/scale_quality.py on the 10M-word prefix of the dev corpus
(bench preset at alpha 0.05, seed 1, same shards unless marked *; 2 cores, gloo;
analogy = questions-words restrict_vocab 30000; the whole matrix at 1-8 ranks and
three corpus sizes is in docs/bench/scale_quality.md):

    run                                              analogy  WS353  SimLex  B/pair/rank
    1 process                                         26.5%   0.611  0.267       -
    8 ranks, full syncs only (250k per rank) †        21.4%   0.581    -       211
    8 ranks, full syncs every 62.5k per rank †        24.3%   0.579    -       867
    8 ranks, full syncs, local rate cap 0.4           0.7%    0.308  0.125     211  (diverged)
    8 ranks, + hot rows 1024 x 16, plain mean         25.6%   0.579  0.253     328
    8 ranks, + hot rows 1024 x 16, per-row capped     26.2%   0.583  0.254     331  (cap 0.3)
    8 ranks, + hot rows 4096 x 16, per-row capped     26.1%   0.589  0.254     686
    8 ranks, + hot rows 1024 x 64, per-row capped *   27.0%   0.587  0.260     974
    8 ranks, + hot rows 1024 x 16, cap 0.2 *          22.9%   0.546  0.244     350
    4 ranks, full syncs only (500k per rank) †        24.4%   0.605    -       103
    4 ranks, full syncs every 125k per rank †         26.1%   0.600    -       408
    4 ranks, + hot rows 1024 x 16 (uncapped)          27.1%   0.601  0.267     161

(* another draw of the same prefix's pairs: the prefix copied under another path
gets other document ids, hence other subsampling and window draws; † another such
draw, on which one process scored 26.4% / 0.617.) Staleness of
the hot rows was what cost quality at 4-8 ranks: merging them 16 times as often
recovers the analogy points for half the bytes of syncing everything 4 times as
often. Lowering the local rate instead (cap 0.2) loses 3 points: hot rows then
learn at ``k/W`` of one process's rate. At alpha 0.025 (factor 8 uncapped) full
syncs alone held quality at 2-8 ranks (docs/bench/scale_quality-alpha0.025.md).
WordSim353 stays 0.02-0.03 below one process at 8 ranks in every variant on this draw;
over two seeds of another draw 8 ranks scored 25.3% / 0.597 against one process's
25.9% / 0.587 (docs/bench/scale_quality.md). At 2 ranks they started off (on one draw
of the dev corpus they changed nothing, 41.1% / 0.615 with against 41.1% / 0.616 without,
and cost 12% pairs/s); on two later draws (two seeds each) they lifted 2 ranks on the whole
corpus by 0.4 and 1.0 points, to 0.1 below one process both times (without them 0.5 and 1.1
below), at 5% more and 3% fewer pairs/s, so they run from 2 ranks on
(docs/bench/hot_rows_two_ranks.md, :func:`hot_row_count`).

Those rows capped the local rate at 0.3 (``k = 6`` at 8 ranks). On the 2M-word prefix
that cap was what kept 8 ranks 12-16% short of one process, not the sync interval
(2026-12-03, one draw, docs/bench/local_rate_cap.md; mean over the seeds shown):

    2M words, 8 ranks, hot rows 1024 x 16          seeds  analogy  WS353  B/pair/rank
    1 process                                         4     5.6%   0.400       -
    cap 0.3 (k = 6), 4 full syncs per epoch           2     4.6%   0.360     236
    cap 0.3, at least 16 full syncs per epoch         2     5.0%   0.372     943
    cap 0.3, hot rows 4096, 16 full syncs per epoch   2     5.3%   0.385    2449
    cap 0.4 (k = 8), 16 full syncs per epoch          4     5.4%   0.394     933
    cap 0.4 (k = 8), 4 full syncs per epoch           4     5.5%   0.397  233-292  (default)

and on the 10M prefix (another draw, two seeds) 8 ranks at cap 0.4 scored 26.9% /
0.593 against one process's 26.8% / 0.598 (cap 0.3: 26.1% / 0.575, seed 1), on the
whole corpus 40.0% / 0.636 against 39.8% / 0.644 (three seeds, same shards).

Held at the current defaults (measured 2026-12-07 with the pairs in word2vec.c's roles,
``pairs.input_word=context``; one pair draw per corpus size, every row on its shards; analogy
points / WordSim353 against one process on the same seeds; docs/bench/input_word.md):

    ranks                            2              4              8              16             32
    2M words  (4 seeds; 16, 32: 2)   -0.2 / +0.006  -0.3 / +0.002  -0.5 / +0.004  -0.2 / -0.011  -0.4 / -0.003
    10M words (4 seeds; 16, 32: 1)   +0.5 / -0.002  +0.3 / -0.004  +0.5 / -0.000  -0.9 / -0.006  -0.5 / -0.006
    25M words (2 seeds)              +0.1 / +0.009  +0.5 / -0.001  +0.5 / +0.005        -              -

(one process: 6.7% / 0.405, 26.9% / 0.597 and 40.2% / 0.641; 32 ranks of the whole corpus do not
fit in the development machine's 24 GiB, and nothing beyond 32 ranks is measured.)

Bytes: a full sync all-reduces both tables, ``2·V·d·4`` bytes per rank (81.8 MB
on the dev corpus, V=102k, d=100); the 15 partial syncs of an interval add
``2·d·4·Σ_n min(V, 1024·2^tz(n))`` = 32,768 rows' worth (26 MB at d=100), and a
capped merge (beyond 8 ranks) one float32 per row for the counts. At 8 ranks on 10M
words (V=59k) that is 340-353 bytes per trained pair per rank (211 without the
partial syncs), 478 on the whole corpus;
docs/scaling.md projects that onto NVLink and 100 Gb/s links. Dense DDP
all-reduces the same ``2·V·d·4`` bytes every *step* (~20 kB per pair at batch
4096); sparse all-reduce only exists on gloo; row-sharded tables need an
all-to-all of rows per step, latency-bound on CPU. ``bytes_communicated`` in the
metrics counts the payload each rank hands to all-reduce (a ring moves about
``2(W-1)/W`` of it over each rank's link). Measured up to 16 ranks, on CPU only.

Epoch ``e`` reads draw ``e % draws`` of the pairs (the pairs job writes one
independent draw per epoch by default, as word2vec redraws subsampling, windows
and negatives every epoch; one draw reused for 3 epochs cost 1.5-2 analogy points
on the benchmark corpus). Sync points are common to all ranks: in epoch ``e`` each
rank ``r`` reads ``n_r`` pairs (known from Parquet metadata), there are
``S = ceil(max_r n_r / sync_every)`` syncs, and rank ``r`` syncs after
``floor(i·n_r/S)`` pairs for ``i = 1..S`` (ranks with smaller shares sync after
proportionally fewer pairs, so nobody idles for long).

Learning rate: ``alpha -> min_alpha`` linearly over all pairs of all epochs,
per pair, from the rank's fraction of the epoch: ``lr = alpha - (alpha -
min_alpha)·(e + p/n_r)/epochs`` after ``p`` of its pairs.

Checkpoints and resume
----------------------
Rank 0 saves at a sync point (tables identical on all ranks) when
``checkpoint_every_s`` has passed since the last save: both tables, the config,
and the position ``{"epoch": e, "fraction": [i, S]}`` = "sync ``i`` of ``S`` of
epoch ``e`` is done", plus counters (pairs trained, seconds, bytes, loss curve).
On start every rank loads ``{out}/checkpoints/latest.json`` if present. Rank
``r`` then skips the first ``floor(i·n_r/S)`` pairs of its epoch-``e`` stream
and continues from the next sync point after fraction ``i/S``. With the same
world size this is exactly where it stopped (bitwise, with one thread per rank).
With another world size the shards are redistributed, so each rank skips the
same *fraction* of its new share: the epoch still totals its pairs and the lr
schedule continues from the same point, but the pairs skipped are not exactly
the ones already trained (some pairs of that epoch are seen twice, others not).
The reader's streams are pure functions of ``(seed, epoch, rank, world)`` and
the tables are the only other state, so no RNG state needs saving.

Determinism: same inputs, config, seed and world size on CPU give bitwise equal
vectors with ``threads=1``. ``threads=0`` (default) means ``cores // local ranks``:
with 2 ranks on 2 cores that is 1 thread (deterministic); a single process on
2 cores runs 2 Hogwild threads (faster, not bitwise reproducible).

Outputs (rank 0): ``{out}/vectors.npy`` (V x d float32: input vectors, or
``(input+output)/2`` with ``output="average"``), ``{out}/output_vectors.npy``,
``{out}/metrics.json`` and last ``{out}/_manifest.json`` (kind ``train``); then
the checkpoints are deleted. If the manifest exists, the run does nothing.
Rank 0 prints ``progress {json}`` lines on stderr every ~2 s for a parent
process (model/launch.py) to parse.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from corpus2vec.model import checkpoint, storage
from corpus2vec.model.config import (
    FULL_SYNC_LOCAL_ALPHA,
    HOT_ROWS,
    OVERLAP_LOCAL_ALPHA,
    SYNC_PAIRS_TOTAL,
    PipelineConfig,
    TrainConfig,
)
from corpus2vec.model.contracts import Train, entry_for
from corpus2vec.model.reader import Batch, PairReader, check_inputs
from corpus2vec.model.sgns import SGNS, init_tables

PROGRESS_EVERY_S = 2.0
NUMBA_BATCH = 1 << 16  # pairs per kernel call: big enough to amortise Python, small enough to stream
# Settings that define the trained model: a checkpoint made with other values is refused.
_RESUME_KEYS = ("vector_size", "epochs", "alpha", "min_alpha", "seed", "init_range", "output")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the torchrun job (all zeros/ones when run with plain python)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_environ(cls) -> DistEnv:
        """Read torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``."""
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(env.get("RANK", "0")),
            world=world,
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world=int(env.get("LOCAL_WORLD_SIZE", str(world))),
        )


@dataclass
class Counters:
    """Global progress, identical on all ranks after each sync, saved in checkpoints."""

    epoch: int = 0
    fraction: tuple[int, int] = (0, 1)  # sync i of S of `epoch` is done
    pairs_trained: int = 0
    seconds: float = 0.0
    bytes_communicated: int = 0
    syncs: int = 0
    hot_syncs: int = 0  # partial syncs of the most frequent rows (train.sync_hot_rows)
    sync_seconds: float = 0.0  # this rank's wall time in syncs, waits included
    # this rank's wall time waiting for the reader's next batch: near 0 when the reader keeps up
    # with the kernel (the question on a GPU, docs/scaling.md; train.reader_threads if it does not)
    read_wait_seconds: float = 0.0
    # every rank's sync_seconds as of the last full sync (sent with its stats; a rank that waits
    # for the others at every sync shows here, where rank 0's own figure would hide it)
    rank_sync_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0  # process CPU time of all ranks (robust to other load on the machine)
    epoch_loss: list[float] = field(default_factory=list)  # mean loss per pair of finished epochs
    current_loss_sum: float = 0.0  # loss summed over the pairs of the unfinished epoch
    current_pairs: int = 0
    loss_curve: list[dict[str, float]] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: input/output URIs and the TrainConfig as JSON (or ``@file.json``)."""
    parser = argparse.ArgumentParser(
        prog="python -m corpus2vec.model.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pairs", required=True, help="pairs stage dir (has _manifest.json)")
    parser.add_argument("--vocab", required=True, help="vocab stage dir (has vocab.parquet)")
    parser.add_argument("--out", required=True, help="training output dir")
    parser.add_argument("--key", default="", help="the stage key recorded in the manifest (set by the flow)")
    parser.add_argument("--config", default="{}", help="TrainConfig fields as JSON, or @path.json")
    parser.add_argument(
        "--stop-after-pairs",
        type=int,
        default=None,
        help="for tests and smoke runs: checkpoint and exit at the first sync past this many pairs",
    )
    return parser.parse_args(argv)


def load_train_config(text: str) -> TrainConfig:
    """A validated TrainConfig from JSON text or ``@path`` (unknown keys are an error)."""
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as handle:
            text = handle.read()
    cfg = PipelineConfig.from_dict({"train": json.loads(text)}).train
    if (cfg.sync_every is not None and cfg.sync_every < 1) or cfg.threads < 0:
        raise ValueError("invalid config: train.sync_every must be >= 1 and train.threads >= 0")
    return cfg


def sync_interval(cfg: TrainConfig, world: int) -> int:
    """Pairs per rank between syncs: the config's, or SYNC_PAIRS_TOTAL shared out over the ranks.

    A bound on the pairs trained across *all* ranks between averages, so the
    per-rank interval shrinks as ranks grow: at 1M pairs per rank, 8 ranks lost 3.2
    analogy points on the dev corpus; at 250k they matched one process (alpha 0.025; at
    0.05 only with the partial syncs of the hot rows in between, see the module docstring).
    """
    if cfg.sync_every is not None:
        return cfg.sync_every
    return max(1, SYNC_PAIRS_TOTAL // max(1, world))


def pick_device(cfg: TrainConfig, env: DistEnv) -> tuple[torch.device, str, str]:
    """``(device, backend, kernel)``: cuda+nccl+torch when asked or available, else cpu+gloo+numba."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but no CUDA device is visible; set train.device=cpu")
    device = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
    kernel = cfg.kernel if cfg.kernel != "auto" else ("torch" if use_cuda else "numba")
    if kernel == "numba" and use_cuda:
        raise ValueError("train.kernel='numba' runs on CPU only; use kernel=torch or auto with cuda")
    if kernel == "cuda" and not use_cuda and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        raise ValueError("train.kernel='cuda' needs a CUDA device; use kernel=torch or numba on CPU")
    return device, ("nccl" if use_cuda else "gloo"), kernel


def _cores_per_rank(env: DistEnv) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, env.local_world))


def thread_count(cfg: TrainConfig, env: DistEnv) -> int:
    """Kernel threads per rank: the config's, or the cores shared out among this node's ranks."""
    return cfg.threads or _cores_per_rank(env)


READER_THREADS_GPU = 8  # per rank: each reader thread holds about two buffers (~60 MB at the defaults)


def reader_thread_count(cfg: TrainConfig, env: DistEnv, device: torch.device) -> int:
    """Pair-reader threads per rank: the config's; else one beside a CPU kernel, whose threads
    own the cores, and the rank's share of the cores (at most 8) beside a GPU, which trains
    faster than one core decodes."""
    if cfg.reader_threads:
        return cfg.reader_threads
    return 1 if device.type == "cpu" else min(READER_THREADS_GPU, _cores_per_rank(env))


class _Pieces:
    """Cuts a batch stream at arbitrary pair counts (sync points fall inside batches), adding
    the time spent waiting for the stream's next batch to ``counters.read_wait_seconds``."""

    def __init__(self, batches: Any, counters: Counters) -> None:
        self._it = iter(batches)
        self._left: Batch | None = None
        self._counters = counters

    def take(self, limit: int) -> Batch:
        """The next at most ``limit`` pairs; the rest of a cut batch is kept for later."""
        if self._left is not None:
            batch = self._left
        else:
            waited = time.monotonic()
            batch = next(self._it, None)
            self._counters.read_wait_seconds += time.monotonic() - waited
            if batch is None:  # the reader checked row counts against the metadata, so a bug
                raise RuntimeError("the pair stream ended before the rank's share was read")
        self._left = None
        if len(batch) > limit:
            self._left = Batch(batch.center[limit:], batch.context[limit:], batch.negatives[limit:])
            batch = Batch(batch.center[:limit], batch.context[:limit], batch.negatives[:limit])
        return batch


class Trainer:
    """Runs the epochs of one rank: kernel, sync schedule, progress, checkpoints, outputs."""

    def __init__(self, args: argparse.Namespace, cfg: TrainConfig, env: DistEnv) -> None:
        self.args, self.cfg, self.env = args, cfg, env
        self.out = args.out
        self.device, self.backend, self.kernel = pick_device(cfg, env)
        self.threads = thread_count(cfg, env)
        self.pairs_manifest, self.vocab_manifest = check_inputs(args.pairs, args.vocab)
        self.vocab_size = self.vocab_manifest.vocab_size
        self.total_pairs = self.pairs_manifest.total_pairs  # all draws: identifies the pairs
        self.pairs_per_epoch = [self.pairs_manifest.epoch_pairs(e) for e in range(cfg.epochs)]
        batch = cfg.batch_size if self.kernel == "torch" else max(cfg.batch_size, NUMBA_BATCH)
        self.reader = PairReader(
            args.pairs,
            self.pairs_manifest,
            self.vocab_size,
            rank=env.rank,
            world=env.world,
            seed=cfg.seed,
            batch_size=batch,
            verify_sha256=cfg.verify_shards,
            threads=reader_thread_count(cfg, env, self.device),
        )
        self.counters = Counters()
        self.resumed_from: dict[str, Any] | None = None
        self._saved_velocity: list[np.ndarray | None] = [None, None]
        v, u = self._initial_tables()
        self.model = SGNS(v, u, kernel=self.kernel, threads=self.threads, row_step_limit=cfg.row_step_limit)
        merge = cfg.sync_average if env.world > 1 else None
        self.lr_factor = scaled_lr_factor(cfg, env.world) if merge == "scaled" else 1
        self.sync_every = sync_interval(cfg, env.world)
        self.hot_rows = hot_row_count(cfg, env.world)
        self.hot_splits = cfg.sync_hot_splits if self.hot_rows else 1
        # a capped "scaled" factor (lr_factor < world) weighs each row's summed change by how
        # many ranks touched it, so it needs the touched flags and the last synced tables too
        self.capped = merge == "scaled" and self.lr_factor < env.world
        size = self.vocab_size if merge == "touched" or self.capped else 0
        self.touched = [torch.zeros(size, device=self.device) for _ in range(2)]
        # "sum" adds each rank's change since the last sync, so it needs the last synced tables
        self.snapshots = [t.clone() if merge == "sum" or self.capped else None for t in (v, u)]
        # the capped merge's momentum, where it acts (beyond reach x factor ranks: below, no row's
        # divisor exceeds the factor); restored from the checkpoint where it has one
        use_velocity = (
            self.capped and cfg.capped_merge_momentum and env.world > cfg.capped_merge_reach * self.lr_factor
        )
        self.velocity: list[torch.Tensor | None] = [None, None]
        if use_velocity:
            self.velocity = [
                torch.zeros_like(t) if saved is None else torch.from_numpy(saved).to(self.device)
                for t, saved in zip((v, u), self._saved_velocity, strict=True)
            ]
        # at 2 ranks' local rate a partial sync runs in the background while training goes on
        # (:meth:`_sync_hot`, :func:`overlaps_partial_syncs`); elsewhere each one blocks
        self.overlap_hot = overlaps_partial_syncs(cfg, env.world)
        self._pending: PendingMerge | None = None
        self._session_pairs = 0  # pairs this rank trained in this process (speed, progress loss)
        self._session_loss = 0.0
        self._since_sync = [0.0, 0]  # local loss sum and pairs since the last sync
        self._last_progress = (time.monotonic(), 0.0, 0)  # time, loss sum, pairs for the curve
        self._last_checkpoint = time.monotonic()

    def _initial_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh seeded tables, or the latest checkpoint's (also restoring the counters)."""
        loaded = checkpoint.load_latest(self.out)
        if loaded is None:
            return init_tables(
                self.vocab_size,
                self.cfg.vector_size,
                self.cfg.seed,
                str(self.device),
                init_range=self.cfg.init_range,
            )
        arrays, state = loaded
        self._check_resumable(state, arrays["input"].shape)
        saved = state["counters"]
        saved["fraction"] = tuple(saved["fraction"])
        self.counters = Counters(**saved)
        if len(self.counters.rank_sync_seconds) == self.env.world:  # the checkpoint is rank 0's
            self.counters.sync_seconds = self.counters.rank_sync_seconds[self.env.rank]
        else:  # resumed at another world size: the per-rank figures start over
            self.counters.rank_sync_seconds = []
        self.resumed_from = dict(saved, loss_curve=None, world_size=state["world_size"])
        self._saved_velocity = [arrays.get(f"{table}_velocity") for table in ("input", "output")]
        return (
            torch.from_numpy(arrays["input"]).to(self.device),
            torch.from_numpy(arrays["output"]).to(self.device),
        )

    def _check_resumable(self, state: dict[str, Any], shape: tuple[int, ...]) -> None:
        changed = [k for k in _RESUME_KEYS if state["config"].get(k) != getattr(self.cfg, k)]
        if state["vocab_sha256"] != self.pairs_manifest.vocab_sha256 or shape[0] != self.vocab_size:
            changed.append("vocabulary")
        if state["total_pairs"] != self.total_pairs:
            changed.append("pairs")
        if changed:
            raise ValueError(
                f"the checkpoint in {storage.join(self.out, 'checkpoints')} was made with different "
                f"{', '.join(changed)}; delete that folder to start over, or restore the old settings"
            )

    # -- training loop ---------------------------------------------------------------

    def run(self) -> bool:
        """Train the remaining epochs; True when finished, False when stopped by --stop-after-pairs."""
        self._log_start()
        self._t0 = time.monotonic()
        self._cpu_mark = time.process_time()
        self._seconds_before = self.counters.seconds
        start_epoch, fraction = self.counters.epoch, self.counters.fraction
        for epoch in range(start_epoch, self.cfg.epochs):
            if not self._train_epoch(epoch, fraction if epoch == start_epoch else (0, 1)):
                return False
            fraction = (0, 1)
        return True

    def _train_epoch(self, epoch: int, fraction: tuple[int, int]) -> bool:
        """One epoch from ``fraction`` on; False when a stop was requested at a sync point."""
        n_rank = self.reader.rank_pairs(epoch)
        n_max = max(self.reader.rank_pairs(epoch, r) for r in range(self.env.world))
        syncs = max(1, math.ceil(n_max / self.sync_every))
        first = fraction[0] * syncs // fraction[1] + 1
        done = fraction[0] * n_rank // fraction[1]
        pieces = _Pieces(self.reader.epoch_batches(epoch, skip=done), self.counters)
        splits = self.hot_splits
        for index in range(first, syncs + 1):
            for part in range(1, splits + 1):
                end = ((index - 1) * splits + part) * n_rank // (syncs * splits)
                while done < end:
                    batch = pieces.take(end - done)
                    self._step(batch, epoch, done, n_rank)
                    done += len(batch)
                    self._maybe_progress(epoch, done, n_rank)
                if part < splits:
                    self._sync_hot(part)
            self._sync(epoch, (index, syncs))
            if self._should_stop():
                return False
        self._maybe_progress(epoch, done, n_rank, force=True)
        return True

    def _step(self, batch: Batch, epoch: int, done: int, n_rank: int) -> None:
        cfg = self.cfg
        span = (cfg.alpha - cfg.min_alpha) / cfg.epochs
        lr_start = cfg.alpha - span * (epoch + done / n_rank)
        k = self.lr_factor
        loss = self.model.train_batch(
            batch.center, batch.context, batch.negatives, k * lr_start, -k * span / n_rank
        )
        if self.touched[0].numel():
            self._mark_touched(batch)
        self._since_sync[0] += loss
        self._since_sync[1] += len(batch)
        self._session_loss += loss
        self._session_pairs += len(batch)

    def _mark_touched(self, batch: Batch) -> None:
        if self.device.type == "cpu":
            self.touched[0].numpy()[batch.center] = 1.0
            out = self.touched[1].numpy()
            out[batch.context] = 1.0
            out[batch.negatives.reshape(-1)] = 1.0
            return
        for table, ids in ((0, batch.center), (1, batch.context), (1, batch.negatives.reshape(-1))):
            self.touched[table][torch.from_numpy(ids).to(self.device, dtype=torch.long)] = 1.0

    # -- synchronisation ---------------------------------------------------------------

    def _sync(self, epoch: int, fraction: tuple[int, int]) -> None:
        """Average the tables across ranks and fold the local counters into the global ones."""
        cpu_now = time.process_time()
        self._since_sync.append(cpu_now - self._cpu_mark)
        self._cpu_mark = cpu_now
        # loss, pairs and CPU seconds since the last sync, then one slot per rank for its
        # sync_seconds so far (the others' slots are 0): one all-reduce sums the first three
        # and gathers the last ones
        slots = [0.0] * self.env.world
        slots[self.env.rank] = self.counters.sync_seconds
        stats = torch.tensor(self._since_sync + slots, dtype=torch.float64, device=self.device)
        if self.env.world > 1:
            self._land_hot_merge()
            waited = time.monotonic()
            self._all_reduce(stats)  # the first collective of a full sync: where ranks wait for the slowest
            self.counters.sync_seconds += time.monotonic() - waited
            self._merge_rows(self.vocab_size)
        self._since_sync = [0.0, 0]
        c = self.counters
        c.epoch, c.fraction, c.syncs = epoch, fraction, c.syncs + 1
        c.pairs_trained += int(stats[1])
        c.cpu_seconds += float(stats[2])
        c.current_loss_sum += float(stats[0])
        c.current_pairs += int(stats[1])
        c.rank_sync_seconds = stats[3:].tolist()
        c.seconds = self._seconds_before + time.monotonic() - self._t0
        if fraction[0] == fraction[1]:  # epoch finished: next position is the start of the next one
            c.epoch_loss.append(c.current_loss_sum / max(1, c.current_pairs))
            c.current_loss_sum, c.current_pairs = 0.0, 0
            c.epoch, c.fraction = epoch + 1, (0, 1)
        if self.env.rank == 0 and time.monotonic() - self._last_checkpoint >= self.cfg.checkpoint_every_s:
            self._save_checkpoint()

    def _sync_hot(self, part: int) -> None:
        """Partial sync ``part`` of a full-sync interval: merge only the most frequent rows.

        Sub-sync ``n`` merges the first ``sync_hot_rows * 2**trailing_zeros(n)`` rows
        (ids are by descending count), so the hottest rows, which every rank moves and
        which drift apart fastest, are merged at every sub-sync, and a row of rank ``k``
        about every ``k / sync_hot_rows`` of them; the full sync merges the rest.
        Overlapped (``overlap_partial_syncs``), it only starts this merge and lands the one
        before (:meth:`_start_hot_merge`).
        """
        rows = partial_sync_rows(self.hot_rows, part, self.vocab_size)
        if self.overlap_hot:
            self._start_hot_merge(rows)
        else:
            self._merge_rows(rows)
        self.counters.hot_syncs += 1

    def _start_hot_merge(self, rows: int) -> None:
        """Land the pending partial merge, then send the first ``rows`` rows and go on
        (:func:`start_mean_merge`): each rank waits for a partial sync one segment later
        than it would have, so one rank's slow segment no longer stops the others."""
        self._land_hot_merge()
        started = time.monotonic()
        self._pending = start_mean_merge([self.model.v, self.model.u], rows)
        self.counters.bytes_communicated += self._pending.total.numel() * self._pending.total.element_size()
        self.counters.sync_seconds += time.monotonic() - started

    def _land_hot_merge(self) -> None:
        """Apply the pending partial merge, if any (before every sync, partial or full)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            started = time.monotonic()
            land_mean_merge(pending, [self.model.v, self.model.u], self.env.world)
            self.counters.sync_seconds += time.monotonic() - started

    def _merge_rows(self, rows: int) -> None:
        """Merge the first ``rows`` rows of both tables (all of them at a full sync) by the configured
        rule. A small merge sends everything the rule needs (both tables, and the touched counts
        where it needs them) in one all-reduce: a partial sync costs the collective's latency and
        the wait for the slowest rank more than its bytes (2 ranks on the dev corpus: 123 full and
        1845 partial syncs; :meth:`_all_reduce_together`)."""
        mode = self.cfg.sync_average
        started = time.monotonic()
        tables = [t[:rows] for t in (self.model.v, self.model.u)]
        touched = [t[:rows] for t in self.touched]
        snapshots = [None if t is None else t[:rows] for t in self.snapshots]
        velocity = [None if t is None else t[:rows] for t in self.velocity]
        if mode == "sum" or self.capped:
            sent = [t - last for t, last in zip(tables, snapshots, strict=True)]
        elif mode == "touched":
            sent = [t * m[:, None] for t, m in zip(tables, touched, strict=True)]
        else:  # "mean", and "scaled" while uncapped: the plain average
            sent = list(tables)
        with_counts = mode == "touched" or self.capped
        merged = self._all_reduce_together(sent + touched if with_counts else sent)
        for i, table in enumerate(tables):
            total, counts = merged[i], merged[i + 2] if with_counts else None
            if mode == "sum":
                table.copy_(total.add_(snapshots[i]))
                snapshots[i].copy_(table)
            elif self.capped:
                self._capped_merge(table, total, counts, snapshots[i], velocity[i])
            elif mode == "touched":
                hit = counts > 0
                table[hit] = total[hit] / counts[hit, None]
            else:
                table.copy_(total.div_(self.env.world))
            if with_counts:
                touched[i].zero_()
        self.counters.sync_seconds += time.monotonic() - started

    def _capped_merge(
        self,
        table: torch.Tensor,
        change: torch.Tensor,
        counts: torch.Tensor,
        snapshot: torch.Tensor,
        velocity: torch.Tensor | None,
    ) -> None:
        """``scaled`` once the factor is capped: each row's summed change over
        ``max(k, touchers / capped_merge_reach)`` (module docstring), from the last synced row."""
        divisor = counts.div_(self.cfg.capped_merge_reach).clamp_(min=self.lr_factor)
        change.mul_((1.0 / divisor)[:, None])
        if velocity is not None:
            # rows the merge shrinks (divisor > k) keep 1 - k/divisor of their last step
            velocity.mul_((1.0 - self.lr_factor / divisor)[:, None]).add_(change)
            change = velocity
        table.copy_(snapshot.add_(change))

    def _all_reduce_together(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sum ``tensors`` across ranks, counting the bytes (:func:`all_reduce_together`)."""
        return all_reduce_together(tensors, self._all_reduce)

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        dist.all_reduce(tensor)
        self.counters.bytes_communicated += tensor.numel() * tensor.element_size()

    def _should_stop(self) -> bool:
        limit = self.args.stop_after_pairs
        if limit is None or self.counters.pairs_trained < limit:
            return False
        if self.env.rank == 0:
            self._save_checkpoint()
        return True

    # -- reporting ---------------------------------------------------------------------

    def _log_start(self) -> None:
        if self.env.rank != 0:
            return
        resumed = self.resumed_from
        print(
            f"train: world={self.env.world} backend={self.backend} kernel={self.kernel} "
            f"threads={self.threads} V={self.vocab_size} d={self.cfg.vector_size} "
            f"pairs/epoch={self.pairs_per_epoch[0]} epochs={self.cfg.epochs} "
            f"draws={self.pairs_manifest.draws}"
            + (f" partial_syncs={self.hot_splits - 1}x{self.hot_rows}+" if self.hot_rows else "")
            + (" (overlapped)" if self.overlap_hot else "")
            + (f" resumed at epoch {resumed['epoch']} fraction {resumed['fraction']}" if resumed else ""),
            file=sys.stderr,
            flush=True,
        )
        for warning in (
            full_sync_rate_warning(self.cfg, self.env.world),
            capped_merge_warning(self.cfg, self.env.world),
        ):
            if warning:
                print(warning, file=sys.stderr, flush=True)

    def _maybe_progress(self, epoch: int, done: int, n_rank: int, force: bool = False) -> None:
        """Every ~2 s and at epoch ends on rank 0: one ``progress {json}`` line and a loss-curve point."""
        now = time.monotonic()
        last_t, last_loss, last_pairs = self._last_progress
        if self.env.rank != 0 or (now - last_t < PROGRESS_EVERY_S and not force):
            return
        cfg = self.cfg
        total = sum(self.pairs_per_epoch)
        global_done = sum(self.pairs_per_epoch[:epoch]) + done / max(1, n_rank) * self.pairs_per_epoch[epoch]
        rate = self._session_pairs * self.env.world / max(1e-9, now - self._t0)
        record = {
            "epoch": epoch,
            "pairs": int(global_done),
            "total_pairs": total,
            "loss": (self._session_loss - last_loss) / max(1, self._session_pairs - last_pairs),
            "lr": cfg.alpha - (cfg.alpha - cfg.min_alpha) * global_done / total,
            "pairs_per_s": rate,
            "eta_s": max(0.0, total - global_done) / max(1.0, rate),
            "seconds": self._seconds_before + now - self._t0,
        }
        self.counters.loss_curve.append({k: record[k] for k in ("pairs", "loss", "lr", "seconds")})
        print("progress " + json.dumps(record), file=sys.stderr, flush=True)
        self._last_progress = (now, self._session_loss, self._session_pairs)

    def _save_checkpoint(self) -> None:
        state = {
            "config": asdict(self.cfg),
            "world_size": self.env.world,
            "vocab_sha256": self.pairs_manifest.vocab_sha256,
            "total_pairs": self.total_pairs,
            "counters": asdict(self.counters),
            "rng": {
                "init_seed": self.cfg.seed,
                "streams": "numpy default_rng([seed, epoch(, rank, buffer)])",
            },
        }
        arrays = {"input": self.model.v.cpu().numpy(), "output": self.model.u.cpu().numpy()}
        for table, velocity in zip(("input", "output"), self.velocity, strict=True):
            if velocity is not None:  # identical on every rank: it only ever adds merged changes
                arrays[f"{table}_velocity"] = velocity.cpu().numpy()
        checkpoint.save_checkpoint(
            self.out, checkpoint.checkpoint_name(self.counters.pairs_trained), arrays, state
        )
        self._last_checkpoint = time.monotonic()

    # -- outputs -------------------------------------------------------------------------

    def finish(self) -> Train:
        """Rank 0: write vectors, metrics and, last, the train manifest; then drop the checkpoints."""
        cfg = self.cfg
        v = self.model.v.cpu().numpy()
        u = self.model.u.cpu().numpy()
        vectors = v if cfg.output == "input" else (v + u) / 2
        checkpoint.save_npy(storage.join(self.out, "vectors.npy"), vectors.astype(np.float32, copy=False))
        checkpoint.save_npy(storage.join(self.out, "output_vectors.npy"), u)
        metrics = self._metrics()
        storage.write_json_atomic(storage.join(self.out, "metrics.json"), metrics)
        pairs = self.pairs_manifest
        manifest = Train(
            files=tuple(
                entry_for(self.out, n) for n in ("vectors.npy", "output_vectors.npy", "metrics.json")
            ),
            key=self.args.key,
            pairs_digest=pairs.digest,
            vocab_digest=self.vocab_manifest.digest,
            vocab_sha256=pairs.vocab_sha256,
            vocab_size=self.vocab_size,
            vector_size=cfg.vector_size,
            pairs_uri=self.args.pairs,
            vocab_uri=self.args.vocab,
            total_pairs=self.total_pairs,
            config=asdict(cfg),
            world_size=metrics["world_size"],
            backend=metrics["backend"],
            kernel=metrics["kernel"],
            seconds=metrics["seconds"],
            pairs_per_s=metrics["pairs_per_s"],
            pairs_trained=metrics["pairs"],
            bytes_communicated=metrics["bytes_communicated"],
            final_loss=metrics["final_loss"],
        ).write(self.out)
        storage.remove(storage.join(self.out, "checkpoints"))
        return manifest

    def _metrics(self) -> dict[str, Any]:
        """Counters of the whole run (all sessions when resumed) for metrics.json and the manifest."""
        c = self.counters
        seconds = max(c.seconds, 1e-9)
        return {
            "pairs": c.pairs_trained,
            "seconds": seconds,
            "negative": self.pairs_manifest.negative,  # the loss of untrained vectors is (1+K)·ln 2
            "pairs_per_s": c.pairs_trained / seconds,
            "pairs_per_s_per_rank": c.pairs_trained / seconds / self.env.world,
            "world_size": self.env.world,
            "backend": self.backend,
            "kernel": self.kernel,
            "threads": self.threads,
            "reader_threads": self.reader.threads,
            "device": str(self.device),
            "bytes_communicated": c.bytes_communicated,
            "cpu_seconds": c.cpu_seconds,
            "pairs_per_cpu_s": c.pairs_trained / max(c.cpu_seconds, 1e-9),
            "syncs": c.syncs,
            "hot_syncs": c.hot_syncs,
            "sync_seconds": c.sync_seconds,  # rank 0's wall time in syncs (collectives and waits)
            "sync_share": c.sync_seconds / seconds,
            # every rank's, as of the last full sync (that sync's own wait not included)
            "sync_seconds_per_rank": c.rank_sync_seconds,
            "sync_share_max": max(c.rank_sync_seconds, default=c.sync_seconds) / seconds,
            # rank 0's wall time waiting for its next batch: the reader not keeping up
            "read_wait_seconds": c.read_wait_seconds,
            "read_wait_share": c.read_wait_seconds / seconds,
            "sync_every": self.sync_every,
            "sync_hot_rows": self.hot_rows,
            "partial_syncs_overlapped": self.overlap_hot,
            "sync_average": self.cfg.sync_average,
            "epoch_loss": c.epoch_loss,
            "final_loss": c.epoch_loss[-1] if c.epoch_loss else None,
            "loss_curve": c.loss_curve,
            "resumed_from": self.resumed_from,
        }


@dataclass
class PendingMerge:
    """A mean merge in flight: the rows sent, a copy being summed across ranks, its handle."""

    rows: int
    sent: torch.Tensor
    total: torch.Tensor
    work: Any


def start_mean_merge(tables: list[torch.Tensor], rows: int) -> PendingMerge:
    """Start summing the first ``rows`` rows of ``tables`` across ranks, without waiting.

    A copy goes out, so training may go on changing the tables meanwhile; :func:`land_mean_merge`
    applies the sum. On 2 ranks on 2 cores the blocking partial syncs cost a fifth of the pairs/s
    on 10M words (2.30M with full syncs only, 1.81M with them), mostly one rank waiting for the
    other; overlapped, the time in syncs fell from 20-25% to 10-17% (docs/bench/overlap.md).
    """
    sent = torch.cat([t[:rows].reshape(-1) for t in tables])
    total = sent.clone()
    return PendingMerge(rows, sent, total, dist.all_reduce(total, async_op=True))


def land_mean_merge(pending: PendingMerge, tables: list[torch.Tensor], world: int) -> None:
    """``row <- mean + (row - sent)`` for the rows ``pending`` sent: the replicas' mean at the
    send, plus what this rank learnt since. The sums, and the program points where they land,
    do not depend on timing, so one thread per rank stays bitwise deterministic."""
    pending.work.wait()
    rows = [t[: pending.rows] for t in tables]
    for row, change in zip(
        rows, _split_like(pending.total.div_(world).sub_(pending.sent), rows), strict=True
    ):
        row.add_(change)


def partial_sync_rows(hot_rows: int, part: int, vocab_size: int) -> int:
    """Rows partial sync ``part`` (1-based within an interval) merges: ``hot_rows * 2**trailing_zeros(part)``."""
    return min(vocab_size, hot_rows << ((part & -part).bit_length() - 1))


def hot_row_count(cfg: TrainConfig, world: int) -> int:
    """Rows in the smallest partial sync; 0 = full syncs only (one process, or off,
    by ``sync_hot_rows=0`` or ``sync_hot_splits=1``).

    Unset, :data:`HOT_ROWS` from 2 ranks on: at 8 ranks and alpha 0.05 they were worth
    4.8 analogy points on 10M words; at 2 ranks on the whole dev corpus they took the
    default from 1.1 ±0.5 points below one process to 0.1 ±0.4 (two seeds, balanced
    reader) for 3% pairs/s; 6% on 2M words, 11% on 10M (docs/bench/hot_rows_two_ranks.md).
    """
    if world < 2 or cfg.sync_hot_splits <= 1:
        return 0
    if cfg.sync_hot_rows is None:
        return HOT_ROWS
    return cfg.sync_hot_rows


def full_sync_rate_warning(cfg: TrainConfig, world: int) -> str | None:
    """A warning when ranks step fast with full syncs only, or None.

    The 0.4 cap holds because the partial syncs keep the hot rows fresh; with full
    syncs only, 8 ranks at a local 0.4 failed on 2M and 10M words (analogy 3.1%, 0.7%).
    An explicit setting is the user's to make, so this warns rather than overriding it.
    """
    if world < 3 or cfg.sync_average != "scaled" or hot_row_count(cfg, world):
        return None
    local = scaled_lr_factor(cfg, world) * cfg.alpha
    if local <= FULL_SYNC_LOCAL_ALPHA + 1e-9:  # 6 x 0.05 is 0.30000000000000004
        return None
    return (
        f"train: warning: {world} ranks step at a local rate of {local:.2f} with full syncs only "
        "(train.sync_hot_rows=0 or train.sync_hot_splits=1); 8 ranks at 0.4 that way failed on 2M and "
        f"10M words: set train.max_local_alpha={FULL_SYNC_LOCAL_ALPHA} or keep the partial syncs"
    )


# merges up to this many bytes travel as one all-reduce: at 0.8-1.6 MB that saved 37-55% of the
# time on 2 gloo ranks, at 3.3 MB -3..+5%, at 6.6 MB it lost 4-14% (tests/bench/sync_cost.py)
COALESCE_BYTES = 4 << 20
STABLE_MERGE_REACH = 2.0  # a row moved by more than 2x the touchers' mean diverged (32 ranks, 2M)
MEASURED_WORLD = 32  # the widest world whose quality was measured (2M and 10M words)


def all_reduce_together(
    tensors: list[torch.Tensor],
    all_reduce: Callable[[torch.Tensor], object] = dist.all_reduce,
    coalesce_bytes: int = COALESCE_BYTES,
) -> list[torch.Tensor]:
    """Sum ``tensors`` across ranks with ``all_reduce``; returns the sums, shaped like the inputs.

    Up to ``coalesce_bytes`` in all they travel as one flat buffer (one collective's
    latency instead of two or four), and the inputs are left as they were; larger ones
    are reduced in place, one by one, and returned themselves, because copying a full
    sync's tables in and out of a fresh buffer cost more than it saved (2 gloo ranks,
    dev-corpus tables: 59-67 ms apart, 128-136 ms together; tests/bench/sync_cost.py).
    """
    if sum(t.numel() * t.element_size() for t in tensors) > coalesce_bytes:
        for tensor in tensors:
            all_reduce(tensor)
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    all_reduce(flat)
    return _split_like(flat, tensors)


def _split_like(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of ``flat`` shaped like ``tensors``, in order (the inverse of concatenating them)."""
    return [
        part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


def capped_merge_warning(cfg: TrainConfig, world: int) -> str | None:
    """A warning where the capped merge is outside what held, or None.

    Once the factor ``k`` is capped, a row every rank touched moves by ``min(W / k, r)``
    times the touchers' mean change (``r`` = ``capped_merge_reach``). On rows that each
    rank already moved to where it would stop (the hottest ones), anything past 2x
    overshoots like gradient descent past twice its stable step: reach 3 and 4 diverged
    at 32 ranks on 2M words (loss 1e4 and 1e28). At or below 2 it is stable but, beyond
    ``r * k`` ranks (16 by default), those rows learn at ``r * k / W`` of one process's
    rate unless the merge momentum gives it back: without it 32 ranks on 2M words scored
    4.8% / 0.323 against one process's 6.1% / 0.385 (two seeds; docs/bench/thirty_two_ranks.md),
    with it 5.2% / 0.413 against 5.1% / 0.414 (two seeds; docs/bench/merge_momentum.md).
    Past :data:`MEASURED_WORLD` ranks the momentum (``1 - r k / W``) is larger than any measured.
    All of these are the user's call, so this warns.
    """
    if cfg.sync_average != "scaled":
        return None
    k = scaled_lr_factor(cfg, world)
    if k >= world:
        return None
    reach = cfg.capped_merge_reach
    if reach > STABLE_MERGE_REACH:
        return (
            f"train: warning: train.capped_merge_reach={reach:g} lets a row land {min(world / k, reach):.1f}x "
            f"as far as its touchers' mean change; 3 and 4 diverged at 32 ranks on 2M words: keep it at "
            f"{STABLE_MERGE_REACH:g} or below"
        )
    rate = reach * k / world
    if rate >= 1.0:
        return None
    if cfg.capped_merge_momentum:
        if world <= MEASURED_WORLD:
            return None
        return (
            f"train: warning: {world} ranks are more than the {MEASURED_WORLD} whose quality was measured: "
            f"the merge momentum keeps {1 - rate:.2f} of the most frequent rows' last step here (0.5 at "
            f"32 ranks, which held one process's quality on 2M and 10M words); check the vectors "
            f"(corpus2vec evaluate) before relying on them, or use fewer, larger ranks (GPUs)"
        )
    return (
        f"train: warning: at {world} ranks the most frequent words learn at {rate:.0%} of one process's "
        f"rate (local rate capped at train.max_local_alpha={cfg.max_local_alpha:g}, merge reach {reach:g}, "
        f"train.capped_merge_momentum=false); 32 ranks lost 22% analogy and 0.062 WordSim353 that way on "
        f"2M words, 2.0 points on 10M: keep the momentum on, or use at most {int(reach * k)} ranks"
    )


def overlaps_partial_syncs(cfg: TrainConfig, world: int) -> bool:
    """Whether the partial syncs run in the background (:func:`start_mean_merge`).

    Only for the uncapped ``scaled`` mean, and only where ranks step at a local rate of at most
    ``OVERLAP_LOCAL_ALPHA`` (0.1: 2 ranks at the default alpha). Faster, a rank's own
    un-merged change (``k`` times a process's step) stays in its hot rows a segment longer,
    which is what the partial syncs are there to prevent: overlapped, 4 ranks at a local 0.2
    scored 24.6% analogy on 10M words against 26.0% blocking, 6 ranks at 0.3 24.4% against
    26.0%, and 8 ranks at 0.4 diverged (0.3% against 25.6%), as they do with full syncs only
    (docs/bench/overlap.md).
    """
    if not cfg.overlap_partial_syncs or world < 2 or not hot_row_count(cfg, world):
        return False
    if cfg.sync_average != "scaled" or scaled_lr_factor(cfg, world) < world:  # capped: counts, snapshots
        return False
    return world * cfg.alpha <= OVERLAP_LOCAL_ALPHA + 1e-9  # 2 x 0.05 may round above 0.1


def scaled_lr_factor(cfg: TrainConfig, world: int) -> float:
    """How much faster than ``alpha`` a rank steps under ``scaled``: ``world``, capped so that
    ``factor * alpha <= max_local_alpha`` (0.4 held at 8 ranks with the hot-row syncs, 0.6 diverged)."""
    if cfg.max_local_alpha is None:
        return float(world)
    return float(min(world, max(1.0, cfg.max_local_alpha / cfg.alpha)))


def train(args: argparse.Namespace, cfg: TrainConfig, env: DistEnv) -> Train | None:
    """Run (or resume) training for this rank; rank 0 returns the train manifest when finished."""
    existing = Train.finished(args.out)
    if existing is not None:
        if env.rank == 0:
            print(f"train: {args.out} is already finished; nothing to do", file=sys.stderr, flush=True)
        return existing
    trainer = Trainer(args, cfg, env)
    try:
        finished = trainer.run()
    finally:
        trainer.model.close()
    if not finished:
        if env.rank == 0:
            print(f"train: stopped after {trainer.counters.pairs_trained} pairs", file=sys.stderr, flush=True)
        return None
    return trainer.finish() if env.rank == 0 else None


def _init_process_group(cfg: TrainConfig, env: DistEnv) -> None:
    if env.world <= 1:
        return
    _, backend, _ = pick_device(cfg, env)
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend)


def main(argv: list[str] | None = None) -> int:
    """Console entry: parse arguments, join the process group when under torchrun, train."""
    from torch.distributed.elastic.multiprocessing.errors import record

    @record
    def _run() -> int:
        args = parse_args(argv)
        cfg = load_train_config(args.config)
        env = DistEnv.from_environ()
        # numba does the CPU work; torch's OpenMP pool only spins (and collapses when the
        # machine is oversubscribed), so one intra-op thread per rank on CPU.
        torch.set_num_threads(1)
        _init_process_group(cfg, env)
        try:
            train(args, cfg, env)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        return 0

    return _run()


if __name__ == "__main__":
    sys.exit(main())
