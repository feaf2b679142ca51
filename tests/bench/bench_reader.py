"""The pair reader alone: decode, shuffle and batch, as the ceiling it puts on a GPU trainer. A script, not a test.

    python tests/bench/bench_reader.py --pairs RUN/pairs --vocab RUN/vocab [--batch-size 262144] \\
        [--epochs 1] [--threads 1,2,4] [--no-verify]

A GPU kernel cannot train faster than :class:`corpus2vec.model.reader.PairReader` hands it
pairs, and the reader runs on the host's CPU. This reads every pair of the given epochs
exactly as one training rank does (sha256 check of each shard, Parquet decode, the
block-interleaved buffer shuffle, id checks, batching, the prefetch thread) and throws
the batches away, once per reader thread count in ``--threads`` (``train.reader_threads``;
the stream is the same at every count), back to back in one process. Prints, per count,
pairs/s of wall time, pairs per CPU-second of the process (what a core of any host gives,
and the fair figure on a shared machine) and the speed-up over the first count, then one
JSON line with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus2vec.model.reader import PairReader, check_inputs


def read_epochs(reader: PairReader, epochs: int) -> dict[str, float]:
    """Drain ``epochs`` epochs; wall seconds, process CPU seconds and pairs."""
    started, cpu, pairs = time.monotonic(), time.process_time(), 0
    for epoch in range(epochs):
        for batch in reader.epoch_batches(epoch):
            pairs += len(batch)
    return {"pairs": pairs, "seconds": time.monotonic() - started, "cpu_s": time.process_time() - cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--batch-size", type=int, default=262_144)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", default="1", help="comma list of reader thread counts")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of each shard")
    args = parser.parse_args(argv)
    pairs_manifest, vocab_manifest = check_inputs(args.pairs, args.vocab)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        reader = PairReader(
            args.pairs,
            pairs_manifest,
            vocab_manifest.vocab_size,
            batch_size=args.batch_size,
            verify_sha256=not args.no_verify,
            threads=threads,
        )
        row = {"threads": threads, **read_epochs(reader, args.epochs)}
        row["pairs_per_s"] = row["pairs"] / row["seconds"]
        row["pairs_per_cpu_s"] = row["pairs"] / row["cpu_s"]
        rows.append(row)
    print(f"batch {args.batch_size:,}, sha256 check {'off' if args.no_verify else 'on'}, "
          f"{args.epochs} epoch(s), {rows[0]['pairs']:,} pairs per run", file=sys.stderr)  # fmt: skip
    print("| reader threads | seconds | pairs/s | pairs per CPU-s | speed-up |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for row in rows:
        print(f"| {row['threads']} | {row['seconds']:.1f} | {row['pairs_per_s'] / 1e6:.2f}M | "
              f"{row['pairs_per_cpu_s'] / 1e6:.2f}M | {row['pairs_per_s'] / rows[0]['pairs_per_s']:.2f}x |",
              file=sys.stderr)  # fmt: skip
    print(json.dumps({"batch_size": args.batch_size, "verify": not args.no_verify, "epochs": args.epochs,
                      "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
