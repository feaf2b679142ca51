"""Training speed of config variants side by side: same shards, the variants in turn, several rounds.

    python tests/bench/train_rounds.py --pairs STORE/stages/pairs/KEY --vocab STORE/stages/vocab/KEY \\
        --out /tmp/rounds --rounds 3 --runs "nproc=2" "nproc=2,overlap_partial_syncs=false" "nproc=2,sync_hot_rows=0"

A script, not a test. Each ``--runs`` item is a ``key=value,...`` list of train overrides on the
bench preset (as in scale_quality.py; seed 1 unless given). On a shared 2-core machine the speed of
one run drifts by 10% from run to run, more than many effects worth measuring, so every round
runs every variant once, and the ratio to the first variant is taken within a round. Prints a
Markdown table of pairs/s (time in syncs) per round, the mean, and each variant's mean ratio to
the first; the final losses show whether the runs were deterministic. Writes ``{out}/rounds.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus2vec.model.config import load_config
from corpus2vec.model.launch import launch_training
from tests.bench.scale_quality import parse_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", required=True, help="a finished pairs stage (URI)")
    parser.add_argument("--vocab", required=True, help="its vocab stage (URI)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", nargs="+", required=True)
    args = parser.parse_args(argv)
    base = load_config("bench", []).train
    rows: list[dict] = []
    for round_ in range(1, args.rounds + 1):
        for index, spec in enumerate(args.runs):
            cfg = replace(base, checkpoint_every_s=1e9, **{"seed": 1, **parse_run(spec)})
            target = args.out / f"run-{index}"
            shutil.rmtree(target, ignore_errors=True)
            started = time.monotonic()
            metrics = launch_training(args.pairs, args.vocab, str(target), cfg).metrics()
            row = {
                "round": round_,
                "run": spec,
                "wall_s": round(time.monotonic() - started, 1),
                **{k: metrics[k] for k in ("pairs_per_s", "sync_share", "pairs_per_cpu_s", "final_loss")},
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rounds.json").write_text(json.dumps(rows, indent=1))
    print(table(rows, args.runs, args.rounds))


def table(rows: list[dict], runs: list[str], rounds: int) -> str:
    """pairs/s (time in syncs) per round and variant, the means, and the mean ratio to ``runs[0]``."""
    cell = {(r["round"], r["run"]): r for r in rows}
    lines = ["| round | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for n in range(1, rounds + 1):
        lines.append(
            f"| {n} | "
            + " | ".join(
                f"{cell[n, s]['pairs_per_s'] / 1e6:.2f}M ({cell[n, s]['sync_share']:.1%}, loss {cell[n, s]['final_loss']:.4f})"
                for s in runs
            )
            + " |"
        )
    means = [statistics.mean(cell[n, s]["pairs_per_s"] for n in range(1, rounds + 1)) for s in runs]
    lines.append("| mean | " + " | ".join(f"{m / 1e6:.2f}M" for m in means) + " |")
    ratios = [
        statistics.mean(
            cell[n, s]["pairs_per_s"] / cell[n, runs[0]]["pairs_per_s"] for n in range(1, rounds + 1)
        )
        for s in runs
    ]
    lines.append(
        f"| vs {runs[0]} (mean of per-round ratios) | " + " | ".join(f"{x:.2f}x" for x in ratios) + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
