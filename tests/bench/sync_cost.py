"""What one merge costs on gloo: both tables in two all-reduces (before 2026-12-06) or in one.

    python tests/bench/sync_cost.py [--world 2] [--dim 100] [--vocab 102296] [--repeats 200]

Starts ``--world`` gloo processes on 127.0.0.1 (torch.multiprocessing) and times, for the row
counts of one full-sync interval at the defaults (15 partial syncs of 1024·2^k rows, then the
whole vocabulary; model/train.py), the all-reduces of the input and output tables' first rows
sent separately and sent as one flat buffer (what ``Trainer._merge_rows`` does up to
``COALESCE_BYTES``), median of
``--repeats`` after a warm-up. Prints a Markdown table and the time per interval of each. It
measures the collectives alone, not the wait for a slower rank that a real sync adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from corpus2vec.model.config import HOT_ROWS, TrainConfig
from corpus2vec.model.launch import free_port
from corpus2vec.model.train import COALESCE_BYTES, all_reduce_together, partial_sync_rows


def interval_rows(vocab: int) -> list[int]:
    """Rows merged by each sync of one full-sync interval at the defaults, partial ones first."""
    splits = TrainConfig().sync_hot_splits
    return [partial_sync_rows(HOT_ROWS, part, vocab) for part in range(1, splits)] + [vocab]


def _time(fn: object, repeats: int) -> float:
    for _ in range(5):
        fn()  # type: ignore[operator]
    samples = []
    for _ in range(repeats):
        dist.barrier()
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, results: object) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    v, u = (torch.randn(args.vocab, args.dim) for _ in range(2))
    for rows in sorted(set(interval_rows(args.vocab))):

        def apart(rows: int = rows) -> None:
            all_reduce_together([v[:rows], u[:rows]], coalesce_bytes=0)  # in place, one by one

        def together(rows: int = rows) -> None:
            merged = all_reduce_together([v[:rows], u[:rows]], coalesce_bytes=1 << 62)
            for table, total in zip((v, u), merged, strict=True):  # as the merge writes it back
                table[:rows].copy_(total)

        a, b = _time(apart, args.repeats), _time(together, args.repeats)
        if rank == 0:
            results[rows] = (a, b)  # type: ignore[index]
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument(
        "--vocab", type=int, default=102296, help="rows (default: the dev corpus at min_count 5)"
    )
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(args.world, free_port(), args, results), nprocs=args.world, join=True)
        timed = dict(results)
    print(f"{args.world} gloo ranks, {args.dim} floats per row, median of {args.repeats}\n")
    print("| rows | MB per table | two all-reduces ms | one all-reduce ms | saved |")
    print("|---|---|---|---|---|")
    for rows in sorted(timed):
        a, b = timed[rows]
        mb = rows * args.dim * 4 / 1e6
        print(f"| {rows:,} | {mb:.1f} | {a * 1e3:.2f} | {b * 1e3:.2f} | {1 - b / a:.0%} |")
    plan = interval_rows(args.vocab)
    a, b = (sum(timed[r][i] for r in plan) for i in (0, 1))
    now = sum(timed[r][1] if 2 * r * args.dim * 4 <= COALESCE_BYTES else timed[r][0] for r in plan)
    print(
        f"\none full-sync interval ({len(plan)} merges): two all-reduces each {a * 1e3:.1f} ms, one each "
        f"{b * 1e3:.1f} ms, as training does (one up to {COALESCE_BYTES >> 20} MB) {now * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
