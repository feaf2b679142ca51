"""Publishing: artifact layout and manifest, the quality gate, alignment, crashes and S3."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import registry, storage
from corpus2vec.model.config import EvalConfig
from corpus2vec.model.pull import load
from corpus2vec.model.registry import QualityGateFailed
from tests.model.embedding_helpers import publish_table, random_rotation, random_table


def _version_dir(store: str, name: str, version: str) -> Path:
    return Path(store) / "embeddings" / name / version


def test_publish_writes_every_file_and_a_complete_manifest(store: str) -> None:
    from gensim.models import KeyedVectors

    words, counts, vectors = random_table()
    result = publish_table(store, "news", words, counts, vectors)
    folder = _version_dir(store, "news", result["version"])
    assert result["uri"] == str(folder) and result["parent"] is None and result["gate"]["passed"]
    assert registry.is_version(result["version"])
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("name", "version", "created_at", "config", "lineage", "code", "metrics", "parent", "gate"):
        assert key in manifest, key
    assert manifest["code"]["package"] == "corpus2vec" and manifest["code"]["version"]
    assert manifest["lineage"]["corpus"]["sha256"] == "abc"
    assert manifest["metrics"] == {"analogy": 0.5, "wordsim353": 0.6}
    listed = {f["path"] for f in manifest["files"]}
    assert listed == {"vectors.bin", "vectors.npy", "vocab.tsv", "report.json"}
    for entry in manifest["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    kv = KeyedVectors.load_word2vec_format(str(folder / "vectors.bin"), binary=True)
    assert kv.index_to_key == words and np.array_equal(kv.vectors, vectors)
    assert np.array_equal(np.load(folder / "vectors.npy", mmap_mode="r"), vectors)
    assert (folder / "vocab.tsv").read_text().splitlines()[:2] == ["w0\t3000", "w1\t2990"]
    alias = json.loads((Path(store) / "embeddings/news/aliases/latest.json").read_text())
    assert alias["version"] == result["version"]


def test_second_publish_is_aligned_onto_its_parent(store: str) -> None:
    words, counts, vectors = random_table(400, 16)
    first = publish_table(store, "news", words, counts, vectors)
    rotation = random_rotation(16)
    noise = np.random.default_rng(2).normal(size=vectors.shape).astype(np.float32) * 0.02
    retrained = vectors @ rotation.T + noise
    outputs = np.random.default_rng(3).normal(size=vectors.shape).astype(np.float32)
    second = publish_table(
        store, "news", words[:390] + [f"n{i}" for i in range(10)], counts, retrained, output_vectors=outputs
    )
    assert second["parent"] == first["version"] and second["aligned"]
    folder = _version_dir(store, "news", second["version"])
    published = np.load(folder / "vectors.npy")
    cosine = np.einsum("ij,ij->i", published[:390], vectors[:390])
    cosine /= np.linalg.norm(published[:390], axis=1) * np.linalg.norm(vectors[:390], axis=1)
    assert cosine.mean() > 0.99  # unaligned it would be near 0
    fitted = np.load(folder / "rotation.npy")
    assert np.allclose(fitted @ fitted.T, np.eye(16), atol=1e-5)
    # input . output dot products (what SGNS learned) survive the rotation
    out = np.load(folder / "output_vectors.npy")
    assert np.allclose(published @ out.T, retrained @ outputs.T, atol=1e-3)
    drift = json.loads((folder / "drift.json").read_text())
    assert drift["parent"] == first["version"] and drift["aligned"]
    assert drift["aligned_cosine"]["mean"] > 0.99 and abs(drift["unaligned_mean_cosine"]) < 0.3
    assert drift["added"]["count"] == 10 and drift["removed"]["count"] == 10
    assert drift["neighbour_overlap"]["mean"] > 0.8
    manifest = registry.read_manifest(store, "news")
    assert manifest.aligned_to == first["version"]
    assert {"rotation.npy", "drift.json", "output_vectors.npy"} <= {f.path for f in manifest.files}


def test_alignment_is_skipped_with_a_note_when_dimensions_differ(store: str) -> None:
    words, counts, vectors = random_table(100, 8)
    publish_table(store, "news", words, counts, vectors)
    _, _, wider = random_table(100, 12)
    result = publish_table(store, "news", words, counts, wider)
    assert not result["aligned"]
    drift = json.loads((Path(result["uri"]) / "drift.json").read_text())
    assert "cannot align" in drift["note"] and "aligned_cosine" not in drift
    unaligned = publish_table(store, "news", words, counts, wider * 2, align=False)
    assert not unaligned["aligned"] and not (Path(unaligned["uri"]) / "rotation.npy").exists()


def test_gate_failure_keeps_latest_and_leaves_an_inspectable_candidate(store: str) -> None:
    words, counts, vectors = random_table()
    good = publish_table(store, "news", words, counts, vectors)
    cfg = EvalConfig(max_regression=0.05)
    with pytest.raises(QualityGateFailed) as caught:
        publish_table(
            store,
            "news",
            words,
            counts,
            vectors * 1.1,
            metrics={"analogy": 0.3, "wordsim353": 0.6},
            eval_cfg=cfg,
        )
    error = caught.value
    assert isinstance(error, ValueError)
    assert any("analogy dropped from 0.5000 to 0.3000" in r for r in error.reasons)
    assert registry.resolve(store, "news@latest") == ("news", good["version"])
    assert [v["version"] for v in registry.list_versions(store, "news")] == [good["version"]]
    candidate = Path(error.candidate_uri)
    assert candidate.parent.name == "_candidates" and candidate.name == error.version
    manifest = json.loads((candidate / "manifest.json").read_text())
    assert manifest["status"] == "candidate" and not manifest["gate"]["passed"]
    assert (candidate / "vectors.bin").is_file()
    with pytest.raises(FileNotFoundError):
        registry.resolve(store, f"news@{error.version}")


def test_absolute_floors_block_the_first_version(store: str) -> None:
    words, counts, vectors = random_table()
    with pytest.raises(QualityGateFailed, match=r"wordsim353 not measurable is below the floor 0\.2"):
        publish_table(
            store,
            "news",
            words,
            counts,
            vectors,
            metrics={"analogy": 0.9},
            eval_cfg=EvalConfig(min_wordsim=0.2),
        )
    with pytest.raises(QualityGateFailed, match=r"analogy 0\.1000 is below the floor 0\.3"):
        publish_table(
            store,
            "news",
            words,
            counts,
            vectors,
            metrics={"analogy": 0.1},
            eval_cfg=EvalConfig(min_analogy=0.3),
        )
    assert registry.read_alias(store, "news", "latest") is None
    assert registry.list_versions(store, "news") == []
    candidates = list((Path(store) / "embeddings/news/_candidates").iterdir())
    assert len(candidates) == 2  # same content twice (a retried task): the second gets its own folder
    assert all((c / "manifest.json").is_file() for c in candidates)


def test_a_publish_that_dies_midway_leaves_nothing_visible(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    words, counts, vectors = random_table()
    good = publish_table(store, "news", words, counts, vectors)
    real = registry.write_file

    def dying(dir_url: str, name: str, produce):
        if name == "vocab.tsv":
            raise OSError("disk full")
        return real(dir_url, name, produce)

    monkeypatch.setattr(registry, "write_file", dying)
    with pytest.raises(OSError, match="disk full"):
        publish_table(store, "news", words, counts, vectors + 1)
    assert [v["version"] for v in registry.list_versions(store, "news")] == [good["version"]]
    assert registry.resolve(store, "news") == ("news", good["version"])


def test_a_version_is_never_overwritten(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same content in the same second gives the same version id: the second publisher is refused."""
    words, counts, vectors = random_table()
    frozen = registry._now()
    monkeypatch.setattr(registry, "_now", lambda: frozen)
    first = publish_table(store, "news", words, counts, vectors)
    before = (Path(first["uri"]) / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        publish_table(store, "news", words, counts, vectors, metrics={"analogy": 0.51, "wordsim353": 0.6})
    assert (Path(first["uri"]) / "manifest.json").read_bytes() == before


def test_publish_validates_its_inputs(store: str) -> None:
    words, counts, vectors = random_table(10, 4)
    with pytest.raises(ValueError, match="invalid name"):
        publish_table(store, "../evil", words, counts, vectors)
    with pytest.raises(ValueError, match="do not line up"):
        publish_table(store, "news", words[:-1], counts, vectors)
    with pytest.raises(ValueError, match="whitespace"):
        publish_table(store, "news", ["a b", *words[1:]], counts, vectors)
    with pytest.raises(ValueError, match="unique"):
        publish_table(store, "news", ["w1", *words[1:]], counts, vectors)
    assert not storage.exists(storage.join(store, "embeddings", "news"))


def test_publish_and_pull_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    """The same code path on object storage: conditional puts, aliases, pull and load."""
    store = f"{s3_bucket}/prod"
    words, counts, vectors = random_table(200, 8)
    first = publish_table(store, "news", words, counts, vectors)
    second = publish_table(store, "news", words, counts, vectors @ random_rotation(8).T)
    assert second["parent"] == first["version"] and second["aligned"]
    assert second["uri"] == f"{store}/embeddings/news/{second['version']}"
    assert registry.list_names(store) == ["news"]
    assert [v["version"] for v in registry.list_versions(store, "news")] == [
        first["version"],
        second["version"],
    ]
    with pytest.raises(QualityGateFailed):
        publish_table(store, "news", words, counts, vectors + 1, metrics={"analogy": 0.0, "wordsim353": 0.6})
    assert registry.resolve(store, "news@latest") == ("news", second["version"])
    emb = load("news@latest", store=store, cache_dir=str(tmp_path / "cache"))
    assert emb.version == second["version"] and len(emb) == 200
    assert np.allclose(emb.vectors, vectors, atol=1e-4)  # aligned back onto the first version
    registry.promote(store, "news", first["version"], "stable")
    assert registry.resolve(store, "news@stable") == ("news", first["version"])
    drift = registry.diff(store, f"news@{first['version']}", "news@latest")
    assert drift["aligned_cosine"]["mean"] > 0.999
