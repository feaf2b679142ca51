"""Small tables and publish calls shared by the evaluation, registry, publish and pull tests.

A plain module (not a conftest) so it cannot clash with fixtures of other test files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from corpus2vec.model import registry
from corpus2vec.model.config import EvalConfig, PublishConfig


def random_table(n_words: int = 300, dim: int = 16, seed: int = 0) -> tuple[list[str], list[int], np.ndarray]:
    """Words ``w0..``, descending counts and a random float32 table."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n_words)]
    counts = [10 * (n_words - i) for i in range(n_words)]
    return words, counts, rng.normal(size=(n_words, dim)).astype(np.float32)


def random_rotation(dim: int, seed: int = 1) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def publish_table(
    store: str,
    name: str,
    words: list[str],
    counts: list[int],
    vectors: np.ndarray,
    metrics: dict[str, float] | None = None,
    eval_cfg: EvalConfig | None = None,
    align: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """``registry.publish`` with a hand-made report (fast: no evaluation run)."""
    metrics = {"analogy": 0.5, "wordsim353": 0.6} if metrics is None else metrics
    return registry.publish(
        store,
        name,
        vectors=vectors,
        words=words,
        counts=counts,
        report={"metrics": metrics},
        config={"train": {"vector_size": int(vectors.shape[1])}},
        lineage={"corpus": {"sha256": "abc", "files": [{"url": "corpus.txt", "size": 1}]}},
        cfg=PublishConfig(align_to_parent=align),
        eval_cfg=eval_cfg or EvalConfig(),
        **kwargs,
    )


def gensim_sample_table(seed: int, min_count: int) -> tuple[list[str], list[int], np.ndarray]:
    """gensim CBOW on the shipped sample corpus, tokenized like the pipeline: (words, counts, vectors).

    A real trained table in seconds for tests that need meaningful vectors without a
    pipeline run: CBOW, 3 epochs, 32 dimensions, one worker (deterministic per seed).
    """
    import gzip
    import json

    from gensim.models import Word2Vec

    from corpus2vec.flows.defaults import SAMPLE_CORPUS
    from corpus2vec.jobs.tokenize import tokenize

    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as lines:
        docs = [tokens for line in lines if (tokens := tokenize(json.loads(line)["text"]))]
    model = Word2Vec(
        docs, vector_size=32, window=5, min_count=min_count, sample=1e-3, negative=5,
        epochs=3, sg=0, workers=1, seed=seed,
    )  # fmt: skip
    words = list(model.wv.index_to_key)
    counts = [int(model.wv.get_vecattr(w, "count")) for w in words]
    return words, counts, np.asarray(model.wv.vectors, dtype=np.float32)
