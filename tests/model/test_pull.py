"""The pull client: cache, checksums, offline use, and the loaded Embeddings object."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import pull as pull_module
from corpus2vec.model.embeddings import Embeddings
from corpus2vec.model.pull import load, pull
from tests.model.embedding_helpers import publish_table, random_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def published(store: str, tmp_path: Path) -> dict:
    """One published version of ``news`` with a planted analogy and a cluster, plus a cache folder."""
    words, counts, vectors = random_table(300, 16)
    rng = np.random.default_rng(1)
    offset = rng.normal(size=16) * 3
    vectors[1] = vectors[0] + offset  # w0 : w1 :: w2 : w3
    vectors[3] = vectors[2] + offset
    result = publish_table(store, "news", words, counts, vectors)
    return {**result, "store": store, "cache": str(tmp_path / "cache"), "vectors": vectors, "words": words}


def _store_file(p: dict, name: str) -> Path:
    return Path(p["store"]) / "embeddings" / "news" / p["version"] / name


def test_pull_caches_verified_files_and_load_reads_them(published: dict) -> None:
    path = pull("news@latest", published["store"], cache_dir=published["cache"])
    assert (
        path
        == Path(published["cache"])
        / pull_module.store_key(published["store"])
        / "news"
        / published["version"]
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} <= {p.name for p in path.iterdir()}
    emb = load("news", store=published["store"], cache_dir=published["cache"])
    assert emb.path == path and emb.ref == f"news@{published['version']}"
    assert isinstance(emb.vectors, np.memmap)
    assert np.array_equal(emb.vectors, published["vectors"])


def test_pull_to_a_folder_and_cache_from_the_environment(
    published: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = pull(f"news@{published['version']}", published["store"], to=str(tmp_path / "here"))
    assert out == tmp_path / "here" and (out / "vectors.bin").is_file()
    monkeypatch.setenv("C2V_CACHE", str(tmp_path / "envcache"))
    cached = pull("news", published["store"])
    assert cached.is_relative_to(tmp_path / "envcache")


def test_offline_reuse_of_an_exact_version(published: dict) -> None:
    ref = f"news@{published['version']}"
    pull("news@latest", published["store"], cache_dir=published["cache"])  # remembers latest's target
    shutil.rmtree(published["store"])  # the store is gone (or unreachable)
    emb = load(ref, store=published["store"], cache_dir=published["cache"])
    assert emb.version == published["version"]
    assert load(ref, cache_dir=published["cache"]).version == published["version"]  # no store at all
    with pytest.warns(RuntimeWarning, match="cached target"):
        aliased = load("news@latest", store=published["store"], cache_dir=published["cache"])
    assert aliased.version == published["version"]
    with pytest.raises(FileNotFoundError):  # an alias never pulled cannot be guessed
        load("news@stable", store=published["store"], cache_dir=published["cache"])


def test_tampered_or_truncated_store_files_are_refused(published: dict) -> None:
    target = _store_file(published, "vectors.npy")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"vectors\.npy does not match its manifest"):
        pull("news", published["store"], cache_dir=published["cache"])
    target.write_bytes(bytes(data[:-100]))
    with pytest.raises(ValueError, match=r"vectors\.npy does not match its manifest"):
        pull("news", published["store"], cache_dir=published["cache"])
    cached = (
        Path(published["cache"]) / pull_module.store_key(published["store"]) / "news" / published["version"]
    )
    assert not (cached / "manifest.json").exists()  # nothing a later load could mistake for complete
    assert not (cached / "vectors.npy").exists()


def test_tampered_or_truncated_cache_files_are_refused(published: dict) -> None:
    path = pull("news", published["store"], cache_dir=published["cache"])
    vocab = path / "vocab.tsv"
    original = vocab.read_bytes()
    vocab.write_bytes(original.replace(b"w5\t", b"w9\t"))  # same size, different content
    with pytest.raises(ValueError, match=r"vocab\.tsv does not match.*delete"):
        load("news", store=published["store"], cache_dir=published["cache"])
    vocab.write_bytes(original[:-3])
    with pytest.raises(ValueError, match=r"vocab\.tsv has .* bytes.*truncated"):
        load("news", store=published["store"], cache_dir=published["cache"])
    vocab.write_bytes(original)
    load("news", store=published["store"], cache_dir=published["cache"])  # repaired: accepted again


def test_cache_is_rehashed_even_when_size_and_mtime_are_kept(published: dict) -> None:
    """Issue 13: the cache is re-verified by sha256 on every reuse, not trusted by size and mtime."""
    path = pull("news", published["store"], cache_dir=published["cache"])
    target = path / "vectors.bin"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ValueError, match=r"vectors\.bin does not match"):
        pull("news", published["store"], cache_dir=published["cache"])


def test_pull_refuses_bad_references(published: dict) -> None:
    for bad in ("../news", "/abs", "a@b@c", "news@../x"):
        with pytest.raises(ValueError, match="invalid"):
            pull(bad, published["store"], cache_dir=published["cache"])


def test_embeddings_queries(published: dict) -> None:
    emb = load("news", store=published["store"], cache_dir=published["cache"])
    assert len(emb) == 300 and emb.vector_size == 16 and "w7" in emb and "zz" not in emb
    assert emb.index("w7") == 7 and emb.counts[0] == 3000
    assert np.array_equal(emb["w7"], published["vectors"][7])
    with pytest.raises(KeyError, match="not in the vocabulary"):
        emb.index("zz")
    assert emb.analogy("w0", "w1", "w2")[0][0] == "w3"
    neighbours = emb.most_similar("w4", topn=5)
    assert len(neighbours) == 5 and "w4" not in dict(neighbours)
    assert emb.most_similar(published["vectors"][4], topn=1)[0] == ("w4", pytest.approx(1.0, abs=1e-5))
    assert emb.metrics == {"analogy": 0.5, "wordsim353": 0.6}


def test_to_gensim_matches(published: dict) -> None:
    emb = load("news", store=published["store"], cache_dir=published["cache"])
    kv = emb.to_gensim()
    assert kv.index_to_key == emb.words
    assert np.array_equal(kv.vectors, published["vectors"])
    assert kv.get_vecattr("w3", "count") == emb.counts[3]
    assert [w for w, _ in kv.most_similar("w4", topn=5)] == [w for w, _ in emb.most_similar("w4", topn=5)]


@pytest.mark.parametrize(("padding", "unknown"), [(True, True), (False, True), (True, False), (False, False)])
def test_to_torch_row_layout(published: dict, padding: bool, unknown: bool) -> None:
    import torch

    emb = load("news", store=published["store"], cache_dir=published["cache"])
    module, word_to_row = emb.to_torch(freeze=True, padding=padding, unknown=unknown)
    offset = int(padding) + int(unknown)
    assert module.num_embeddings == len(emb) + offset
    assert module.padding_idx == (0 if padding else None)
    assert not module.weight.requires_grad
    assert word_to_row["w0"] == offset and len(word_to_row) == len(emb)
    rows = torch.tensor([word_to_row["w5"], word_to_row["w299"]])
    assert np.allclose(module(rows).numpy(), published["vectors"][[5, 299]])
    if padding:
        assert torch.count_nonzero(module.weight[0]) == 0
    if unknown:
        assert np.allclose(module.weight[int(padding)].numpy(), published["vectors"].mean(axis=0), atol=1e-6)
    trainable, _ = emb.to_torch(freeze=False)
    assert trainable.weight.requires_grad


def test_pull_client_needs_no_torch_gensim_or_scipy(published: dict) -> None:
    """The base install (numpy, pyarrow, fsspec) is enough to pull, load and query."""
    code = f"""
import sys
for blocked in ("torch", "gensim", "scipy", "pyspark", "prefect"):
    sys.modules[blocked] = None
import corpus2vec
emb = corpus2vec.load("news", store={published["store"]!r}, cache_dir={published["cache"]!r})
assert isinstance(emb, corpus2vec.Embeddings) and corpus2vec.__version__
assert emb.most_similar("w1", topn=2) and emb.analogy("w0", "w1", "w2")[0][0] == "w3"
from corpus2vec.model import registry
assert registry.list_versions({published["store"]!r}, "news")
for method, extra in (("to_torch", "torch"), ("to_gensim", "gensim")):
    try:
        getattr(emb, method)()
    except ImportError as exc:
        assert f"pip install 'corpus2vec[{{extra}}]'" in str(exc), exc
    else:
        raise AssertionError(method + " worked without its extra")
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_embeddings_refuses_a_folder_that_does_not_line_up(published: dict) -> None:
    path = pull("news", published["store"], to=str(Path(published["cache"]) / "copy"))
    (path / "vocab.tsv").write_text("w0\t1\n")
    with pytest.raises(ValueError, match=r"rows but vocab\.tsv has 1"):
        Embeddings(path)


def test_alias_falls_back_to_the_cache_when_s3_is_unreachable(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    words, counts, vectors = random_table(50, 4)
    version = publish_table(s3_bucket, "news", words, counts, vectors)["version"]
    cache = str(tmp_path / "cache")
    load("news@latest", store=s3_bucket, cache_dir=cache)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        assert load(f"news@{version}", store=s3_bucket, cache_dir=cache).version == version  # no store access
        with pytest.warns(RuntimeWarning, match="could not resolve news@latest"):
            assert load("news", store=s3_bucket, cache_dir=cache).version == version
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_pulling_another_version_into_the_same_folder_replaces_it(published: dict, tmp_path: Path) -> None:
    words, counts, vectors = random_table(300, 16, seed=8)
    newer = publish_table(published["store"], "news", words, counts, vectors, align=False)
    out = tmp_path / "out"
    pull(f"news@{published['version']}", published["store"], to=str(out))
    pull(f"news@{newer['version']}", published["store"], to=str(out))
    assert Embeddings(out).version == newer["version"]
    assert np.array_equal(Embeddings(out).vectors, vectors)
