"""gensim's skip-gram, step for step, in numba: to find which part of it gives its similarity scores.

    python tests/bench/gensim_replica.py --corpus OUT/stores/corpus-all.txt --seeds 10,11 \\
        --variants gensim exact splitmix centre --out OUT/replica.json

corpus2vec trails gensim's iterable mode by about 0.01 WordSim353 and SimLex on the whole dev corpus
(docs/bench/whole_corpus_draws.md: pooled over five draws), though every difference between the
two that is known has been measured and none closed it; the ``sentences`` variants below helped find it
in the file's order instead (docs/bench/file_order.md). This replays gensim 4.4's
``train_batch_sg`` / ``w2v_fast_sentence_sg_neg`` with one worker, with gensim's own vocabulary,
initial vectors, job learning rates and random streams (its per-job 48-bit LCG for subsampling and
negatives, its numpy ``RandomState`` for the job seeds and reduced windows), and lets one part at a
time be replaced by corpus2vec's:

* ``gensim``: the replay as is (the sigmoid table over [-6, 6] read at the bin's left edge, every
  update with |u.v| >= 6 skipped). It should score what gensim with one worker scores.
* ``exact``: corpus2vec's step (exact sigmoid, nothing skipped).
* ``splitmix``: ``exact`` with the LCG draws (subsampling, negatives) from a splitmix64 counter
  stream instead, as corpus2vec's pairs job draws them.
* ``centre``: ``exact`` with corpus2vec's roles: the centre's input row is trained against the
  context's output row, and the negatives replace the context.
* ``shuffled``: ``exact``, each job's pairs (and their negatives) trained in a random order.
* ``rows``: ``exact``, but an epoch's pairs and their negatives are drawn first (in gensim's order,
  from gensim's streams, so the same draws) and trained after, at a rate falling per pair: what
  corpus2vec's pairs job and trainer do. Should score what ``exact`` scores.
* ``global``: ``rows`` with the epoch's pairs in one uniform random order, as corpus2vec trains.
* ``blocks64``, ``blocks4096``, ``blocks262144``: ``rows`` with the epoch's pairs cut into blocks of
  that many consecutive pairs (gensim's order inside a block), the blocks in a uniform random order:
  how much sentence locality the similarity scores need, between ``rows`` (one block) and ``global``
  (blocks of one pair).
* ``sentences``, ``sentences_fixed``: ``rows`` with the epoch's sentences (lines of the corpus, 10k
  words each in the benchmark's prefix) in a random order, gensim's order inside each; a new order
  every epoch, or one order kept for all epochs (the corpus permuted once, as a file would be).
* ``rotated``, ``file_last``, ``file_first``, ``windowed``, ``windows_reordered``: ``rows`` with
  the file's order moved (started from its middle) or kept in part (in the last epoch only, in all
  but the last, or as windows of 64 lines in order with their pairs shuffled inside, or those
  windows in a random order); ``windowed256`` and ``windowed512``: windows of 256 and 512 lines. See
  ``epoch_order``.
* ``ours``: corpus2vec's own pairs (``--pairs``, the pairs stage of the same corpus: epoch e reads
  draw e, in the shards' order) trained as ``rows`` trains, from gensim's initial vectors: the
  pairs job's draws in place of gensim's, and nothing else of corpus2vec's.
* ``ours_swapped``: ``ours`` with the shards' two columns exchanged: on shards written with
  ``pairs.input_word=centre`` (the default until 2026-12-07) that is gensim's roles, each pair
  training the context's input row against the centre's output row (a negative equal to the centre
  skipped); today's default shards (``input_word=context``) already carry gensim's roles in ``ours``.

Each run is scored by corpus2vec's ``evaluate_vectors`` (as every benchmark row is). One thread,
so a run is bitwise repeatable. A diagnostic, not a product path; nothing asserts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LCG_MUL = np.uint64(25214903917)
LCG_MASK = np.uint64(281474976710655)
MAX_EXP = 6.0
EXP_TABLE_SIZE = 1000
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def exp_table() -> np.ndarray:
    """gensim's EXP_TABLE: sigmoid at the left edge of 1000 bins over [-6, 6], float32."""
    x = np.exp((np.arange(EXP_TABLE_SIZE) / EXP_TABLE_SIZE * 2 - 1) * MAX_EXP)
    return (x / (x + 1)).astype(np.float32)


@njit(inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _draw32(state: np.ndarray, splitmix: bool) -> np.uint64:
    """The next 32-bit draw: gensim's ``random_int32`` (LCG, bits 16-47), or a splitmix64 counter."""
    if splitmix:
        state[0] += GOLDEN
        return _mix(state[0]) >> np.uint64(32)
    value = state[0] >> np.uint64(16)
    state[0] = (state[0] * LCG_MUL + np.uint64(11)) & LCG_MASK
    return value


@njit(nogil=True, cache=True)
def subsample(ids: np.ndarray, sample_int: np.ndarray, state: np.ndarray, splitmix: bool) -> np.ndarray:
    """The job's kept word ids: OOV (-1) dropped, then ``sample_int[w] < draw`` dropped (gensim's test)."""
    out = np.empty(ids.shape[0], np.int32)
    n = 0
    for t in range(ids.shape[0]):
        w = ids[t]
        if w < 0:
            continue
        if np.uint64(sample_int[w]) < _draw32(state, splitmix):
            continue
        out[n] = w
        n += 1
    return out[:n]


@njit(inline="always")
def _negative(cum: np.ndarray, state: np.ndarray, splitmix: bool) -> int:
    """gensim's draw: ``bisect_left(cum_table, (next_random >> 16) % cum_table[-1])``."""
    if splitmix:
        state[0] += GOLDEN
        x = (_mix(state[0]) >> np.uint64(16)) % np.uint64(cum[-1])
    else:
        x = (state[0] >> np.uint64(16)) % np.uint64(cum[-1])
        state[0] = (state[0] * LCG_MUL + np.uint64(11)) & LCG_MASK
    lo, hi = 0, cum.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if np.uint64(cum[mid]) < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always")
def _reach(i: int, n: int, window: int, reduced: np.ndarray) -> tuple[int, int]:
    """gensim's window of centre i in a sentence of n kept words: positions lo..hi-1."""
    return max(0, i - window + reduced[i]), min(n, i + window + 1 - reduced[i])


@njit(inline="always")
def _step(
    row1: np.ndarray, out: np.ndarray, label: np.float32, lr: float, gensim_step: bool,
    table: np.ndarray, neu1e: np.ndarray,
) -> None:  # fmt: skip
    """One target of word2vec.c's step: neu1e gathers the input row's change, the output row moves."""
    f_dot = np.float32(0.0)
    for d in range(row1.shape[0]):
        f_dot += row1[d] * out[d]
    if gensim_step:
        if f_dot <= -MAX_EXP or f_dot >= MAX_EXP:
            return
        f = table[int((f_dot + MAX_EXP) * (EXP_TABLE_SIZE / MAX_EXP / 2))]
    else:
        e = math.exp(-abs(f_dot))
        f = np.float32(1.0 / (1.0 + e) if f_dot >= 0 else e / (1.0 + e))
    g = np.float32((label - f) * lr)
    for d in range(row1.shape[0]):
        neu1e[d] += g * out[d]
        out[d] += g * row1[d]


@njit(nogil=True, cache=True)
def train_job(
    idx: np.ndarray,
    reduced: np.ndarray,
    syn0: np.ndarray,
    syn1neg: np.ndarray,
    cum: np.ndarray,
    table: np.ndarray,
    window: int,
    negative: int,
    alpha: float,
    state: np.ndarray,
    gensim_step: bool,
    splitmix: bool,
    centre_input: bool,
    order: np.ndarray,
    neu1e: np.ndarray,
) -> int:
    """One job of ``train_batch_sg`` (one sentence): every (i, j) in i's reduced window, in order
    (or in ``order``, a permutation of the job's pairs, when it is not empty)."""
    n = idx.shape[0]
    dim = syn0.shape[1]
    a = np.float32(alpha)
    # the job's pairs as gensim walks them
    total = 0
    for i in range(n):
        lo, hi = _reach(i, n, window, reduced)
        total += hi - lo - 1
    pi = np.empty(total, np.int32)
    pj = np.empty(total, np.int32)
    p = 0
    for i in range(n):
        lo, hi = _reach(i, n, window, reduced)
        for j in range(lo, hi):
            if j != i:
                pi[p] = i
                pj[p] = j
                p += 1
    for q in range(total):
        r = order[q] if order.shape[0] == total else q
        word = idx[pi[r]]  # the centre: gensim's positive target
        word2 = idx[pj[r]]  # the context: gensim's input row
        if centre_input:
            word, word2 = word2, word
        row1 = syn0[word2]
        for d in range(dim):
            neu1e[d] = 0.0
        for k in range(negative + 1):
            if k == 0:
                target = word
                label = np.float32(1.0)
            else:
                target = _negative(cum, state, splitmix)
                if target == word:
                    continue
                label = np.float32(0.0)
            _step(row1, syn1neg[target], label, a, gensim_step, table, neu1e)
        for d in range(dim):
            row1[d] += neu1e[d]
    return total


@njit(nogil=True, cache=True)
def job_rows(
    idx: np.ndarray,
    reduced: np.ndarray,
    cum: np.ndarray,
    state: np.ndarray,
    window: int,
    negative: int,
    rows_in: np.ndarray,
    rows_out: np.ndarray,
    rows_neg: np.ndarray,
    at: int,
) -> int:
    """Append one job's pairs (input row, positive target, negatives) in gensim's order and draws;
    a negative equal to the target is stored as -1 (gensim skips it)."""
    n = idx.shape[0]
    for i in range(n):
        lo, hi = _reach(i, n, window, reduced)
        for j in range(lo, hi):
            if j == i:
                continue
            if at == rows_in.shape[0]:
                raise ValueError("more pairs than the epoch's buffer holds")
            rows_in[at] = idx[j]
            rows_out[at] = idx[i]
            for k in range(negative):
                t = _negative(cum, state, False)
                rows_neg[at, k] = -1 if t == idx[i] else t
            at += 1
    return at


@njit(nogil=True, cache=True)
def train_rows(
    rows_in: np.ndarray,
    rows_out: np.ndarray,
    rows_neg: np.ndarray,
    order: np.ndarray,
    syn0: np.ndarray,
    syn1neg: np.ndarray,
    lr_first: float,
    lr_last: float,
    neu1e: np.ndarray,
) -> None:
    """corpus2vec's step (exact sigmoid) over an epoch's drawn pairs, in ``order`` if given, the
    rate falling linearly per pair from ``lr_first`` to ``lr_last``."""
    n = rows_in.shape[0]
    dim = syn0.shape[1]
    for q in range(n):
        r = order[q] if order.shape[0] == n else q
        lr = lr_first + (lr_last - lr_first) * (q / n)
        row1 = syn0[rows_in[r]]
        for d in range(dim):
            neu1e[d] = 0.0
        for k in range(rows_neg.shape[1] + 1):
            if k == 0:
                target = rows_out[r]
                label = np.float32(1.0)
            else:
                target = rows_neg[r, k - 1]
                if target < 0:
                    continue
                label = np.float32(0.0)
            _step(row1, syn1neg[target], label, lr, False, neu1e[:0], neu1e)  # no table: exact sigmoid
        for d in range(dim):
            row1[d] += neu1e[d]


BLOCKS = {"blocks64": 64, "blocks4096": 4096, "blocks262144": 262144}  # variant -> pairs per block
SENTENCE_ORDERS = ("sentences", "sentences_fixed")  # sentences reordered per epoch / once for all epochs
# the file's order moved or kept in part (docs/bench/file_order.md); for the windowed ones, the lines per window
# whose pairs are shuffled (64 lines: 640k words, about 6.1M pairs)
WINDOW_LINES = {"windowed": 64, "windowed256": 256, "windowed512": 512, "windows_reordered": 64}
FILE_ORDERS = ("rotated", "file_last", "file_first", *WINDOW_LINES)
VARIANTS: dict[str, dict[str, bool]] = {
    name: {"gensim_step": name == "gensim", "splitmix": name == "splitmix", "centre_input": name == "centre",
           "shuffled": name in ("shuffled", "global"),
           "rows": name in ("rows", "global", "ours", "ours_swapped", *BLOCKS, *SENTENCE_ORDERS, *FILE_ORDERS)}
    for name in ("gensim", "exact", "splitmix", "centre", "shuffled", "rows", "global", "ours", "ours_swapped",
                 *BLOCKS, *SENTENCE_ORDERS, *FILE_ORDERS)
}  # fmt: skip


def runs_in(starts: np.ndarray, pairs: int, perm: np.ndarray) -> np.ndarray:
    """0..pairs-1 as runs of consecutive indices (``starts``: each run's first index, ascending),
    the runs in the order ``perm`` and each kept in order."""
    bounds = np.append(starts, pairs).astype(np.int64)
    first, lengths = bounds[:-1][perm], np.diff(bounds)[perm]
    return np.repeat(first - (np.cumsum(lengths) - lengths), lengths) + np.arange(pairs, dtype=np.int64)


def run_order(starts: np.ndarray, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``runs_in`` with the runs in a random order."""
    return runs_in(starts, pairs, rng.permutation(len(starts)))


def epoch_order(
    variant: str, starts: np.ndarray, pairs: int, epoch: int, epochs: int, seed: int
) -> np.ndarray:
    """Epoch ``epoch``'s pair order for a ``rows`` variant (``starts``: each line's first pair); empty
    for the pairs in the order drawn (the file's, ``rows``), from a generator seeded ``[seed, epoch]``.

    ``global`` permutes all pairs; ``BLOCKS`` reorders runs of consecutive pairs; ``sentences``
    reorders the lines (``sentences_fixed``: one order, seeded ``[seed]``, for every epoch); of the
    ``FILE_ORDERS``, ``rotated`` trains the lines from the file's middle to its end, then its start to the middle (the
    same neighbours, other positions); ``file_last`` / ``file_first`` train the file's order in the
    last epoch only / in every epoch but the last, a new random line order in the others;
    ``windowed`` keeps the windows of 64 lines (``WINDOW_LINES``; 256 and 512 for ``windowed256``
    and ``windowed512``) in the file's order and shuffles the pairs inside each (the order a
    corpus-ordered shuffle buffer would give); ``windows_reordered`` does the same with the 64-line
    windows in a new random order every epoch."""
    lines = len(starts)
    rng = np.random.default_rng([seed, epoch])
    if VARIANTS[variant]["shuffled"]:
        return rng.permutation(pairs)
    if variant in BLOCKS:
        return block_order(pairs, BLOCKS[variant], rng)
    if variant in SENTENCE_ORDERS:
        return run_order(
            starts, pairs, np.random.default_rng([seed]) if variant == "sentences_fixed" else rng
        )
    if variant not in FILE_ORDERS:
        return np.zeros(0, np.int64)
    if variant == "rotated":
        return runs_in(starts, pairs, np.roll(np.arange(lines), -(lines // 2)))
    if variant in ("file_last", "file_first"):
        in_file_order = (epoch == epochs - 1) == (variant == "file_last")
        return np.arange(pairs, dtype=np.int64) if in_file_order else run_order(starts, pairs, rng)
    windows = list(itertools.pairwise(np.append(starts[:: WINDOW_LINES[variant]], pairs).astype(np.int64)))
    if variant == "windows_reordered":
        windows = [windows[w] for w in rng.permutation(len(windows))]
    return np.concatenate([lo + rng.permutation(hi - lo) for lo, hi in windows])


def block_order(pairs: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """0..pairs-1 cut into runs of ``block`` consecutive indices, the runs in a random order."""
    return run_order(np.arange(0, pairs, block, dtype=np.int64), pairs, rng)


def our_rows(
    pairs_uri: str, epoch: int, gensim_index: dict[str, int], swapped: bool = False
) -> tuple[np.ndarray, ...]:
    """Epoch ``epoch``'s pairs from corpus2vec's pairs stage, in file order, as gensim word ids
    (input, positive target, negatives): the shards' ``center`` column is the input. ``swapped``
    trains the ``context`` column's input row against the ``center`` column's output row instead."""
    import pyarrow.parquet as pq

    from corpus2vec.model.contracts import Pairs, Vocab

    manifest = Pairs.read(pairs_uri)
    vocab_root = Path(pairs_uri).parents[1] / "vocab"
    vocab_dir = next(d for d in vocab_root.iterdir() if Vocab.finished(str(d)) is not None)
    words = Vocab.read(str(vocab_dir)).table().column("word").to_pylist()
    to_gensim = np.array([gensim_index[w] for w in words], np.int32)
    parts = [pq.read_table(str(Path(pairs_uri) / f.path)) for f in manifest.shards(manifest.draw_of(epoch))]
    centre = np.concatenate([t.column("center").to_numpy() for t in parts])
    context = np.concatenate([t.column("context").to_numpy() for t in parts])
    negatives = np.concatenate(
        [np.asarray(t.column("negatives").combine_chunks().flatten()).reshape(len(t), -1) for t in parts]
    )
    centre, context, negatives = to_gensim[centre], to_gensim[context], to_gensim[negatives]
    if not swapped:
        return centre, context, negatives
    negatives[negatives == centre[:, None]] = -1  # gensim skips a negative equal to its target
    return context, centre, negatives


def replay(corpus: Path, cfg: Any, seed: int, variant: str, pairs_uri: str | None = None) -> dict[str, Any]:
    """Train one variant from gensim's initial state; returns its scores and speed."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from corpus2vec.model.evaluate import evaluate_vectors

    flags = VARIANTS[variant]
    model = Word2Vec(
        sg=1, hs=0, negative=cfg.pairs.negative, window=cfg.pairs.window, sample=cfg.pairs.sample,
        min_count=cfg.vocab.min_count, vector_size=cfg.train.vector_size, alpha=cfg.train.alpha,
        min_alpha=cfg.train.min_alpha, seed=seed, workers=1, ns_exponent=cfg.pairs.ns_exponent,
    )  # fmt: skip
    sentences = LineSentence(str(corpus))
    model.build_vocab(corpus_iterable=sentences)
    index = model.wv.key_to_index
    jobs = [np.array([index.get(t, -1) for t in s], np.int32) for s in sentences]
    syn0 = model.wv.vectors.copy()
    syn1neg = model.syn1neg.copy()
    sample_int = model.wv.expandos["sample_int"].astype(np.uint32)
    cum = model.cum_table.astype(np.uint32)
    table, neu1e = exp_table(), np.zeros(syn0.shape[1], np.float32)
    rng = model.random  # gensim's RandomState(seed), as its trainer uses it
    epochs, window = cfg.train.epochs, cfg.pairs.window
    alpha0, alpha1 = cfg.train.alpha, cfg.train.min_alpha
    started, pairs = time.monotonic(), 0
    if flags["rows"] and not variant.startswith("ours"):
        # an epoch's expected pairs (kept tokens x 2 x mean reach) with 2% to spare: job_rows raises beyond
        counts = np.bincount(np.concatenate(jobs)[np.concatenate(jobs) >= 0], minlength=len(sample_int))
        kept_tokens = float(np.sum(counts * (sample_int.astype(np.float64) / 2**32)))
        capacity = int(kept_tokens * (window + 1) * 1.02) + 1_000_000
        rows_in, rows_out = np.empty(capacity, np.int32), np.empty(capacity, np.int32)
        rows_neg = np.empty((capacity, cfg.pairs.negative), np.int32)
    for epoch in range(epochs if variant.startswith("ours") else 0):
        rows_in, rows_out, rows_neg = our_rows(pairs_uri, epoch, index, variant == "ours_swapped")
        span = (alpha0 - alpha1) / epochs
        train_rows(
            rows_in, rows_out, rows_neg, np.zeros(0, np.int64), syn0, syn1neg,
            alpha0 - span * epoch, alpha0 - span * (epoch + 1), neu1e,
        )  # fmt: skip
        pairs += len(rows_in)
    for epoch in range(epochs if flags["rows"] and not variant.startswith("ours") else 0):
        at, starts = 0, np.zeros(len(jobs), np.int64)
        for k, ids in enumerate(jobs):  # the same draws, in the same order, as the replay below
            starts[k] = at
            state = np.array([(2**24) * rng.randint(0, 2**24) + rng.randint(0, 2**24)], np.uint64)
            kept = subsample(ids, sample_int, state, False)
            reduced = rng.randint(0, window, len(kept)).astype(np.int32)
            at = job_rows(
                kept, reduced, cum, state, window, cfg.pairs.negative, rows_in, rows_out, rows_neg, at
            )
        order = epoch_order(variant, starts, at, epoch, epochs, seed)
        span = (alpha0 - alpha1) / epochs
        train_rows(
            rows_in[:at], rows_out[:at], rows_neg[:at], order, syn0, syn1neg,
            alpha0 - span * epoch, alpha0 - span * (epoch + 1), neu1e,
        )  # fmt: skip
        pairs += at
    for epoch in range(0 if flags["rows"] else epochs):
        for k, ids in enumerate(jobs):
            # the producer's rate for job k (examples-based decay: one sentence per job)
            progress = (epoch + k / len(jobs)) / epochs
            alpha = max(alpha1, alpha0 - (alpha0 - alpha1) * progress)
            state = np.array([(2**24) * rng.randint(0, 2**24) + rng.randint(0, 2**24)], np.uint64)
            kept = subsample(ids, sample_int, state, flags["splitmix"])
            reduced = rng.randint(0, window, len(kept)).astype(np.int32)
            order = np.zeros(0, np.int64)
            if flags["shuffled"]:  # its own stream, so every other draw stays gensim's
                at = np.arange(len(kept))
                lo = np.maximum(0, at - window + reduced)
                hi = np.minimum(len(kept), at + window + 1 - reduced)
                order = np.random.default_rng([seed, epoch, k]).permutation(int(np.sum(hi - lo - 1)))
            pairs += train_job(
                kept, reduced, syn0, syn1neg, cum, table, window, cfg.pairs.negative, alpha, state,
                flags["gensim_step"], flags["splitmix"], flags["centre_input"], order, neu1e,
            )  # fmt: skip
    seconds = time.monotonic() - started
    report = evaluate_vectors(syn0, list(model.wv.index_to_key), cfg.eval)
    m = report["metrics"]
    return {
        "variant": variant, "seed": seed, "pairs": pairs, "seconds": round(seconds, 1),
        "pairs_per_s": pairs / seconds, "analogy": m["analogy"], "wordsim353": m.get("wordsim353"),
        "simlex999": m.get("simlex999"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", required=True, help="one sentence (<= 10k words) per line")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", required=True, help="JSON file; rows are appended as they finish")
    parser.add_argument("--pairs", help="for the ours variant: the pairs stage folder of the same corpus")
    args = parser.parse_args(argv)
    from scale_quality import load_bench

    cfg = load_bench()
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants:
            row = replay(Path(args.corpus), cfg, seed, variant, args.pairs)
            rows.append(row)
            out.write_text(json.dumps(rows, indent=2))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
