"""Small tables and publish calls shared by the evaluation, registry, publish and pull tests.

A plain module (not a conftest) so it cannot clash with fixtures of other test files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model import registry
from model.config import EvalConfig, PublishConfig


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
