"""Stable across retrains: a retrained version is rotated onto its parent, and the drift report says so.

Two word2vec models trained on the same sample corpus with different seeds
are, coordinate by coordinate, unrelated (SGNS is only defined up to a
rotation); after the registry's Procrustes alignment the same word points the
same way in both. Thresholds come from gensim 4.4 CBOW on the sample corpus,
seed pairs (1,2) ... (4,5): aligned mean cosine 0.912-0.914, unaligned mean
cosine between -0.15 and 0.26.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model.evaluate import unit_rows
from tests.model.embedding_helpers import gensim_sample_table, publish_table

pytestmark = pytest.mark.slow


def train_sample_vectors(seed: int) -> tuple[list[str], list[int], np.ndarray]:
    """gensim CBOW on the shipped sample corpus (min_count 5): (words, counts, vectors)."""
    return gensim_sample_table(seed=seed, min_count=5)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two publishes under one name: a first training, then a retrain with another seed."""
    root = tmp_path_factory.mktemp("align")
    store = str(root / "store")
    first_words, first_counts, first_vecs = train_sample_vectors(seed=1)
    second_words, second_counts, second_vecs = train_sample_vectors(seed=2)
    first = publish_table(store, "retrain", first_words, first_counts, first_vecs)
    second = publish_table(store, "retrain", second_words, second_counts, second_vecs)
    return {
        "store": store,
        "cache": str(root / "cache"),
        "first": first,
        "second": second,
        "first_dir": Path(first["uri"]),
        "second_dir": Path(second["uri"]),
        "second_raw": (second_words, second_vecs),
    }


def test_retrain_is_aligned_onto_its_parent(retrained: dict) -> None:
    second = retrained["second"]
    assert second["parent"] == retrained["first"]["version"] and second["aligned"]
    drift = json.loads((retrained["second_dir"] / "drift.json").read_text())
    assert drift["aligned"] and drift["parent"] == retrained["first"]["version"]
    assert drift["shared_words"] > 5000
    aligned, unaligned = drift["aligned_cosine"]["mean"], drift["unaligned_mean_cosine"]
    assert aligned > 0.8, drift["aligned_cosine"]
    assert abs(unaligned) < 0.4, unaligned
    assert aligned - unaligned > 0.5


def test_rotation_is_orthogonal_and_is_what_was_published(retrained: dict) -> None:
    """rotation.npy is orthogonal, and the published vectors are exactly the raw ones rotated by it."""
    rotation = np.load(retrained["second_dir"] / "rotation.npy")
    dim = rotation.shape[0]
    assert rotation.shape == (dim, dim) == (32, 32)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(dim), atol=1e-5)
    assert abs(abs(float(np.linalg.det(rotation))) - 1.0) < 1e-4
    _, raw = retrained["second_raw"]
    published = np.load(retrained["second_dir"] / "vectors.npy")
    np.testing.assert_allclose(published, raw @ rotation, rtol=1e-5, atol=1e-6)


def test_published_files_show_the_aligned_cosine(retrained: dict) -> None:
    """A user comparing the two pulled versions word by word sees the drift report's aligned cosine."""
    from corpus2vec.model.pull import load

    store, cache = retrained["store"], retrained["cache"]
    old = load(f"retrain@{retrained['first']['version']}", store, cache_dir=cache)
    new = load(f"retrain@{retrained['second']['version']}", store, cache_dir=cache)
    shared = [w for w in new.words if w in old]
    cosines = np.einsum(
        "ij,ij->i",
        unit_rows(np.asarray(new.vectors)[[new.index(w) for w in shared]]),
        unit_rows(np.asarray(old.vectors)[[old.index(w) for w in shared]]),
    )
    drift = json.loads((retrained["second_dir"] / "drift.json").read_text())
    assert float(cosines.mean()) == pytest.approx(drift["aligned_cosine"]["mean"], abs=1e-4)
