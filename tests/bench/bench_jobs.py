"""Benchmark of the Spark half: tokenize -> count -> pairs on one corpus, with gensim as reference.

Not a test. Run:

    python tests/bench/bench_jobs.py --corpus ../shared/data/enwiki-2014-dev.text8style.txt.gz \\
        --preset bench --out bench-out/jobs

Prints a Markdown table: seconds and tokens/s per stage, pairs written, bytes per
pair, pairs/s per core, peak RSS of the driver (Python), the JVM and the Python
workers (sampled from /proc every 0.2 s), and gensim 4.4 ``Word2Vec.build_vocab``
on the same (decompressed) file as the reference for the count stage.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


class RssSampler(threading.Thread):
    """Peak resident memory of this process and its descendants, by kind (driver, JVM, workers),
    and the CPU seconds they used: on a shared machine, CPU time is the fair measure of cost."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks = {"driver": 0, "jvm": 0, "workers_sum": 0, "worker_max": 0}
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._is_jvm: dict[int, bool] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join()
        return self.peaks

    def reset(self) -> None:
        with self._lock:
            self.peaks = dict.fromkeys(self.peaks, 0)
            self._cpu_start = dict(self._cpu_last)

    def cpu_seconds(self, jvm: bool | None = None) -> float:
        """CPU seconds (user + system) used by this process tree (or only its JVM / non-JVM part)."""
        with self._lock:
            return sum(
                cpu - self._cpu_start.get(pid, 0.0)
                for pid, cpu in self._cpu_last.items()
                if jvm is None or self._is_jvm.get(pid) == jvm
            )

    def sample(self) -> None:
        procs = _process_table()
        me = os.getpid()
        descendants = _descendants(procs, me)
        with self._lock:
            for pid in descendants | {me}:
                if pid in procs:
                    self._cpu_last[pid] = procs[pid][3]
                    self._is_jvm[pid] = "java" in procs[pid][1]
        jvm = sum(procs[p][2] for p in descendants if "java" in procs[p][1])
        workers = [procs[p][2] for p in descendants if "python" in procs[p][1]]
        current = {
            "driver": procs.get(me, (0, "", 0, 0.0))[2],
            "jvm": jvm,
            "workers_sum": sum(workers),
            "worker_max": max(workers, default=0),
        }
        self.peaks = {k: max(v, current[k]) for k, v in self.peaks.items()}


def _process_table() -> dict[int, tuple[int, str, int, float]]:
    """pid -> (parent pid, command name, RSS bytes, CPU seconds) from /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
            table[int(entry)] = (int(fields[1]), name, int(fields[21]) * page, cpu)
        except (OSError, ValueError, IndexError):
            continue
    return table


def _descendants(procs: dict[int, tuple[int, str, int, float]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def gensim_build_vocab(
    corpus: Path, work: Path, min_count: int, workers: int
) -> tuple[float, float, int, int]:
    """Seconds, CPU seconds, vocabulary size and corpus words of gensim's build_vocab(corpus_file=...)."""
    from gensim.models import Word2Vec

    plain = corpus
    if corpus.suffix == ".gz":
        plain = work / corpus.name[:-3]
        if not plain.exists():
            with gzip.open(corpus, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
    model = Word2Vec(vector_size=100, min_count=min_count, workers=workers, sg=1)
    started, cpu = time.time(), time.process_time()
    model.build_vocab(corpus_file=str(plain))
    return time.time() - started, time.process_time() - cpu, len(model.wv), int(model.corpus_total_words)


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the three stages on fresh output folders; one result row per stage."""
    from corpus2vec.jobs.count import run_count
    from corpus2vec.jobs.pairs import run_pairs
    from corpus2vec.jobs.session import get_spark
    from corpus2vec.jobs.tokenize import run_tokenize
    from corpus2vec.model.config import load_config
    from corpus2vec.model.contracts import Tokens

    cfg = load_config(args.preset, args.overrides)
    out = Path(args.out).resolve()
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for stage_dir in args.redo:
        shutil.rmtree(out / stage_dir, ignore_errors=True)
    sampler = RssSampler()
    sampler.start()
    spark = get_spark(args.master, app_name="corpus2vec-bench")
    cores = spark.sparkContext.defaultParallelism
    rows = []
    tokens_uri, vocab_uri, pairs_uri = (str(out / name) for name in ("tokens", "vocab", "pairs"))
    stages = [
        ("tokenize", lambda: run_tokenize(spark, [args.corpus], tokens_uri, cfg.corpus)),
        ("count", lambda: run_count(spark, tokens_uri, vocab_uri, cfg.vocab)),
        ("pairs", lambda: run_pairs(spark, tokens_uri, vocab_uri, pairs_uri, cfg.pairs)),
    ]
    tokens = 0
    for name, stage in stages:
        sampler.sample()
        sampler.reset()
        started = time.time()
        manifest = stage()
        seconds = time.time() - started
        sampler.sample()
        if isinstance(manifest, Tokens):  # count and pairs report the tokens stage's count
            tokens = manifest.tokens
        row = {"stage": name, "seconds": seconds, "cpu": sampler.cpu_seconds(), "tokens": tokens}
        row["cpu_jvm"] = sampler.cpu_seconds(jvm=True)
        rows.append({**row, "manifest": manifest, **sampler.peaks})
    spark.stop()
    sampler.stop()
    for row in rows:
        row["cores"] = cores
    return rows


def report(rows: list[dict[str, Any]], gensim: tuple[float, int, int] | None, corpus: str) -> str:
    """The Markdown table and a few derived facts."""
    lines = [
        f"corpus: `{corpus}`, cores: {rows[0]['cores']}",
        "",
        "| stage | seconds | CPU s (JVM) | tokens/s | tokens per CPU-s | output | peak RSS driver / JVM / workers (sum, max) MiB |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        m = row["manifest"]
        if row["stage"] == "tokenize":
            output = f"{m.documents:,} docs, {m.sentences:,} sentences, {m.tokens:,} tokens"
        elif row["stage"] == "count":
            output = f"V={m.vocab_size:,}, coverage {m.coverage:.4f}, types {m.types:,}"
        else:
            per_core = m.total_pairs / row["seconds"] / row["cores"]
            per_cpu = m.total_pairs / max(row["cpu"], 1e-9)
            output = (
                f"{m.total_pairs:,} pairs ({m.draws} draw(s)), {m.bytes_per_pair:.2f} B/pair, "
                f"{per_core / 1e6:.2f} M pairs/s/core (wall), {per_cpu / 1e6:.2f} M pairs/CPU-s, adjacent same centre "
                f"{m.adjacent_same_center:.5f} (baseline {m.adjacent_same_center_baseline:.5f})"
            )
        memory = (
            f"{mib(row['driver'])} / {mib(row['jvm'])} / {mib(row['workers_sum'])}, {mib(row['worker_max'])}"
        )
        rate, per_cpu = row["tokens"] / row["seconds"], row["tokens"] / max(row["cpu"], 1e-9)
        lines.append(
            f"| {row['stage']} | {row['seconds']:.1f} | {row['cpu']:.1f} ({row['cpu_jvm']:.1f}) | {rate:,.0f} | {per_cpu:,.0f} | {output} | {memory} |"
        )
    if gensim is not None:
        seconds, cpu, vocab, words = gensim
        lines.append(
            f"| gensim build_vocab (reference for count) | {seconds:.1f} | {cpu:.1f} | {words / seconds:,.0f} "
            f"| {words / max(cpu, 1e-9):,.0f} | V={vocab:,} | - |"
        )
    lines += ["", f"load average at the end: {os.getloadavg()[0]:.2f} (machine shared with other work)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--preset", default="bench")
    parser.add_argument("--out", required=True, help="scratch folder (emptied first unless --keep)")
    parser.add_argument("--master", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="reuse finished stages in --out")
    parser.add_argument(
        "--redo", nargs="*", default=[], choices=["tokens", "vocab", "pairs"], help="with --keep: rerun these"
    )
    parser.add_argument("--no-gensim", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args)
    gensim = None
    if not args.no_gensim:
        from corpus2vec.model.config import load_config

        min_count = load_config(args.preset, args.overrides).vocab.min_count
        gensim = gensim_build_vocab(Path(args.corpus), Path(args.out).resolve(), min_count, rows[0]["cores"])
    print(report(rows, gensim, args.corpus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
