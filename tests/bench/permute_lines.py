"""The corpus with its lines in another order: to measure how much a trainer owes the file's order.

    python tests/bench/permute_lines.py 2812 OUT/stores/corpus-all.txt permuted-2812.txt.gz
    python tests/bench/scale_quality.py --corpus permuted-2812.txt.gz --sizes all ...

gensim and word2vec.c train a corpus in the order of its file every epoch; corpus2vec trains
shuffled pairs. docs/bench/file_order.md found gensim's whole-corpus WordSim353 and SimLex lead
on the dev corpus tied to the dev file's order, by running both on permutations written by this.
The source is the whole-corpus prefix scale_quality.py writes (one 10k-word chunk per line); the
output is one line of text, gzipped, as the dev corpus is, so scale_quality.py cuts it into the
same chunks again, now in ``random.Random(seed)``'s order. Same seed, same file. ``--keep-lines``
writes one chunk per line instead (gensim_replica.py reads lines as its sentences).
"""

from __future__ import annotations

import argparse
import gzip
import random


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=int, help="random.Random seed of the permutation")
    parser.add_argument("source", help="text file, one chunk per line")
    parser.add_argument("target", help="gzipped output: the chunks in permuted order, as one line")
    parser.add_argument(
        "--keep-lines", action="store_true",
        help="one chunk per line instead, so the lines stay the same chunks (for gensim_replica.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with open(args.source, encoding="utf-8") as source:
        lines = [line.strip() for line in source if line.strip()]
    random.Random(args.seed).shuffle(lines)
    with gzip.open(args.target, "wt", encoding="utf-8") as out:
        out.write(("\n" if args.keep_lines else " ").join(lines) + "\n")
    print(f"{args.target}: {len(lines)} lines of {args.source} in permutation {args.seed}")


if __name__ == "__main__":
    main()
