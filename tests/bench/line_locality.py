"""How related a corpus file's lines are to the lines near them: the scale of its topical neighbourhoods.

    python tests/bench/line_locality.py OUT/stores/corpus-all.txt

Prints, for each distance d, the mean tf-idf cosine of the word counts of lines d apart, and the
mean over random pairs of lines. docs/bench/file_order.md found gensim's sequential training gains
WordSim353 from the dev file's neighbourhoods of related lines; this is how their size was read off
(on the dev corpus, neighbouring lines 0.121, lines 64 apart 0.016, random pairs 0.014). A
diagnostic, nothing asserts.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp


def line_vectors(path: str) -> sp.csr_matrix:
    """One row per non-empty line: tf-idf weighted word counts, unit length."""
    vocab: dict[str, int] = {}
    indptr, indices, counts = [0], [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            ids = [vocab.setdefault(token, len(vocab)) for token in line.split()]
            if not ids:
                continue
            unique, count = np.unique(np.asarray(ids, np.int64), return_counts=True)
            indices.append(unique)
            counts.append(count)
            indptr.append(indptr[-1] + len(unique))
    n = len(indptr) - 1
    index = np.concatenate(indices)
    matrix = sp.csr_matrix((np.concatenate(counts).astype(np.float64), index, indptr), shape=(n, len(vocab)))
    idf = np.log(n / np.bincount(index, minlength=len(vocab)))
    matrix = sp.csr_matrix(matrix.multiply(idf))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(matrix.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]))


def mean_cosine(vectors: sp.csr_matrix, left: np.ndarray, right: np.ndarray) -> float:
    return float(np.asarray(vectors[left].multiply(vectors[right]).sum(axis=1)).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="text file, one chunk (line) per line")
    parser.add_argument("--distances", default="1,2,4,8,16,32,64,128,256,512,1024")
    parser.add_argument("--random-pairs", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    vectors = line_vectors(args.corpus)
    n = vectors.shape[0]
    print(f"{n} lines; distance: mean tf-idf cosine")
    for d in (int(x) for x in args.distances.split(",")):
        if d < n:
            print(f"{d:>6}: {mean_cosine(vectors, np.arange(n - d), np.arange(d, n)):.4f}")
    rng = np.random.default_rng(args.seed)
    left = rng.integers(0, n, args.random_pairs)
    right = (left + rng.integers(1, n, args.random_pairs)) % n  # never the line itself
    print(f"random: {mean_cosine(vectors, left, right):.4f}")


if __name__ == "__main__":
    main()
