"""Procrustes alignment and the drift report."""

from __future__ import annotations

import numpy as np
import pytest

from corpus2vec.model.align import drift_report, fit_rotation, procrustes, shared_rows
from corpus2vec.model.evaluate import unit_rows
from tests.model.embedding_helpers import random_rotation, random_table


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.einsum("ij,ij->i", unit_rows(a), unit_rows(b))))


def test_procrustes_recovers_a_known_rotation() -> None:
    _, _, old = random_table(400, 32)
    rotation = random_rotation(32)
    noise = np.random.default_rng(5).normal(size=old.shape).astype(np.float32) * 0.05
    new = old @ rotation.T + noise  # the "retrained" table: rotated and slightly perturbed
    fitted = procrustes(new, old)
    assert np.allclose(fitted @ fitted.T, np.eye(32), atol=1e-5)  # orthogonal
    assert np.allclose(fitted, rotation, atol=0.02)
    assert _mean_cosine(new, old) < 0.3
    assert _mean_cosine(new @ fitted, old) > 0.99


def test_fit_rotation_uses_shared_words_in_any_order() -> None:
    words, _, old = random_table(200, 8)
    rotation = random_rotation(8, seed=3)
    perm = np.random.default_rng(0).permutation(200)[:150]
    new_words = [words[i] for i in perm] + ["fresh1", "fresh2"]
    new = np.vstack([old[perm] @ rotation.T, np.ones((2, 8), dtype=np.float32)])
    fitted = fit_rotation(new_words, new, words, old)
    assert np.allclose(fitted, rotation, atol=1e-4)
    new_rows, old_rows = shared_rows(new_words, words)
    assert list(old_rows) == list(perm) and list(new_rows) == list(range(150))


def test_fit_rotation_refuses_what_cannot_be_aligned() -> None:
    words, _, old = random_table(50, 8)
    with pytest.raises(ValueError, match="cannot align"):
        fit_rotation(words, old[:, :4], words, old)
    with pytest.raises(ValueError, match="too few"):
        fit_rotation(words[:5], old[:5], words, old)


def test_drift_report_on_a_rotated_copy_with_vocabulary_change() -> None:
    words, _, old = random_table(300, 16)
    rotation = random_rotation(16)
    new_words = words[:280] + [f"new{i}" for i in range(5)]
    new = np.vstack([old[:280] @ rotation.T, np.ones((5, 16), dtype=np.float32)])
    report = drift_report(new_words, new, words, old, top_words=100, k=10, list_words=7, samples=3)
    assert report["shared_words"] == 280
    assert report["added"] == {"count": 5, "sample": ["new0", "new1", "new2"]}
    assert report["removed"]["count"] == 20 and report["removed"]["sample"] == ["w280", "w281", "w282"]
    assert report["aligned_cosine"]["mean"] > 0.999 and report["aligned_cosine"]["min"] > 0.999
    assert abs(report["unaligned_mean_cosine"]) < 0.3
    assert report["neighbour_overlap"] == {"words": 100, "k": 10, "mean": 1.0, "min": 1.0}
    assert [w for w, _ in report["most_frequent"]] == words[:7]


def test_neighbour_overlap_drops_when_words_move() -> None:
    words, _, old = random_table(300, 16)
    new = np.random.default_rng(9).normal(size=old.shape).astype(np.float32)  # unrelated retrain
    report = drift_report(words, new, words, old, top_words=50)
    assert report["neighbour_overlap"]["mean"] < 0.3
    assert report["aligned_cosine"]["mean"] < 0.5
