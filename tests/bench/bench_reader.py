"""The pair reader alone: decode, shuffle and batch, as the ceiling it puts on a GPU trainer. A script, not a test.

    python tests/bench/bench_reader.py --pairs RUN/pairs --vocab RUN/vocab [--batch-size 262144] [--epochs 1]

A GPU kernel cannot train faster than :class:`corpus2vec.model.reader.PairReader` hands it
pairs, and the reader runs on the host's CPU. This reads every pair of the
given epochs exactly as one training rank does (sha256 check of each shard, Parquet
decode, the block-interleaved buffer shuffle, id checks, batching, the prefetch
thread) and throws the batches away. Prints pairs/s overall and per epoch, and
the share of wall time that was the one-off shard verification.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpus2vec.model.reader import PairReader, check_inputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--batch-size", type=int, default=262_144)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of each shard")
    args = parser.parse_args(argv)
    pairs_manifest, vocab_manifest = check_inputs(args.pairs, args.vocab)
    reader = PairReader(
        args.pairs,
        pairs_manifest,
        vocab_manifest.vocab_size,
        rank=0,
        world=1,
        seed=1,
        batch_size=args.batch_size,
        verify_sha256=not args.no_verify,
    )
    rows = []
    for epoch in range(args.epochs):
        started, pairs, batches = time.monotonic(), 0, 0
        for batch in reader.epoch_batches(epoch):
            pairs += len(batch)
            batches += 1
        seconds = time.monotonic() - started
        rows.append({"epoch": epoch, "pairs": pairs, "batches": batches, "seconds": round(seconds, 2),
                     "pairs_per_s": pairs / seconds})  # fmt: skip
        print(f"epoch {epoch}: {pairs:,} pairs in {seconds:.1f} s = {pairs / seconds / 1e6:.2f}M pairs/s "
              f"(batch {args.batch_size:,})", file=sys.stderr)  # fmt: skip
    total = sum(r["pairs"] for r in rows) / sum(r["seconds"] for r in rows)
    print(json.dumps({"batch_size": args.batch_size, "verify": not args.no_verify, "pairs_per_s": total,
                      "epochs": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
