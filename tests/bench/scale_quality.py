"""Quality at every scale users run: world size, GPU batch size and corpus size, beside gensim.

    python tests/bench/scale_quality.py --out bench-out/scale                  # the whole matrix
    python tests/bench/scale_quality.py --out bench-out/scale --sizes 2M       # one corpus size
    python tests/bench/scale_quality.py --out bench-out/scale --sizes 2M \\
        --runs "nproc=4" "nproc=4,sync_average=sum" "kernel=torch,batch_size=262144,nproc=1"

For each corpus size (a prefix of the dev corpus: ``2M``, ``10M`` words, or ``all``)
the Spark stages run once (tokenize, count, pairs with the bench preset; kept under
``--out/stores`` so a rerun reuses them) and then every training run of the matrix
trains on the *same* pair shards, so the rows compare quality at equal pairs:

* world size 1, 2, 4, 8 (``--worlds``; 1, 2, 8 on ``all`` with ``--full-worlds``), gloo
  ranks on CPU with the default strategy. Oversubscribing 2 cores is fine: quality at
  equal pairs is what counts; pairs/s per rank is reported as measured.
* the batched GPU kernel (``kernel=torch``) at batch 4k, 64k, 256k, 1M (``--batches``,
  per corpus size), on CPU with one process: the same code and numerics as on CUDA.
* gensim 4.4 skip-gram on the same prefix with the same settings, read two ways
  (``--gensim-modes``): ``corpus_file`` with 2 workers and with 1 (that mode decays the
  learning rate per worker, see :func:`gensim_row`, so the two differ in schedule, not
  only in speed), and ``sentences``, the same lines as an iterable (``LineSentence``,
  how most users call gensim; one schedule over all workers). ``--gensim-workers``
  applies to both modes. Its speed is converted to pairs/s with the pairs-per-word
  ratio of our shards. "Best gensim" below is the gensim row with the higher mean analogy.

With ``--seeds 1,2,3`` every row runs once per training seed (the shards stay the
same: only initialisation, read order and Hogwild interleaving change) and a second
table gives each run's mean and range over the seeds, its difference from one process
and from the best gensim row of the same corpus size: two seeds of one setting differ
by ~0.5 analogy points on the 2M prefix, as much as some effects measured.

Every row is scored by the same code (:func:`corpus2vec.model.evaluate.evaluate_vectors`:
analogy with restrict_vocab 30000, WordSim353, SimLex-999, OOV rates). Writes
``scale_quality.json`` and ``scale_quality.md`` under ``--out``; prints the table.
``--combine A/scale_quality.json B/scale_quality.json --out C`` merges the rows of runs made
apart (other seeds, other days) into one report, so a mean over 6 seeds need not run in one go.
With ``--pool-draws`` the reports are separate pair draws (each ``--out`` is its own draw), which
may reuse seeds: every measured row counts once, wherever it was copied, and a run's mean and
band pool its rows over all draws (seed and draw variation together). With ``--tag-sets`` the
reports may differ in configuration (e.g. ``input_word=centre`` against ``input_word=context``):
each corpus2vec row's run is labelled with the settings its report's resolved configuration holds
where the reports differ, so the variants compare side by side against one pool of gensim rows.
Reports are compared by the resolved configuration they record (the preset with its ``--set``
overrides), so a report of an older default and one that named today's default with ``--set``
are told apart or pooled by what they trained, not by how the command line spelled it.
This is a benchmark, not a test: nothing asserts, it measures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402  (sibling benchmark: corpus prep, gensim child, evaluation)

SIZES = {"2M": 2_000_000, "10M": 10_000_000, "all": None}


def prepare_prefix(src: Path, size: str, work: Path) -> tuple[Path, int]:
    """The first ``size`` words of ``src`` as plain text, one sentence (<= 10k tokens) per line."""
    out = work / f"corpus-{size}.txt"
    if out.exists() and (work / f"corpus-{size}.tokens").exists():
        return out, int((work / f"corpus-{size}.tokens").read_text())
    tokens = 0
    with open(out, "w", encoding="utf-8") as handle:
        for sentence in peers.iter_sentences(src, limit=SIZES[size]):
            handle.write(" ".join(sentence) + "\n")
            tokens += len(sentence)
    (work / f"corpus-{size}.tokens").write_text(str(tokens))
    return out, tokens


def prepare_pairs(corpus: Path, cfg: Any, store: Path) -> tuple[Any, dict[str, Any]]:
    """Run (or reuse) tokenize, count and pairs on ``corpus``; returns the layout and timings."""
    from corpus2vec.flows import stages
    from corpus2vec.jobs.session import get_spark
    from corpus2vec.model.contracts import Pairs

    inputs = stages.fingerprint_inputs([str(corpus)], cfg)
    # each stage is keyed by what shapes it, so a training or evaluation change reuses the shards
    layout = stages.layout_for(str(store), inputs, cfg)
    if Pairs.finished(layout.stage("pairs")) is not None:
        return layout, {"reused": True}
    spark = get_spark("local[2]", app_name="bench-scale")
    try:
        timings = peers.run_spark_stages(spark, corpus, layout, cfg)
    finally:
        spark.stop()
    return layout, {k: round(v, 1) for k, v in timings.items()}


def load_bench(sets: tuple[str, ...] = ()) -> Any:
    """The bench preset with ``--set`` overrides (shared by every row)."""
    from corpus2vec.model.config import load_config

    return load_config("bench", list(sets))


def parse_run(spec: str) -> dict[str, Any]:
    """``"nproc=4,sync_every=250000"`` -> TrainConfig overrides (values parsed as JSON when they parse)."""
    changes: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        try:
            changes[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key.strip()] = raw.strip()
    return changes


def train_row(
    layout: Any, cfg: Any, spec: str, size: str, out: Path, seed: int | None = None
) -> dict[str, Any]:
    """Train one row on the prepared shards (with training seed ``seed`` if given), evaluate it."""
    import numpy as np

    from corpus2vec.model import storage
    from corpus2vec.model.contracts import Vocab
    from corpus2vec.model.evaluate import evaluate_vectors
    from corpus2vec.model.launch import launch_training

    seeded = {} if seed is None else {"seed": seed}
    train_cfg = replace(cfg.train, checkpoint_every_s=1e9, **{**parse_run(spec), **seeded})
    name = spec.replace(",", "_").replace("=", "-") or "default"
    target = out / "runs" / size / (name if seed is None else f"{name}_seed-{seed}")
    storage.remove(str(target))
    started = time.monotonic()
    manifest = launch_training(layout.stage("pairs"), layout.stage("vocab"), str(target), train_cfg)
    wall = time.monotonic() - started
    metrics = manifest.metrics()
    words = Vocab.read(layout.stage("vocab")).table().column("word").to_pylist()
    vectors = np.asarray(manifest.vectors())
    report = evaluate_vectors(vectors, words, cfg.eval)
    world = int(metrics["world_size"])
    per_rank_pairs = max(1, metrics["pairs"] / world)
    row = {
        "size": size,
        "system": "corpus2vec",
        "run": spec or "default",
        "seed": seed,
        "world_size": world,
        "kernel": metrics["kernel"],
        "batch_size": train_cfg.batch_size if metrics["kernel"] == "torch" else None,
        "strategy": metrics.get("strategy", metrics.get("sync_average")),
        "threads": metrics["threads"],
        "pairs": metrics["pairs"],
        "train_s": manifest.seconds,
        "wall_s": round(wall, 1),
        "pairs_per_s": metrics["pairs_per_s"],
        "pairs_per_s_per_rank": metrics["pairs_per_s_per_rank"],
        "pairs_per_cpu_s": metrics["pairs_per_cpu_s"],
        "syncs": metrics["syncs"],
        "sync_share": metrics.get("sync_share"),  # rank 0's wall time in syncs, waits included
        "sync_share_max": metrics.get("sync_share_max"),  # the rank that spent the most
        "read_wait_share": metrics.get("read_wait_share"),  # rank 0 waiting for the reader
        "bytes_per_pair_per_rank": metrics["bytes_communicated"] / per_rank_pairs,
        "epoch_loss": metrics["epoch_loss"],
        "finite": bool(np.isfinite(vectors).all()),
    }
    return {**row, **_quality(report)}


def _quality(report: dict[str, Any]) -> dict[str, Any]:
    m = report["metrics"]
    return {
        "analogy": m.get("analogy"),
        "wordsim353": m.get("wordsim353"),
        "simlex999": m.get("simlex999"),
        "analogy_oov": report["analogy"]["questions_words"].get("oov_rate"),
        "wordsim_oov": report["similarity"]["wordsim353"].get("oov_rate"),
        "simlex_oov": report["similarity"]["simlex999"].get("oov_rate"),
    }


def gensim_row(
    corpus: Path,
    tokens: int,
    size: str,
    out: Path,
    sets: tuple[str, ...],
    ratio: float,
    workers: int,
    seed: int | None = None,
    mode: str = "corpus_file",
) -> dict:
    """gensim 4.4 on the same prefix in a child process, scored by the same evaluation.

    gensim's ``corpus_file`` mode gives each worker its share of the file and decays
    the learning rate by that worker's own progress (word2vec_corpusfile.pyx:
    ``get_next_alpha`` from the worker's ``total_sentences`` over the whole corpus's
    count), so with 2 workers alpha only falls half-way within each epoch: a higher
    effective learning rate than the nominal linear decay. One worker follows it.
    ``mode="sentences"`` feeds the same lines as an iterable (``LineSentence``): gensim's
    producer then decays alpha over the words done by all workers, the nominal schedule.
    """
    with open(corpus, encoding="utf-8") as handle:
        counts = Counter(w for line in handle for w in line.split())
    extra = [] if seed is None else [f"train.seed={seed}"]
    peer = "gensim" if mode == "corpus_file" else f"gensim-{mode}"
    row = peers.run_peer(peer, corpus, tokens, out, "bench", [*sets, *extra], workers)
    label = f"gensim 4.4, {workers} worker{'s' if workers > 1 else ''}" + (
        "" if peer == "gensim" else f", {mode}"
    )
    if "skipped" in row:
        return {"size": size, "system": "gensim", "run": label, "seed": seed, "skipped": row["skipped"]}
    peers.evaluate_row(row, counts, "bench")
    m = row["metrics"]
    return {
        "size": size,
        "system": "gensim",
        "run": label,
        "seed": seed,
        "world_size": 1,
        "threads": workers,
        "train_s": row["train_s"],
        "pairs_per_s": row["words_per_s"] * ratio,  # effective: our pairs per word times its words/s
        "analogy": m.get("analogy"),
        "wordsim353": m.get("wordsim353"),
        "simlex999": m.get("simlex999"),
        "analogy_oov": row.get("analogy_oov"),
        "wordsim_oov": row["similarity_oov"].get("wordsim353"),
        "simlex_oov": row["similarity_oov"].get("simlex999"),
    }


def matrix(args: argparse.Namespace, size: str) -> list[str]:
    """The run specs of one corpus size: ``--runs`` if given, else world sizes and GPU batches."""
    if args.runs:
        return list(args.runs)
    worlds = args.full_worlds if size == "all" else args.worlds
    specs = [f"nproc={w}" for w in worlds.split(",") if w]
    batches = dict(item.split("=", 1) for item in args.batches.split(";") if "=" in item)
    # a sync point cuts a batch, so one process syncs no more often than once per batch
    sizes = [int(b) for b in batches.get(size, "").split(",") if b]
    specs += [
        f"kernel=torch,nproc=1,batch_size={b}" + (f",sync_every={b}" if b > 1_000_000 else "") for b in sizes
    ]
    return specs


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """One Markdown table of all rows, grouped by corpus size."""
    head = (
        f"### {title}\n\n| corpus | system / run | ranks | kernel (batch) | analogy | WS353 | SimLex "
        "| OOV a/ws/sl | pairs/s | pairs/s/rank | syncs | time in syncs (rank 0, max) | B/pair/rank "
        "| loss first→last |\n|" + "---|" * 14 + "\n"
    )
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['size']} | {r['run']} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        kernel = r.get("kernel") or "-"
        if r.get("batch_size"):
            kernel += f" ({r['batch_size']:,})"
        loss = r.get("epoch_loss") or []
        lines.append(
            f"| {r['size']} | {_label(r)} | {r.get('world_size', '-') if r['system'] != 'gensim' else '-'} | {kernel} "
            f"| {_pct(r.get('analogy'))} | {_num(r.get('wordsim353'))} | {_num(r.get('simlex999'))} "
            f"| {_pct(r.get('analogy_oov'), 0)}/{_pct(r.get('wordsim_oov'), 0)}/{_pct(r.get('simlex_oov'), 0)} "
            f"| {_big(r.get('pairs_per_s'))} | {_big(r.get('pairs_per_s_per_rank'))} | {r.get('syncs', '-')} "
            f"| {_sync_share(r)} | {_num(r.get('bytes_per_pair_per_rank'), 1)} "
            f"| {f'{loss[0]:.3f}→{loss[-1]:.3f}' if loss else '-'} |"
        )
    return head + "\n".join(lines) + "\n"


_pct, _num = peers._pct, peers._num  # one formatting for both benchmark tables


def _sync_share(row: dict[str, Any]) -> str:
    """Rank 0's share of wall time in syncs, and the largest rank's where the report has it."""
    share, most = _pct(row.get("sync_share"), 0), row.get("sync_share_max")
    return share if most is None or row.get("world_size", 1) < 2 else f"{share}, {_pct(most, 0)}"


def _label(row: dict[str, Any]) -> str:
    seed = f" (seed {row['seed']})" if row.get("seed") is not None else ""
    draw = f" [draw {row['draw']}]" if row.get("draw") is not None else ""
    return _run_label(row) + seed + draw


def _run_label(row: dict[str, Any]) -> str:
    return row["run"] if row["system"] == "gensim" else f"corpus2vec {row['run']}"


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (corpus size, run) over its seeds: mean and range, against one process and gensim.

    ``vs_1`` compares with the mean of the ``nproc=1`` numba run of the same size (analogy in
    points and relative, WordSim353 absolute); ``vs_gensim`` with the gensim run whose mean
    analogy is highest at that size, the reference the issue names.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if "skipped" not in r and r.get("analogy") is not None:
            groups.setdefault((r["size"], _run_label(r)), []).append(r)
    out = []
    for (size, label), members in groups.items():
        stats: dict[str, Any] = {"size": size, "run": label, "seeds": len(members)}
        for key in ("analogy", "wordsim353", "simlex999", "pairs_per_s"):
            values = [m[key] for m in members if m.get(key) is not None and m[key] == m[key]]
            stats[key] = sum(values) / len(values) if values else None
            stats[f"{key}_range"] = (min(values), max(values)) if values else None
            stats[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        if len({m.get("machine") for m in members}) > 1:  # --combine of other machines: speeds do not pool
            stats["pairs_per_s"] = stats["pairs_per_s_range"] = stats["pairs_per_s_sd"] = None
        stats["system"] = members[0]["system"]
        out.append(stats)
    for s in out:
        same = [g for g in out if g["size"] == s["size"]]
        one = next((g for g in same if g["run"] == "corpus2vec nproc=1"), None)
        gensim = max(
            (g for g in same if g["system"] == "gensim" and g["analogy"] is not None),
            key=lambda g: g["analogy"],
            default=None,
        )
        for name, ref in (("vs_1", one), ("vs_gensim", gensim)):
            if ref is None or ref is s or s["system"] == "gensim" or None in (s["analogy"], s["wordsim353"]):
                continue
            s[name] = {
                "ref": ref["run"],
                "analogy_points": 100 * (s["analogy"] - ref["analogy"]),
                "analogy_rel": s["analogy"] / ref["analogy"] - 1 if ref["analogy"] else None,
                "wordsim353": s["wordsim353"] - (ref["wordsim353"] or 0.0),
                "simlex999": None
                if None in (s["simlex999"], ref["simlex999"])
                else s["simlex999"] - ref["simlex999"],
                "analogy_points_2se": _two_se(s, ref, "analogy", 100.0),
                "wordsim353_2se": _two_se(s, ref, "wordsim353"),
                "simlex999_2se": _two_se(s, ref, "simlex999"),
            }
    return out


def _two_se(a: dict[str, Any], b: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
    """Two standard errors of ``mean(a) - mean(b)`` over seeds (Welch), or None under 2 seeds each.

    Why: one seed of one setting moves WordSim353 by ~0.01 and analogy by ~0.5 points, as
    much as the differences the tables are read for; a difference inside this band is not
    evidence either way.
    """
    sd_a, sd_b = a.get(f"{key}_sd"), b.get(f"{key}_sd")
    if sd_a is None or sd_b is None:
        return None
    return 2 * scale * math.sqrt(sd_a**2 / a["seeds"] + sd_b**2 / b["seeds"])


def summary_markdown(stats: list[dict[str, Any]]) -> str:
    """The mean-over-seeds table (only when some run has more than one seed)."""
    if not any(s["seeds"] > 1 for s in stats):
        return ""

    def mean_range(s: dict[str, Any], key: str, fmt: Any) -> str:
        lo_hi = s.get(f"{key}_range")
        if s.get(key) is None:
            return "-"
        return fmt(s[key]) + (f" ({fmt(lo_hi[0])}-{fmt(lo_hi[1])})" if s["seeds"] > 1 else "")

    def delta(s: dict[str, Any], name: str) -> str:
        d = s.get(name)
        if not d:
            return "-"
        rel = f", {100 * d['analogy_rel']:+.0f}%" if d["analogy_rel"] is not None else ""

        def band(key: str, digits: int) -> str:
            return f" ±{d[key]:.{digits}f}" if d.get(key) is not None else ""

        simlex = "" if d.get("simlex999") is None else f" / {d['simlex999']:+.3f}{band('simlex999_2se', 3)}"
        return (
            f"{d['analogy_points']:+.1f}{band('analogy_points_2se', 1)} pt{rel}"
            f" / {d['wordsim353']:+.3f}{band('wordsim353_2se', 3)}{simlex}"
        )

    lines = [
        "### Mean over seeds (analogy points and relative / WS353 / SimLex against one process and the best gensim)\n",
        "A difference's ± is two standard errors over seeds (Welch; shown where both runs have 2+ seeds):"
        " a difference inside it is seed noise, not an effect (from 2 seeds the band itself is rough).\n",
        "| corpus | system / run | seeds | analogy | WS353 | SimLex | vs 1 process | vs best gensim | pairs/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        lines.append(
            f"| {s['size']} | {s['run']} | {s['seeds']} | {mean_range(s, 'analogy', _pct)} "
            f"| {mean_range(s, 'wordsim353', _num)} | {mean_range(s, 'simlex999', _num)} "
            f"| {delta(s, 'vs_1')} | {delta(s, 'vs_gensim')} | {_big(s.get('pairs_per_s'))} |"
        )
    return "\n".join(lines) + "\n"


def _big(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}M"


# settings the gensim rows are trained with (peers.run_gensim*): a --set of one changes gensim too
GENSIM_SETTINGS = frozenset(
    {
        "negative",
        "window",
        "sample",
        "ns_exponent",
        "min_count",
        "vector_size",
        "alpha",
        "min_alpha",
        "seed",
        "epochs",
    }
)


def set_tag(sets: list[str]) -> str:
    """`` [k=v, ...]``: the label a report's settings add to its rows' run (``--tag-sets``)."""
    return f" [{', '.join(sets)}]" if sets else ""


def touches_gensim(sets: list[str]) -> bool:
    """Whether any of these settings (``section.name=v`` or ``name=v``) is one gensim reads."""
    return any(item.split("=", 1)[0].rsplit(".", 1)[-1] in GENSIM_SETTINGS for item in sets)


def resolved_settings(report: dict[str, Any]) -> dict[str, Any] | None:
    """``{"pairs.window": 5, ...}``: the configuration a report trained with, or None if it predates
    recording it. The preset's name and settings that change no result (``NOT_IN_KEYS``) are left
    out: two reports that trained the same thing must compare equal."""
    from corpus2vec.model.config import NOT_IN_KEYS

    config = report.get("config")
    if not isinstance(config, dict):
        return None
    return {
        f"{section}.{name}": value
        for section, values in sorted(config.items())
        if isinstance(values, dict)
        for name, value in sorted(values.items())
        if name not in NOT_IN_KEYS.get(section, ())
    }


def _setting(name: str, value: Any) -> str:
    return f"{name}={value if isinstance(value, str) else json.dumps(value)}"


def report_labels(reports: list[dict[str, Any]]) -> tuple[list[list[str]], str]:
    """Each report's settings where the reports differ, and what they were compared by.

    With every report's resolved configuration recorded, a report's label is its value of each
    setting that is not the same in all of them (none when they trained alike). A report from
    before configurations were recorded leaves only the ``--set`` overrides to compare; then
    every report is labelled with its own, as it was spelled.
    """
    settings = [s for s in map(resolved_settings, reports) if s is not None]
    if len(settings) < len(reports):
        return [list(r.get("sets") or []) for r in reports], "--set overrides"
    names = sorted({name for s in settings for name in s})
    varying = [n for n in names if len({json.dumps(s.get(n)) for s in settings}) > 1]
    return [[_setting(n, s.get(n)) for n in varying] for s in settings], "resolved configuration"


def combine(
    paths: list[str], pool_draws: bool = False, tag_sets: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str], dict[str, Any] | None]:
    """Rows of several reports as one (runs of other seeds, machines or sessions); nothing trains.

    A (size, run, seed) found in two reports is refused rather than one silently winning, and
    so are reports that trained with different configurations (:func:`report_labels`): their
    rows do not measure the same thing. Each report's shards are its own draw, so its ``prepared`` entry is kept per file.
    Quality pools across machines, speed does not: a run whose seeds come from reports made on
    different machines shows no mean pairs/s.

    ``pool_draws``: the reports are different pair draws of one corpus, which may reuse seeds
    (seed 3 of two draws is two measurements). Rows are told apart by their draw (the report's
    place in ``paths``), and a row whose measured scores repeat one already taken is a copy
    (reports carry rows over with ``--append`` and ``--combine``) and counts once. Why: a gap
    of 0.01 WordSim353 needs more runs than one draw holds, and counting a copied row twice
    would shrink the band it is judged by.

    ``tag_sets``: reports of different configurations are combined, each corpus2vec row's run
    labelled with its report's settings where the reports differ
    (``nproc=1 [pairs.input_word=context]``), so variants stand side by side against the same
    gensim rows. gensim rows pool across the reports unless a differing setting is one gensim
    reads (:data:`GENSIM_SETTINGS`); then they are labelled too.

    Returns the rows, each report's ``prepared`` entry, the ``--set`` overrides the combined
    report states, and the configuration all the reports share (None if they differ, or if one
    predates recording it).
    """
    rows: list[dict[str, Any]] = []
    prep: dict[str, Any] = {}
    seen: dict[tuple[Any, ...], str] = {}
    reports = [json.loads(Path(path).read_text()) for path in paths]
    labels, compared_by = report_labels(reports)
    if not tag_sets:
        for path, label in zip(paths[1:], labels[1:], strict=True):
            if label != labels[0]:
                raise SystemExit(
                    f"--combine: {path} was run with {label}, {paths[0]} with {labels[0]}"
                    f" ({compared_by}; pass --tag-sets to compare them as variants)"
                )
    for draw, (path, report, label) in enumerate(zip(paths, reports, labels, strict=True), start=1):
        for row in report["rows"]:
            if tag_sets and (row.get("system") != "gensim" or touches_gensim(label)):
                row = {**row, "run": row["run"] + set_tag(label)}
            key = (row["size"], row["run"], row.get("seed"))
            if pool_draws:
                key += tuple(row.get(m) for m in ("analogy", "wordsim353", "simlex999", "pairs"))
                if key in seen:
                    print(
                        f"--pool-draws: {key[:3]} of {path} repeats {seen[key]}'s; counted once",
                        file=sys.stderr,
                    )
                    continue
            elif key in seen:
                raise SystemExit(
                    f"--combine: {key} is in both {seen[key]} and {path}; rerun one with other seeds"
                    " (or pass --pool-draws if the reports are separate pair draws)"
                )
            seen[key] = path
            # a row of an earlier --combine keeps its own source, machine and draw
            merged = {"source": path, "machine": report.get("machine"), **row}
            if pool_draws:
                merged.setdefault("draw", draw)
            _put(rows, merged)
        prep[path] = report.get("prepared", {})
    # the first report's configuration stands for all if they trained alike (NOT_IN_KEYS aside)
    alike = compared_by == "resolved configuration" and not any(labels)
    config = reports[0].get("config") if alike else None
    return rows, prep, [] if tag_sets else list(reports[0].get("sets") or []), config


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.combine:
        out.mkdir(parents=True, exist_ok=True)
        rows, prep, args.set, config = combine(
            args.combine, pool_draws=args.pool_draws, tag_sets=args.tag_sets
        )
        machines = sorted({str(r.get("machine")) for r in rows if r.get("machine")})
        machine = "; ".join(machines) or "(as in each source report)"
        print(_report(rows, prep, out, args, config, machine=machine))
        return
    (out / "stores").mkdir(parents=True, exist_ok=True)
    cfg = load_bench(tuple(args.set))
    config = cfg.to_dict()
    rows: list[dict[str, Any]] = []
    prep: dict[str, Any] = {}
    previous = out / "scale_quality.json"
    if (
        args.append and previous.exists()
    ):  # keep earlier rows; a rerun of the same (size, run) replaces its row
        old = json.loads(previous.read_text())
        rows, prep = old["rows"], old["prepared"]
    for size in args.sizes.split(","):
        corpus, tokens = prepare_prefix(Path(args.corpus), size, out / "stores")
        layout, timings = prepare_pairs(corpus, cfg, out / "stores" / size)
        from corpus2vec.model.contracts import Pairs

        pairs = Pairs.read(layout.stage("pairs"))
        ratio = pairs.total_pairs / pairs.draws / tokens
        prep[size] = {
            "tokens": tokens,
            "pairs_per_epoch": pairs.total_pairs / pairs.draws,
            **timings,
        }
        print(f"{size}: {tokens:,} tokens, {ratio:.2f} pairs/word {timings}", file=sys.stderr, flush=True)
        seeds: list[int | None] = [int(s) for s in args.seeds.split(",") if s] or [None]
        for seed in seeds:
            for mode in [m for m in args.gensim_modes.split(",") if m and not args.no_gensim]:
                for workers in [int(w) for w in args.gensim_workers.split(",") if w]:
                    _put(
                        rows,
                        gensim_row(corpus, tokens, size, out, tuple(args.set), ratio, workers, seed, mode),
                    )
                    _report(rows, prep, out, args, config)
            for spec in [] if args.no_runs else matrix(args, size):
                print(f"  {size} {spec} seed={seed} ...", file=sys.stderr, flush=True)
                _put(rows, train_row(layout, cfg, spec, size, out, seed))
                _report(rows, prep, out, args, config)
    print(_report(rows, prep, out, args, config))


def _put(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Add ``row``, replacing an earlier row of the same corpus size, run, seed and draw (``--append``)."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["size"], r["run"], r.get("seed"), r.get("draw")

    rows[:] = [r for r in rows if key(r) != key(row)] + [row]
    order = {size: i for i, size in enumerate(SIZES)}
    rows.sort(key=lambda r: (order.get(r["size"], 99), *_gensim_first(r)))


def _gensim_first(row: dict[str, Any]) -> tuple[bool, int]:
    """Sort key inside one corpus size: gensim rows first, more workers first; ours in run order."""
    gensim = row["system"] == "gensim"
    return (not gensim, -(row.get("threads") or 0) if gensim else 0)


def _report(
    rows: list[dict[str, Any]],
    prep: dict[str, Any],
    out: Path,
    args: argparse.Namespace,
    config: dict[str, Any] | None,
    machine: str | None = None,
) -> str:
    """Write the JSON and the Markdown (after every row, so a long run can be read as it goes).

    ``config`` is the resolved configuration every row's run starts from (the preset with the
    ``--set`` overrides), recorded so ``--combine`` compares reports by what they trained.
    """
    report = {
        "machine": machine or peers.machine(),
        "corpus": args.corpus,
        "sets": args.set,
        "config": config,
        "prepared": prep,
        "rows": rows,
        "summary": summarize(rows),
    }
    (out / "scale_quality.json").write_text(json.dumps(report, indent=2, default=str))
    text = f"Machine: {report['machine']}. Bench preset{' + ' + ' '.join(args.set) if args.set else ''}.\n\n"
    text += markdown(rows, "Quality at scale (same shards per corpus size)")
    summary = summary_markdown(report["summary"])
    draws = {r["draw"] for r in rows if r.get("draw") is not None}
    if summary and draws:
        summary = (
            f'Pooled over {len(draws)} pair draws: a run\'s "seeds" are its rows over every draw, and its ±'
            " covers draw-to-draw variation as well as seeds.\n\n" + summary
        )
    text += "\n" + summary if summary else ""
    (out / "scale_quality.md").write_text(text)
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=str(peers.DEFAULT_CORPUS))
    parser.add_argument("--out", default="bench-out/scale")
    parser.add_argument("--sizes", default="2M,10M,all", help="comma list of 2M, 10M, all")
    parser.add_argument("--worlds", default="1,2,4,8")
    parser.add_argument("--full-worlds", default="1,2,8")
    parser.add_argument(
        "--batches",
        default="2M=4096,65536,262144,1048576;10M=4096,65536,262144,1048576",
        help="GPU-kernel batch sizes per corpus size, SIZE=B,B;SIZE=B",
    )
    parser.add_argument("--runs", nargs="*", help="explicit TrainConfig override specs instead of the matrix")
    parser.add_argument("--no-gensim", action="store_true")
    parser.add_argument("--gensim-workers", default="2,1", help="one gensim row per worker count")
    parser.add_argument(
        "--gensim-modes",
        default="corpus_file,sentences",
        help="comma list of corpus_file (its per-worker schedule) and sentences (an iterable, one schedule)",
    )
    parser.add_argument("--no-runs", action="store_true", help="only gensim (with --append: add its rows)")
    parser.add_argument("--append", action="store_true", help="add to (or replace rows of) the last report")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument(
        "--seeds", default="", help="comma list of training seeds: every row once per seed, plus a mean table"
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="REPORT",
        help="write one report (and its mean-over-seeds table) from several scale_quality.json; trains nothing",
    )
    parser.add_argument(
        "--pool-draws",
        action="store_true",
        help="with --combine: the reports are separate pair draws; pool every measured row once",
    )
    parser.add_argument(
        "--tag-sets",
        action="store_true",
        help="with --combine: reports may differ in --set; their rows' runs are labelled with it",
    )
    args = parser.parse_args(argv)
    if (args.pool_draws or args.tag_sets) and not args.combine:
        parser.error("--pool-draws and --tag-sets only apply to --combine")
    unknown = set(args.gensim_modes.split(",")) - {"", "corpus_file", "sentences"}
    if unknown:
        parser.error(f"--gensim-modes: unknown {sorted(unknown)}; use corpus_file and/or sentences")
    return args


if __name__ == "__main__":
    main()
