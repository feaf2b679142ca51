"""Benchmark SGNS training (1 vs N processes, merge rules) against gensim skip-gram. A script, not a test.

    python tests/bench/bench_train.py --pairs RUN/pairs --vocab RUN/vocab --out /tmp/bench-train \\
        --runs 1:sum 2:sum 2:mean --gensim-corpus ../shared/data/enwiki-2014-dev.text8style.txt.gz

Each ``--runs`` item is ``NPROC[:MERGE[:SYNC_EVERY[:THREADS]]]``. Every run trains the
bench preset (vector_size 100, 3 epochs, alpha 0.025) through ``launch_training``
and is scored like gensim: analogy accuracy on questions-words (restrict_vocab
30000), Spearman on WordSim353 and SimLex-999. gensim 4.4 runs skip-gram with
the reference settings (the bench preset) on the raw corpus; its speed is converted to
pairs/s with the pairs-per-token ratio of the pairs manifest (total_pairs / draws /
total_tokens), since our trainer consumes pre-built pairs. Results go to
``{out}/bench_train.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus2vec.model import storage
from corpus2vec.model.config import load_config
from corpus2vec.model.contracts import Pairs, Vocab
from corpus2vec.model.launch import launch_training


def score(words: list[str], vectors: np.ndarray) -> dict[str, float]:
    """gensim's analogy and word-similarity scores for a table whose rows follow ``words``."""
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(words, vectors.astype(np.float32))
    analogy, _ = kv.evaluate_word_analogies(datapath("questions-words.txt"), restrict_vocab=30000)
    wordsim = kv.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0]
    simlex = kv.evaluate_word_pairs(datapath("simlex999.txt"))[1][0]
    return {"analogy": float(analogy), "wordsim353": float(wordsim), "simlex999": float(simlex)}


def run_ours(args: argparse.Namespace, spec: str, words: list[str]) -> dict[str, Any]:
    """Train one ``NPROC:MERGE:SYNC_EVERY:THREADS`` configuration and score it."""
    parts = spec.split(":")
    base = load_config("bench").train
    cfg = replace(base, nproc=int(parts[0]), checkpoint_every_s=1e9, epochs=args.epochs)
    if len(parts) > 1 and parts[1]:
        cfg = replace(cfg, sync_average=parts[1])
    if len(parts) > 2 and parts[2]:
        cfg = replace(cfg, sync_every=int(parts[2]))
    if len(parts) > 3 and parts[3]:
        cfg = replace(cfg, threads=int(parts[3]))
    out = storage.join(args.out, "runs", spec.replace(":", "_"))
    storage.remove(out)
    started = time.monotonic()
    manifest = launch_training(args.pairs, args.vocab, out, cfg, on_progress=_print_progress)
    wall = time.monotonic() - started
    metrics = manifest.metrics()
    vectors = np.asarray(manifest.vectors())
    result = {
        "run": spec,
        "nproc": cfg.nproc,
        "sync_average": cfg.sync_average,
        "sync_every": cfg.sync_every,
        "threads": metrics["threads"],
        "pairs": manifest.pairs_trained,
        "train_seconds": manifest.seconds,
        "wall_seconds": wall,
        "pairs_per_s": manifest.pairs_per_s,
        "pairs_per_s_per_rank": metrics["pairs_per_s_per_rank"],
        "cpu_seconds": metrics["cpu_seconds"],
        "pairs_per_cpu_s": metrics["pairs_per_cpu_s"],
        "syncs": metrics["syncs"],
        "bytes_communicated": metrics["bytes_communicated"],
        "bytes_per_sync_per_rank": metrics["bytes_communicated"] / max(1, metrics["syncs"]),
        "final_loss": manifest.final_loss,
        "epoch_loss": metrics["epoch_loss"],
        **score(words, vectors),
    }
    print(json.dumps(result), flush=True)
    return result


def run_gensim(args: argparse.Namespace, pairs_per_token: float) -> dict[str, Any]:
    """gensim 4.4 skip-gram with the reference settings (the bench preset); speed converted to pairs/s."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    sentences = LineSentence(args.gensim_corpus, max_sentence_length=10_000)
    model = Word2Vec(
        sg=1,
        negative=5,
        window=5,
        sample=1e-4,
        min_count=5,
        vector_size=100,
        epochs=args.epochs,
        workers=2,
        seed=1,
    )
    model.build_vocab(sentences)
    started, cpu = time.monotonic(), time.process_time()
    model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    words_per_s = model.corpus_total_words * model.epochs / seconds
    kv = model.wv
    result = {
        "run": "gensim",
        "train_seconds": seconds,
        "words_per_s": words_per_s,
        "pairs_per_s_equivalent": words_per_s * pairs_per_token,
        "cpu_seconds": cpu,
        "pairs_per_cpu_s": model.corpus_total_words * model.epochs * pairs_per_token / cpu,
        **score(list(kv.index_to_key), kv.vectors),
    }
    print(json.dumps(result), flush=True)
    return result


def _print_progress(record: dict[str, Any]) -> None:
    print(
        f"  {record['pairs'] / 1e6:8.1f}M/{record['total_pairs'] / 1e6:.0f}M pairs "
        f"{record['pairs_per_s'] / 1e6:5.2f}M/s loss {record['loss']:.3f} lr {record['lr']:.4f}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``{out}/bench_train.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", nargs="*", default=["1", "2"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gensim-corpus", default=None, help="text8-style corpus; omit to skip gensim")
    args = parser.parse_args(argv)
    pairs, vocab = Pairs.read(args.pairs), Vocab.read(args.vocab)
    pairs_per_token = pairs.total_pairs / pairs.draws / vocab.total_tokens  # per epoch
    words = vocab.table().column("word").to_pylist()
    results = [run_ours(args, spec, words) for spec in args.runs]
    if args.gensim_corpus:
        results.append(run_gensim(args, pairs_per_token))
    report = {"pairs_per_token": pairs_per_token, "vocab_size": len(words), "results": results}
    os.makedirs(storage.get_fs(args.out)[1], exist_ok=True)
    storage.write_json_atomic(storage.join(args.out, "bench_train.json"), report)
    _print_table(report)
    return 0


def _print_table(report: dict[str, Any]) -> None:
    print(f"\npairs per token {report['pairs_per_token']:.3f}, V={report['vocab_size']}")
    print(
        f"{'run':>16} {'Mpairs/s':>9} {'/rank':>7} {'/cpu-s':>7} {'MB/sync':>8} {'loss':>6} "
        f"{'analogy':>8} {'ws353':>6}"
    )
    for r in report["results"]:
        rate = r.get("pairs_per_s", r.get("pairs_per_s_equivalent", 0.0)) / 1e6
        per_rank = r.get("pairs_per_s_per_rank", 0.0) / 1e6
        mb = r.get("bytes_per_sync_per_rank", 0.0) / 1e6
        loss = r.get("final_loss") or float("nan")
        print(
            f"{r['run']:>16} {rate:9.2f} {per_rank:7.2f} {r['pairs_per_cpu_s'] / 1e6:7.2f} {mb:8.1f} {loss:6.3f} "
            f"{r['analogy']:8.3f} {r['wordsim353']:6.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
