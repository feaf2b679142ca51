"""The registry's read side, names and refs, aliases, diff and concurrent publishers."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import registry
from corpus2vec.model.config import EvalConfig
from tests.model.embedding_helpers import publish_table, random_table

BAD_NAMES = ["../x", "/abs", "a/b", "", ".hidden", "-dash", "x" * 65, "a b", "..", "name\n"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_are_refused_everywhere(store: str, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        registry.validate_name(bad)
    with pytest.raises(ValueError, match="invalid"):
        registry.resolve(store, bad)
    with pytest.raises(ValueError, match="invalid"):
        registry.resolve(store, f"ok@{bad}" if bad else "ok@")
    with pytest.raises(ValueError, match="invalid"):
        registry.list_versions(store, bad)


def test_ref_parsing() -> None:
    assert registry.parse_ref("news") == ("news", "latest")
    assert registry.parse_ref("news@stable") == ("news", "stable")
    assert registry.parse_ref("news-v2.en@20261121T053000Z-0a1b2c3d") == (
        "news-v2.en",
        "20261121T053000Z-0a1b2c3d",
    )
    with pytest.raises(ValueError, match="NAME@VERSION"):
        registry.parse_ref("a@b@c")
    assert registry.is_version("20261121T053000Z-0a1b2c3d") and not registry.is_version("latest")


def test_list_resolve_and_promote(store: str) -> None:
    words, counts, vectors = random_table(50, 4)
    first = publish_table(store, "news", words, counts, vectors)
    second = publish_table(store, "news", words, counts, vectors * 2)
    publish_table(store, "books", words, counts, vectors)
    assert registry.list_names(store) == ["books", "news"]
    listed = registry.list_versions(store, "news")
    assert [v["version"] for v in listed] == [first["version"], second["version"]]
    assert listed[1]["aliases"] == ["latest"] and listed[1]["parent"] == first["version"]
    assert listed[0]["metrics"] == {"analogy": 0.5, "wordsim353": 0.6}
    assert registry.resolve(store, "news") == ("news", second["version"])
    assert registry.resolve(store, f"news@{first['version']}") == ("news", first["version"])

    record = registry.promote(store, "news", first["version"], "stable")
    assert record["version"] == first["version"]
    assert registry.resolve(store, "news@stable") == ("news", first["version"])
    registry.promote(store, "news", first["version"], "latest")  # rollback moves latest backwards
    assert registry.read_manifest(store, "news").version == first["version"]
    assert registry.list_versions(store, "news")[0]["aliases"] == ["latest", "stable"]
    with pytest.raises(ValueError, match="looks like a version"):
        registry.promote(store, "news", first["version"], second["version"])


def test_missing_things_give_actionable_errors(store: str) -> None:
    assert registry.list_versions(store, "nothing") == []
    assert registry.list_names(store) == []
    with pytest.raises(FileNotFoundError, match="publish a version first"):
        registry.resolve(store, "nothing")
    with pytest.raises(FileNotFoundError, match="not published"):
        registry.resolve(store, "nothing@20261121T053000Z-0a1b2c3d")
    with pytest.raises(FileNotFoundError):
        registry.promote(store, "nothing", "20261121T053000Z-0a1b2c3d", "stable")


def test_unfinished_versions_are_invisible(store: str) -> None:
    words, counts, vectors = random_table(50, 4)
    good = publish_table(store, "news", words, counts, vectors)
    ghost = Path(store) / "embeddings" / "news" / "20991231T000000Z-deadbeef"
    ghost.mkdir()
    (ghost / "vectors.npy").write_bytes(b"partial")
    assert [v["version"] for v in registry.list_versions(store, "news")] == [good["version"]]
    with pytest.raises(FileNotFoundError):
        registry.resolve(store, "news@20991231T000000Z-deadbeef")


def test_diff_between_two_versions(store: str) -> None:
    words, counts, vectors = random_table(300, 8)
    first = publish_table(store, "news", words, counts, vectors, align=False)
    moved = vectors.copy()
    moved[:10] = np.random.default_rng(4).normal(size=(10, 8))  # ten frequent words change meaning
    second = publish_table(store, "news", words, counts, moved, align=False)
    report = registry.diff(store, f"news@{first['version']}", "news@latest")
    assert report["from"] == f"news@{first['version']}" and report["to"] == f"news@{second['version']}"
    cosines = dict(report["most_frequent"])
    assert all(cosines[f"w{i}"] < 0.9 for i in range(10))
    assert all(cosines[f"w{i}"] > 0.99 for i in range(10, 100))
    assert report["neighbour_overlap"]["mean"] < 1.0
    assert report["added"]["count"] == report["removed"]["count"] == 0


def test_gate_checks_every_shared_metric() -> None:
    cfg = EvalConfig(max_regression=0.05, min_analogy=0.1)
    gate = registry.check_gate(
        {"analogy": 0.40, "wordsim353": 0.50, "simlex999": 0.30},
        {"analogy": 0.42, "wordsim353": 0.60, "gone": 0.9},
        cfg,
    )
    assert not gate["passed"]
    assert gate["reasons"] == ["wordsim353 dropped from 0.6000 to 0.5000 (more than max_regression=0.05)"]
    assert {c["check"] for c in gate["checks"]} == {
        "floor:analogy",
        "floor:wordsim353",
        "regression:analogy",
        "regression:wordsim353",
    }
    assert registry.check_gate({"analogy": 0.4}, None, cfg)["passed"]


def _race(store: str, seed: int, barrier: threading.Barrier | None = None) -> str:
    words, counts, vectors = random_table(200, 8, seed=seed)
    if barrier is not None:
        barrier.wait()
    return publish_table(store, "news", words, counts, vectors)["version"]


def _check_race(store: str, versions: list[str]) -> None:
    assert len(set(versions)) == len(versions)
    listed = [v["version"] for v in registry.list_versions(store, "news")]
    assert sorted(listed) == sorted(versions)
    latest = registry.read_manifest(store, "news")
    assert latest.version in versions
    for version in versions:  # every file of every version exists, whole
        manifest = registry.read_manifest(store, f"news@{version}")
        for entry in manifest.files:
            path = Path(store) / "embeddings" / "news" / version / entry.path
            assert path.stat().st_size == entry.bytes, (version, entry.path)
    json.loads((Path(store) / "embeddings/news/aliases/latest.json").read_text())


def test_concurrent_publishers_in_threads(store: str) -> None:
    barrier = threading.Barrier(3)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda s=seed: results.append(_race(store, s, barrier))) for seed in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    _check_race(store, results)


def test_concurrent_publishers_in_processes(store: str) -> None:
    context = multiprocessing.get_context("spawn")  # fork would copy locks held by moto/pytest threads
    with context.Pool(2) as pool:
        versions = pool.starmap(_race, [(store, 10), (store, 11)])
    _check_race(store, versions)


def test_concurrent_publishers_on_s3(s3_bucket: str) -> None:
    store = f"{s3_bucket}/race"
    barrier = threading.Barrier(2)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda s=seed: results.append(_race(store, s, barrier))) for seed in (1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert sorted(v["version"] for v in registry.list_versions(store, "news")) == sorted(results)
    assert registry.resolve(store, "news")[1] in results


def test_create_exclusive_on_local_and_s3(store: str, s3_bucket: str) -> None:
    for root in (store, s3_bucket):
        url = f"{root}/claims/one"
        assert registry.create_exclusive(url, b"first")
        assert not registry.create_exclusive(url, b"second")
        from corpus2vec.model import storage

        fs, path = storage.get_fs(url)
        assert fs.cat_file(path) == b"first"
