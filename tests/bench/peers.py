"""corpus2vec beside what a user would pick instead, on one corpus, one machine, one run.

    python tests/bench/peers.py --corpus PATH --preset bench [--peers corpus2vec,gensim,spark-mllib]
                                [--out DIR] [--scaling] [--fractions 0.25,0.5,1]

Peers: gensim 4.4 ``Word2Vec`` (skip-gram, negative sampling) and Spark MLlib
``Word2Vec`` (the Spark-native choice: skip-gram with hierarchical softmax).
Each system runs in its own process (so peak memory is its own), writes its
vectors in word2vec binary format under ``--out`` (anyone can re-evaluate them),
and all of them are evaluated by the same code (:func:`corpus2vec.model.evaluate.evaluate_vectors`,
rows ordered by corpus frequency). Writes ``peers.json`` and ``peers.md``.

``--scaling`` adds corpus2vec with 1 and 2 training processes, the Spark stages
with 1 and 2 cores, and corpus2vec on growing prefixes of the corpus.

A peer that cannot run here is skipped with the reason in the table.
This is a benchmark, not a test: nothing asserts, it measures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "enwiki-2014-dev.text8style.txt.gz"
SENTENCE_TOKENS = 10_000  # gensim's limit; corpus2vec cuts long lines the same way


# --------------------------------------------------------------------------- corpus prep


def iter_sentences(
    path: Path, max_tokens: int = SENTENCE_TOKENS, limit: int | None = None
) -> Iterator[list[str]]:
    """Whitespace tokens of a (gzipped) text file, cut into sentences of at most ``max_tokens``."""
    opener = gzip.open if path.suffix == ".gz" else open
    emitted = 0
    with opener(path, "rt", encoding="utf-8") as handle:
        carry = ""
        while chunk := handle.read(1 << 22):
            parts = (carry + chunk).split()
            carry = "" if chunk[-1].isspace() else parts.pop()
            yield from _cut(parts, max_tokens, limit, emitted)
            emitted += len(parts)
            if limit is not None and emitted >= limit:
                return
        if carry:
            yield [carry]


def _cut(tokens: list[str], max_tokens: int, limit: int | None, emitted: int) -> Iterator[list[str]]:
    if limit is not None:
        tokens = tokens[: max(0, limit - emitted)]
    for start in range(0, len(tokens), max_tokens):
        yield tokens[start : start + max_tokens]


def prepare_corpus(src: Path, fraction: float, work: Path) -> tuple[Path, int]:
    """A plain-text copy of the first ``fraction`` of ``src``, one sentence of <= 10k tokens per line.

    Every system reads the same file, so none pays for a format another gets for
    free; returns the path and its token count.
    """
    total = sum(len(s) for s in iter_sentences(src)) if fraction < 1 else None
    limit = int(total * fraction) if total else None
    out = work / f"corpus-{fraction:g}.txt"
    tokens = 0
    with open(out, "w", encoding="utf-8") as handle:
        for sentence in iter_sentences(src, limit=limit):
            handle.write(" ".join(sentence) + "\n")
            tokens += len(sentence)
    return out, tokens


# --------------------------------------------------------------------------- peers (child side)


JVM_PEAK_MB = 0.0


def peak_rss_mb() -> float:
    """Largest resident set of this process, its waited-for children (torchrun ranks) or the JVM."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own / 1024, children / 1024, JVM_PEAK_MB), 1)


def stop_spark(spark: Any) -> None:
    """Record the JVM's peak RSS (VmHWM; py4j never waits for it) and stop the session."""
    global JVM_PEAK_MB
    pid = spark.sparkContext._gateway.proc.pid
    with open(f"/proc/{pid}/status") as handle:
        hwm = next(int(ln.split()[1]) for ln in handle if ln.startswith("VmHWM"))
    JVM_PEAK_MB = max(JVM_PEAK_MB, hwm / 1024)
    spark.stop()


def run_gensim(corpus: Path, cfg: Any, out: Path, workers: int, tokens: int) -> dict[str, Any]:
    """gensim skip-gram with negative sampling, the reference settings (the bench preset).

    ``corpus_file`` mode: each worker trains on its share of the file and decays the
    learning rate by its own progress (see scale_quality.gensim_row).
    """
    return _gensim(corpus, cfg, out, workers, streamed=False)


def run_gensim_sentences(corpus: Path, cfg: Any, out: Path, workers: int, tokens: int) -> dict[str, Any]:
    """gensim as most users call it: an iterable of sentences (``LineSentence``), one global schedule.

    The producer thread hands jobs of 10,000 words to the workers and each job's learning
    rate comes from the words done over all workers, so alpha falls linearly from ``alpha``
    to ``min_alpha`` over all epochs whatever the worker count, as in corpus2vec.
    """
    return _gensim(corpus, cfg, out, workers, streamed=True)


def _gensim(corpus: Path, cfg: Any, out: Path, workers: int, *, streamed: bool) -> dict[str, Any]:
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    started = time.monotonic()
    model = Word2Vec(
        sg=1, hs=0, negative=cfg.pairs.negative, window=cfg.pairs.window, sample=cfg.pairs.sample,
        min_count=cfg.vocab.min_count, vector_size=cfg.train.vector_size, alpha=cfg.train.alpha,
        min_alpha=cfg.train.min_alpha, seed=cfg.train.seed, workers=workers, ns_exponent=cfg.pairs.ns_exponent,
    )  # fmt: skip
    # LineSentence cuts lines at 10,000 words, as corpus_file mode does: the same sentences.
    source = {"corpus_iterable": LineSentence(str(corpus))} if streamed else {"corpus_file": str(corpus)}
    model.build_vocab(**source)
    prep = time.monotonic() - started
    started = time.monotonic()
    model.train(
        **source, total_words=model.corpus_total_words,
        total_examples=model.corpus_count, epochs=cfg.train.epochs,
    )  # fmt: skip
    train = time.monotonic() - started
    model.wv.save_word2vec_format(str(out), binary=True)
    words = model.corpus_total_words * cfg.train.epochs
    return {"prepare_s": prep, "train_s": train, "words_per_s": words / train, "vocab_size": len(model.wv)}


def run_spark_mllib(corpus: Path, cfg: Any, out: Path, workers: int, tokens: int) -> dict[str, Any]:
    """Spark MLlib Word2Vec (skip-gram, hierarchical softmax), one partition per core."""
    from pyspark.ml.feature import Word2Vec
    from pyspark.sql import functions as F

    from corpus2vec.jobs.session import get_spark
    from corpus2vec.model.word2vec_format import write_word2vec_binary

    started = time.monotonic()
    spark = get_spark(f"local[{workers}]", app_name="bench-mllib")
    sentences = (
        spark.read.text(str(corpus)).select(F.split("value", " ").alias("tokens")).repartition(workers)
    )
    sentences = sentences.cache()
    sentences.count()
    prep = time.monotonic() - started
    started = time.monotonic()
    model = Word2Vec(
        vectorSize=cfg.train.vector_size, minCount=cfg.vocab.min_count, numPartitions=workers,
        stepSize=cfg.train.alpha, maxIter=cfg.train.epochs, seed=cfg.train.seed, inputCol="tokens",
        windowSize=cfg.pairs.window, maxSentenceLength=SENTENCE_TOKENS,
    ).fit(sentences)  # fmt: skip
    train = time.monotonic() - started
    rows = model.getVectors().collect()
    import numpy as np

    words = [r["word"] for r in rows]
    vectors = np.asarray([r["vector"].toArray() for r in rows], dtype=np.float32)
    with open(out, "wb") as handle:
        write_word2vec_binary(handle, words, vectors)
    stop_spark(spark)
    return {
        "prepare_s": prep,
        "train_s": train,
        "words_per_s": tokens * cfg.train.epochs / train,
        "vocab_size": len(words),
    }


def run_corpus2vec(corpus: Path, cfg: Any, out: Path, workers: int, tokens: int) -> dict[str, Any]:
    """The corpus2vec stages (Spark local[workers], then torchrun), timed one by one."""
    import numpy as np

    from corpus2vec.flows import stages
    from corpus2vec.jobs.session import get_spark
    from corpus2vec.model.contracts import Pairs, Vocab
    from corpus2vec.model.word2vec_format import write_word2vec_binary

    store = str(out.parent / f"store-{out.stem}")
    inputs = stages.fingerprint_inputs([str(corpus)], cfg)
    layout = stages.layout_for(store, inputs, cfg)
    spark = get_spark(f"local[{workers}]", app_name="bench-corpus2vec")
    timings = run_spark_stages(spark, corpus, layout, cfg)
    stop_spark(spark)
    started = time.monotonic()
    manifest = stages.train(
        layout.stage("pairs"), layout.stage("vocab"), layout.stage("train"), cfg, key=layout.keys["train"]
    )
    train = time.monotonic() - started
    pairs, vocab = Pairs.read(layout.stage("pairs")), Vocab.read(layout.stage("vocab"))
    words = vocab.table().column("word").to_pylist()
    vectors = np.asarray(manifest.vectors())
    with open(out, "wb") as handle:
        write_word2vec_binary(handle, words, vectors)
    return {
        **timings,
        "prepare_s": sum(timings.values()),
        "train_s": train,
        "train_inner_s": manifest.seconds,
        "words_per_s": vocab.total_tokens * cfg.train.epochs / train,
        "pairs_per_s": manifest.pairs_per_s,
        # per epoch: the manifest's total covers all draws (one per epoch by default)
        "pairs_per_word": pairs.total_pairs / pairs.draws / max(1, vocab.total_tokens),
        "total_pairs": pairs.total_pairs,
        "draws": pairs.draws,
        "bytes_per_pair": pairs.bytes_per_pair,
        "vocab_size": len(words),
    }


def run_spark_stages(spark: Any, corpus: Path, layout: Any, cfg: Any) -> dict[str, float]:
    """tokenize, count and pairs into ``layout`` (each skipped when finished); seconds per stage."""
    from corpus2vec.flows import stages

    timings: dict[str, float] = {}
    for name, step in (
        ("tokenize", lambda: stages.tokenize(spark, [str(corpus)], layout, cfg)),
        ("count", lambda: stages.count(spark, layout, cfg)),
        ("pairs", lambda: stages.pairs(spark, layout, cfg)),
    ):
        started = time.monotonic()
        step()
        timings[f"{name}_s"] = time.monotonic() - started
    return timings


PEERS = {
    "corpus2vec": run_corpus2vec,
    "gensim": run_gensim,
    "gensim-sentences": run_gensim_sentences,
    "spark-mllib": run_spark_mllib,
}


def child_main(args: argparse.Namespace) -> None:
    """Run one peer in this (fresh) process and print its result as the last stdout line."""
    from corpus2vec.model.config import load_config

    cfg = load_config(args.preset, args.set)
    result = PEERS[args.child](Path(args.corpus), cfg, Path(args.vectors), args.workers, args.tokens)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# --------------------------------------------------------------------------- harness (parent side)


def run_peer(
    peer: str, corpus: Path, tokens: int, out: Path, preset: str, sets: list[str], workers: int
) -> dict:
    """Run a peer in a child process; a failure becomes a skipped row with its reason."""
    vectors = out / f"{peer}-w{workers}-{corpus.stem}.bin"
    cmd = [
        sys.executable, __file__, "--child", peer, "--corpus", str(corpus), "--vectors", str(vectors),
        "--preset", preset, "--workers", str(workers), "--tokens", str(tokens),
        *[x for s in sets for x in ("--set", s)],
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - started
    log = out / f"{peer}-w{workers}-{corpus.stem}.log"
    log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        print(f"  {peer}: skipped ({reason}); log {log}", file=sys.stderr)
        return {"peer": peer, "workers": workers, "skipped": reason}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"peer": peer, "workers": workers, "wall_s": wall, "vectors": str(vectors), **result}


def evaluate_row(row: dict[str, Any], counts: Counter[str], preset: str) -> None:
    """Evaluate a peer's vectors with corpus2vec's evaluation, rows in corpus frequency order."""
    if "skipped" in row:
        return
    from corpus2vec.model.config import load_config
    from corpus2vec.model.evaluate import evaluate_vectors
    from corpus2vec.model.word2vec_format import read_word2vec_binary

    with open(row["vectors"], "rb") as handle:
        words, vectors = read_word2vec_binary(handle)
    order = sorted(range(len(words)), key=lambda i: (-counts.get(words[i], 0), words[i]))
    started = time.monotonic()
    report = evaluate_vectors(vectors[order], [words[i] for i in order], load_config(preset).eval)
    row["eval_s"] = time.monotonic() - started
    row["metrics"] = report["metrics"]
    row["analogy_oov"] = report["analogy"]["questions_words"].get("oov_rate")
    row["similarity_oov"] = {k: v.get("oov_rate") for k, v in report["similarity"].items()}


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """A Markdown table of the rows (skipped peers keep a row saying why)."""
    head = (
        f"### {title}\n\n| system | cores | prepare s | train s | eval s | words/s | pairs/s | peak RSS MB "
        "| analogy | sem | syn | WS353 | SimLex | OOV analogy |\n|" + "---|" * 14 + "\n"
    )
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['label']} | {r['workers']} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        m = r.get("metrics", {})
        lines.append(
            f"| {r['label']} | {r['workers']} | {r['prepare_s']:.1f} | {r['train_s']:.1f} | {r.get('eval_s', 0):.1f} "
            f"| {r['words_per_s']:,.0f} | {_pairs(r)} | {r['peak_rss_mb']:,.0f} | {_pct(m.get('analogy'))} "
            f"| {_pct(m.get('analogy_semantic'))} | {_pct(m.get('analogy_syntactic'))} | {_num(m.get('wordsim353'))} "
            f"| {_num(m.get('simlex999'))} | {_pct(r.get('analogy_oov'))} |"
        )
    return head + "\n".join(lines) + "\n"


def _pairs(row: dict[str, Any]) -> str:
    if row.get("pairs_per_s"):
        return f"{row['pairs_per_s']:,.0f}"
    if row.get("pairs_per_word_ref"):
        return f"{row['words_per_s'] * row['pairs_per_word_ref']:,.0f} (eff.)"
    return "n/a"


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="c2v-bench-", dir=out))
    corpus, tokens = prepare_corpus(Path(args.corpus), 1.0, work)
    with open(corpus, encoding="utf-8") as handle:
        counts = Counter(w for line in handle for w in line.split())
    print(f"corpus: {args.corpus} -> {tokens:,} tokens", file=sys.stderr)
    rows = []
    for peer in args.peers.split(","):
        print(f"running {peer} ...", file=sys.stderr)
        rows.append(
            {**run_peer(peer, corpus, tokens, out, args.preset, args.set, args.workers), "label": peer}
        )
    ratio = next((r.get("pairs_per_word") for r in rows if r.get("pairs_per_word")), None)
    for row in rows:
        row["pairs_per_word_ref"] = ratio
        evaluate_row(row, counts, args.preset)
    report = {"machine": machine(), "corpus": str(args.corpus), "tokens": tokens, "preset": args.preset,
              "sets": args.set, "peers": rows}  # fmt: skip
    text = f"Machine: {report['machine']}. Corpus: `{Path(args.corpus).name}` ({tokens:,} tokens), preset `{args.preset}`.\n\n"
    text += markdown(rows, "Peers")
    if args.scaling:
        report["scaling"] = scaling(args, corpus, tokens, counts, work, out, rows)
        text += "\n" + markdown(report["scaling"], "Scaling")
    (out / "peers.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "peers.md").write_text(text)
    print(text)


def scaling(
    args: argparse.Namespace,
    corpus: Path,
    tokens: int,
    counts: Counter[str],
    work: Path,
    out: Path,
    main_rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """corpus2vec with 1 vs 2 processes/cores, and on growing prefixes of the corpus."""
    rows = []
    for workers in (1, 2):
        # the peers table may already hold this configuration: reuse it rather than rerun
        row = next((r for r in main_rows if r["peer"] == "corpus2vec" and r["workers"] == workers), None)
        if row is None:
            sets = [*args.set, f"nproc={workers}"]
            row = run_peer("corpus2vec", corpus, tokens, out, args.preset, sets, workers)
        rows.append({**row, "label": f"corpus2vec nproc={workers} local[{workers}]"})
    for fraction in [float(f) for f in args.fractions.split(",") if float(f) < 1]:
        part, part_tokens = prepare_corpus(Path(args.corpus), fraction, work)
        row = run_peer("corpus2vec", part, part_tokens, out, args.preset, args.set, args.workers)
        rows.append({**row, "label": f"corpus2vec {fraction:g} of corpus ({part_tokens:,} tokens)"})
    for row in rows:
        evaluate_row(row, counts, args.preset)
    return rows


def machine() -> str:
    """Cores, memory and CPU model of the machine the numbers came from."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with open("/proc/cpuinfo") as handle:
        names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
    model = names[0] if names else platform.machine()
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Python {platform.python_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--preset", default="bench")
    parser.add_argument("--peers", default="corpus2vec,gensim,spark-mllib")
    parser.add_argument("--out", default="bench-out/peers")
    parser.add_argument("--workers", type=int, default=2, help="cores / processes per system")
    parser.add_argument("--set", action="append", default=[], help="config override for every system")
    parser.add_argument(
        "--scaling", action="store_true", help="add the 1-vs-2 process and corpus-size tables"
    )
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--child", choices=sorted(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
