"""Demonstrate "stable across retrains": two pipeline runs, the second aligned onto the first. A script, not a test.

    python tests/bench/alignment_demo.py --out /tmp/alignment-demo [--limit-docs 20000] [--split parity]

The dev corpus is cut into two disjoint halves (``parity``: even lines vs odd
lines; ``halves``: the first ``--limit-docs`` lines vs the next ones), each
capped at ``--limit-docs`` articles. Both halves go through the real
``corpus2vec run`` (Spark, torchrun, evaluation, publish) under the same name,
so the second publish finds the first as its parent and the registry rotates
it onto the parent by orthogonal Procrustes (model/align.py). The script then
reads the second version's ``drift.json`` and reports what a downstream team
would care about:

* mean cosine of each shared word with its old vector, aligned vs unaligned
  (unaligned is what comparing raw coordinates across retrains would give);
* neighbour overlap@10 of the 1,000 most frequent shared words (rotation-free:
  how much the *geometry* changed, which no rotation can fix);
* words added and removed.

Results go to ``{out}/alignment.md`` (a Markdown table), ``{out}/alignment.json``
and stdout. The default (20,000 articles per half, the ``tiny`` preset with
``min_count=5``) takes several minutes on 2 cores.

The regression check of the quality gate is relaxed by default
(``max_regression=1.0``): the two halves are different corpora, so a drop in
WordSim353 between them is expected and is not what this demo measures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEV_CORPUS = ROOT.parent / "shared" / "data" / "enwiki-2014-dev.jsonl.gz"
DEFAULT_SETS = ("min_count=5", "max_regression=1.0")


def split_corpus(src: Path, dest: Path, limit: int, mode: str) -> tuple[Path, Path]:
    """Write two disjoint ``.jsonl.gz`` halves of ``src`` with at most ``limit`` articles each.

    Streams the input, so the 23M-word dev corpus is never held in memory.
    ``parity`` mixes topics evenly (the dump is not shuffled); ``halves`` keeps
    the dump order, for a retrain on genuinely different articles.
    """
    if mode not in ("parity", "halves"):
        raise ValueError(f"--split must be 'parity' or 'halves', got {mode!r}")
    dest.mkdir(parents=True, exist_ok=True)
    paths = (dest / "half-a.jsonl.gz", dest / "half-b.jsonl.gz")
    written = [0, 0]
    with (
        gzip.open(src, "rt", encoding="utf-8") as reader,
        gzip.open(paths[0], "wt", encoding="utf-8") as out_a,
        gzip.open(paths[1], "wt", encoding="utf-8") as out_b,
    ):
        outs = (out_a, out_b)
        for i, line in enumerate(reader):
            side = i % 2 if mode == "parity" else int(i >= limit)
            if written[side] < limit:
                outs[side].write(line)
                written[side] += 1
            if min(written) >= limit:
                break
    if min(written) == 0:
        raise ValueError(f"{src} has too few lines to split in two; pass another --corpus")
    print(f"split {src.name}: {written[0]} + {written[1]} articles ({mode})", file=sys.stderr)
    return paths


def run_pipeline(
    corpus: Path, store: str, name: str, preset: str, sets: list[str], env: dict[str, str]
) -> dict:
    """One ``corpus2vec run --json`` as a user would type it; returns its summary (version, uri, ...)."""
    args = ["run", "--corpus", str(corpus), "--store", store, "--name", name, "--preset", preset, "--json"]
    for item in sets:
        args += ["--set", item]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "corpus2vec.flows.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"corpus2vec {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    summary = json.loads(proc.stdout)
    print(f"published {name}@{summary['version']} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return dict(summary)


def read_drift(summary: dict[str, Any]) -> dict[str, Any]:
    """The ``drift.json`` the registry wrote into the second version (local stores only)."""
    path = Path(summary["uri"].removeprefix("file://")) / "drift.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: was the second run published under the same name?")
    return dict(json.loads(path.read_text()))


def headline(drift: dict[str, Any]) -> dict[str, Any]:
    """The numbers the docs quote, pulled out of a drift report."""
    aligned = drift.get("aligned_cosine") or {}
    return {
        "aligned": drift["aligned"],
        "shared_words": drift["shared_words"],
        "aligned_mean_cosine": aligned.get("mean"),
        "aligned_median_cosine": aligned.get("p50"),
        "unaligned_mean_cosine": drift.get("unaligned_mean_cosine"),
        "neighbour_overlap_at_k": drift["neighbour_overlap"]["mean"],
        "neighbour_overlap_k": drift["neighbour_overlap"]["k"],
        "neighbour_overlap_words": drift["neighbour_overlap"]["words"],
        "words_added": drift["added"]["count"],
        "words_removed": drift["removed"]["count"],
    }


def render_markdown(result: dict[str, Any]) -> str:
    """A Markdown report: settings, the headline table and the most frequent words' cosines."""
    head, runs = result["headline"], result["runs"]

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "# Alignment across retrains",
        "",
        f"Corpus: `{result['corpus']}`, split `{result['split']}`, {result['limit_docs']} articles per half; "
        f"preset `{result['preset']}` with {', '.join(f'`{s}`' for s in result['sets'])}"
        + (
            f"; second run also {', '.join(f'`{s}`' for s in result['second_sets'])}"
            if result["second_sets"]
            else ""
        )
        + ".",
        "",
        "| version | vocabulary | seconds |",
        "| --- | ---: | ---: |",
        *(f"| `{r['name']}@{r['version']}` | {r['vocab_size']} | {r['seconds']} |" for r in runs),
        "",
        "| measure (second version vs its parent) | value |",
        "| --- | ---: |",
        f"| shared words | {head['shared_words']} |",
        f"| mean shared-word cosine, aligned (Procrustes) | {num(head['aligned_mean_cosine'])} |",
        f"| median shared-word cosine, aligned | {num(head['aligned_median_cosine'])} |",
        f"| mean shared-word cosine, unaligned (raw coordinates) | {num(head['unaligned_mean_cosine'])} |",
        f"| neighbour overlap@{head['neighbour_overlap_k']} "
        f"({head['neighbour_overlap_words']} most frequent shared words) | {num(head['neighbour_overlap_at_k'])} |",
        f"| words added | {head['words_added']} |",
        f"| words removed | {head['words_removed']} |",
        "",
        "Aligned cosine of the most frequent shared words: "
        + ", ".join(f"{w} {c:.2f}" for w, c in result["drift"].get("most_frequent", [])[:20]),
        "",
    ]
    return "\n".join(lines)


def vocab_size(summary: dict[str, Any]) -> int | None:
    """Vocabulary size from the published manifest (the run summary does not carry it)."""
    manifest = Path(summary["uri"].removeprefix("file://")) / "manifest.json"
    return json.loads(manifest.read_text()).get("vocab_size") if manifest.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEV_CORPUS, help="JSON-lines corpus to split in two")
    parser.add_argument("--out", type=Path, required=True, help="folder for alignment.md/.json and scratch")
    parser.add_argument("--limit-docs", type=int, default=20_000, help="articles per half")
    parser.add_argument("--split", default="parity", choices=("parity", "halves"))
    parser.add_argument("--store", help="store root (default: a fresh folder under --out)")
    parser.add_argument("--name", default="alignment-demo")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument(
        "--set", dest="sets", action="append", help=f"setting override (default: {' '.join(DEFAULT_SETS)})"
    )
    parser.add_argument(
        "--second-set",
        dest="second_sets",
        action="append",
        default=[],
        help="extra override for the second run only, e.g. seed=2 to retrain with another seed",
    )
    args = parser.parse_args(argv)
    sets = list(args.sets or DEFAULT_SETS)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.store or str(Path(tempfile.mkdtemp(prefix="store-", dir=args.out)))
    env = {**os.environ, "PREFECT_HOME": str(args.out / "prefect"), "C2V_CACHE": str(args.out / "cache")}
    env.pop("PREFECT_API_URL", None)  # the embedded default: a temporary local Prefect server
    # Prefect waits 20 s for that server by default, which a busy 2-core machine can exceed.
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    halves = split_corpus(args.corpus, args.out / "corpus", args.limit_docs, args.split)
    summaries = [
        run_pipeline(halves[0], store, args.name, args.preset, sets, env),
        run_pipeline(halves[1], store, args.name, args.preset, sets + args.second_sets, env),
    ]
    if summaries[1].get("parent") != summaries[0]["version"]:
        raise RuntimeError(
            f"the second version's parent is {summaries[1].get('parent')}, not {summaries[0]['version']}: "
            f"another publish to {store}/embeddings/{args.name} interfered; use a fresh --store"
        )
    drift = read_drift(summaries[1])
    result = {
        "corpus": str(args.corpus),
        "split": args.split,
        "limit_docs": args.limit_docs,
        "preset": args.preset,
        "sets": sets,
        "second_sets": args.second_sets,
        "runs": [
            {
                "name": s["name"],
                "version": s["version"],
                "vocab_size": vocab_size(s),
                "seconds": s.get("seconds", {}).get("total"),
                "metrics": s.get("metrics"),
            }
            for s in summaries
        ],
        "headline": headline(drift),
        "drift": drift,
    }
    (args.out / "alignment.json").write_text(json.dumps(result, indent=2))
    markdown = render_markdown(result)
    (args.out / "alignment.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
