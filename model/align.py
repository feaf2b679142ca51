"""Orthogonal Procrustes alignment and drift between two embedding versions.

SGNS vectors are only defined up to a rotation: two trainings on nearly the
same corpus give tables whose rows cannot be compared coordinate by
coordinate. Rotating a new version onto its parent (an orthogonal map keeps
every cosine and dot product inside the version) lets downstream models that
cached old vectors, or compare them, keep working, and makes "how much did the
word move" a meaningful number. Only numpy is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from corpus2vec.model.evaluate import unit_rows


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal ``R`` minimising ``||source @ R - target||_F``: ``R = U Vᵀ`` for ``sourceᵀ target = U S Vᵀ``.

    Rows of ``source`` and ``target`` must describe the same words in the same order.
    """
    if source.shape != target.shape:
        raise ValueError(f"procrustes needs equal shapes, got {source.shape} and {target.shape}")
    cross = np.asarray(source, dtype=np.float64).T @ np.asarray(target, dtype=np.float64)
    u, _, vt = np.linalg.svd(cross)
    return (u @ vt).astype(np.float32)


def shared_rows(new_words: Sequence[str], old_words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the words both versions have, in the new version's (frequency) order."""
    old_index = {w: i for i, w in enumerate(old_words)}
    pairs = [(i, old_index[w]) for i, w in enumerate(new_words) if w in old_index]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new_rows, old_rows = zip(*pairs, strict=True)
    return np.array(new_rows, dtype=np.int64), np.array(old_rows, dtype=np.int64)


def fit_rotation(
    new_words: Sequence[str],
    new_vecs: np.ndarray,
    old_words: Sequence[str],
    old_vecs: np.ndarray,
    max_words: int = 50_000,
) -> np.ndarray:
    """Rotation taking the new version onto the old, fitted on the most frequent shared words.

    Fitted on unit rows so that a few long (frequent) vectors do not dominate,
    and on at most ``max_words`` words: rare words are noisy and slow the fit.
    """
    if new_vecs.shape[1] != old_vecs.shape[1]:
        raise ValueError(f"cannot align {new_vecs.shape[1]}-d vectors onto {old_vecs.shape[1]}-d vectors")
    new_rows, old_rows = shared_rows(new_words, old_words)
    if len(new_rows) < new_vecs.shape[1]:
        raise ValueError(
            f"only {len(new_rows)} shared words for {new_vecs.shape[1]} dimensions: too few to align"
        )
    new_rows, old_rows = new_rows[:max_words], old_rows[:max_words]
    return procrustes(unit_rows(new_vecs[new_rows]), unit_rows(old_vecs[old_rows]))


def drift_report(
    new_words: Sequence[str],
    new_vecs: np.ndarray,
    old_words: Sequence[str],
    old_vecs: np.ndarray,
    *,
    rotation: np.ndarray | None = None,
    top_words: int = 1000,
    k: int = 10,
    list_words: int = 100,
    samples: int = 20,
) -> dict[str, Any]:
    """How far a new version moved from an old one; JSON-safe.

    ``new_vecs`` are the new version *before* alignment; ``rotation`` (fitted
    here when None and the dimensions agree) maps them onto the old version.
    Reports per-word cosine after alignment (summary and the ``list_words``
    most frequent shared words), the unaligned mean cosine for comparison,
    neighbour overlap@k for the ``top_words`` most frequent shared words
    (rotation-free), and words added/removed.
    """
    new_rows, old_rows = shared_rows(new_words, old_words)
    report: dict[str, Any] = {"shared_words": len(new_rows), **_vocab_change(new_words, old_words, samples)}
    if len(new_rows) == 0:
        return report
    same_dim = new_vecs.shape[1] == old_vecs.shape[1]
    if rotation is None and same_dim and len(new_rows) >= new_vecs.shape[1]:
        rotation = fit_rotation(new_words, new_vecs, old_words, old_vecs)
    old_unit = unit_rows(old_vecs[old_rows])
    new_unit = unit_rows(new_vecs[new_rows])
    if same_dim:
        report["unaligned_mean_cosine"] = float(np.mean(np.einsum("ij,ij->i", new_unit, old_unit)))
    if rotation is not None:
        cosines = np.einsum("ij,ij->i", unit_rows(new_vecs[new_rows] @ rotation), old_unit)
        report["aligned_cosine"] = _summary(cosines)
        report["most_frequent"] = [
            [new_words[row], round(float(cos), 4)]
            for row, cos in zip(new_rows[:list_words], cosines[:list_words], strict=True)
        ]
    report["neighbour_overlap"] = neighbour_overlap(new_unit, old_unit, top_words, k)
    return report


def _summary(values: np.ndarray) -> dict[str, float]:
    quantiles = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        **{
            f"p{int(q * 100):02d}": float(v)
            for q, v in zip((0.05, 0.25, 0.5, 0.75, 0.95), quantiles, strict=True)
        },
    }


def _vocab_change(new_words: Sequence[str], old_words: Sequence[str], samples: int) -> dict[str, Any]:
    """Counts and the most frequent examples of words that appeared or disappeared."""
    new_set, old_set = set(new_words), set(old_words)
    added = [w for w in new_words if w not in old_set]
    removed = [w for w in old_words if w not in new_set]
    return {
        "added": {"count": len(added), "sample": added[:samples]},
        "removed": {"count": len(removed), "sample": removed[:samples]},
    }


def neighbour_overlap(
    new_unit: np.ndarray, old_unit: np.ndarray, top_words: int, k: int, pool: int = 50_000
) -> dict[str, Any]:
    """Mean share of the k nearest neighbours kept, for the first ``top_words`` shared rows.

    Neighbours are searched among the first ``pool`` shared words of each
    version, so words that exist in only one version cannot count as changes.
    """
    pool = min(pool, len(new_unit))
    queries = min(top_words, pool)
    k = min(k, pool - 1)
    if queries == 0 or k <= 0:
        return {"words": 0, "k": k, "mean": None}
    new_nn = _knn(new_unit[:pool], queries, k)
    old_nn = _knn(old_unit[:pool], queries, k)
    kept = np.array([len(np.intersect1d(a, b)) / k for a, b in zip(new_nn, old_nn, strict=True)])
    return {"words": int(queries), "k": int(k), "mean": float(kept.mean()), "min": float(kept.min())}


def _knn(unit: np.ndarray, queries: int, k: int, block: int = 1024) -> np.ndarray:
    """k nearest rows (excluding itself) of each of the first ``queries`` rows."""
    out = np.empty((queries, k), dtype=np.int64)
    for start in range(0, queries, block):
        scores = unit[start : min(start + block, queries)] @ unit.T
        rows = np.arange(len(scores))
        scores[rows, rows + start] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[start : start + len(scores)] = part
    return out
