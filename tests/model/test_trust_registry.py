"""Issue 13, registry: diff and alignment read only verified bytes, publish says when `latest`
did not move, alias/manifest JSON is checked by type, and the vocab/.npy/word2vec parsers are strict."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import registry
from corpus2vec.model.artifact import ArtifactError, load_vectors, parse_vocab_tsv
from corpus2vec.model.word2vec_format import read_word2vec_binary, write_word2vec_binary
from tests.model.embedding_helpers import publish_table, random_table


def _vdir(store: str, version: str, name: str = "news") -> Path:
    return Path(store) / "embeddings" / name / version


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size: only a sha256 can see it
    path.write_bytes(bytes(data))


def test_diff_verifies_what_it_reads(store: str) -> None:
    words, counts, vectors = random_table(50, 4)
    first = publish_table(store, "news", words, counts, vectors)
    second = publish_table(store, "news", words, counts, vectors * 2)
    _flip_last_byte(_vdir(store, first["version"]) / "vectors.npy")
    with pytest.raises(ValueError, match=r"vectors\.npy does not match its manifest"):
        registry.diff(store, f"news@{first['version']}", f"news@{second['version']}")


def test_alignment_onto_the_parent_verifies_what_it_reads(store: str) -> None:
    words, counts, vectors = random_table(50, 4)
    first = publish_table(store, "news", words, counts, vectors)
    vocab = _vdir(store, first["version"]) / "vocab.tsv"
    vocab.write_bytes(vocab.read_bytes().replace(b"w3\t", b"w9\t"))  # same size, other words
    with pytest.raises(ValueError, match=r"vocab\.tsv does not match its manifest"):
        publish_table(store, "news", words, counts, vectors * 2)
    assert registry.resolve(store, "news") == ("news", first["version"])  # nothing published


def test_publish_says_when_latest_did_not_move(store: str) -> None:
    words, counts, vectors = random_table(50, 4)
    first = publish_table(store, "news", words, counts, vectors)
    alias = _vdir(store, "aliases") / "latest.json"
    record = json.loads(alias.read_text())
    record["version_created_at"] = "2999-01-01T00:00:00.000Z"  # a publisher with a clock in the future
    alias.write_text(json.dumps(record))
    second = publish_table(store, "news", words, counts, vectors * 2)
    assert second["latest_moved"] is False and second["latest"] == first["version"]
    assert "still points at" in second["warning"] and "corpus2vec promote" in second["warning"]
    assert registry.resolve(store, "news") == ("news", first["version"])
    third = publish_table(store, "news", words, counts, vectors * 3, align=False)
    assert third["latest_moved"] is False
    registry.promote(store, "news", third["version"], "latest")
    fourth = publish_table(store, "news", words, counts, vectors * 4, align=False)
    assert fourth["latest_moved"] is True and fourth["latest"] == fourth["version"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "not a JSON object but list"),
        ('{"version": 5}', "names version 5, which is not a version id"),
        ('{"version": "../../x"}', "which is not a version id"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_alias_json_is_checked_by_type(store: str, content: str, message: str) -> None:
    words, counts, vectors = random_table(20, 4)
    publish_table(store, "news", words, counts, vectors)
    (_vdir(store, "aliases") / "latest.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        registry.resolve(store, "news@latest")
    with pytest.raises(ValueError, match=message):
        publish_table(store, "news", words, counts, vectors * 2)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(files="vectors.npy"), "'files' is str, not a list"),
        (lambda m: m["files"][0].update(bytes="12"), "'bytes' of .* is '12'"),
        (lambda m: m["files"][0].update(sha256=None), "'sha256' of .* is None"),
        (lambda m: m.update(name=["news"]), "'name' is \\['news'\\], not a string"),
        (lambda m: m.update(kind="tokens"), "kind 'tokens'"),
        (lambda m: m.update(format_version=2), "format_version 2"),
        (lambda m: m.update(metrics={"analogy": "high"}), "metric 'analogy' is 'high', not a number"),
        (lambda m: m.update(metrics=[0.5]), "'metrics' is \\[0.5\\], not dict"),
        (lambda m: m.update(parent=7), "'parent' is 7, not str or null"),
        (lambda m: m.update(vocab_size=-1), "'vocab_size' is -1"),
        (lambda m: m.update(vector_size=True), "'vector_size' is True, not int"),
        (lambda m: m.pop("created_at"), "'created_at' is None, not str"),
    ],
)
def test_manifest_json_is_checked_by_type(store: str, edit, message: str) -> None:
    words, counts, vectors = random_table(20, 4)
    first = publish_table(store, "news", words, counts, vectors)
    path = _vdir(store, first["version"]) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        registry.read_manifest(store, f"news@{first['version']}")
    (row,) = registry.list_versions(store, "news")  # listed with the error, not a crash
    assert row["digest"] is None and "error" in row


def test_an_object_store_without_conditional_writes_is_refused_before_writing() -> None:
    import fsspec

    words, counts, vectors = random_table(20, 4)
    store = "memory://c2v-trust-store"
    with pytest.raises(RuntimeError, match="no conditional writes corpus2vec can rely on"):
        publish_table(store, "news", words, counts, vectors)
    assert not fsspec.filesystem("memory").exists("/c2v-trust-store")


@pytest.mark.parametrize(
    "bad",
    [b"w0\t-5\n", b"w0\t1_000\n", "w0\t\u0663\n".encode(), b"w0\t+5\n", b"w0\t 5\n", b"w0\t5 \n",
     b"w0\t5\nw0\t4\n", b"\t5\n", b"w 0\t5\n", b"w0 5\n", b"\xff\t5\n", "w\u20280\t5\n".encode()],
)  # fmt: skip
def test_vocab_parsing_is_strict(bad: bytes) -> None:
    with pytest.raises(ValueError, match=r"vocab\.tsv line"):
        registry.parse_vocab_tsv(bad)
    with pytest.raises(ArtifactError, match=r"x/vocab\.tsv line"):
        parse_vocab_tsv(bad, "x/vocab.tsv")


def test_vocab_parsing_accepts_what_publish_writes() -> None:
    assert parse_vocab_tsv("é\t3\nw1\t0\n".encode()) == (["é", "w1"], [3, 0])
    assert parse_vocab_tsv(b"") == ([], [])


def _folder(tmp_path: Path, array: np.ndarray) -> Path:
    """A local version folder with three words, ``array`` as vectors.npy and a manifest covering both."""
    import hashlib

    folder = tmp_path / "v"
    folder.mkdir()
    np.save(folder / "vectors.npy", array)
    (folder / "vocab.tsv").write_bytes(b"a\t3\nb\t2\nc\t1\n")
    files = [
        {"path": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n in ("vectors.npy", "vocab.tsv")
        for d in [(folder / n).read_bytes()]
    ]
    manifest = {
        "kind": "embedding", "format_version": 1, "name": "x", "version": "v", "files": files,
        "created_at": "2026-01-01T00:00:00.000Z", "parent": None, "aligned_to": None, "metrics": {},
        "lineage": {}, "config": {}, "gate": {}, "vocab_size": 3, "vector_size": 2,
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 2), dtype=np.float64), "2-D float64"),
        (np.zeros(3, dtype=np.float32), "1-D float32"),
        (np.zeros((3, 2, 1), dtype=np.float32), "3-D float32"),
        (np.zeros((4, 2), dtype=np.float32), "has 4 rows but vocab.tsv has 3"),
    ],
)
def test_npy_parsing_checks_dtype_rank_and_shape(tmp_path: Path, array: np.ndarray, message: str) -> None:
    from corpus2vec.model.embeddings import Embeddings

    with pytest.raises(ValueError, match=message):
        Embeddings(_folder(tmp_path, array))
    buffer = io.BytesIO()
    np.save(buffer, array)
    with pytest.raises(ArtifactError, match=message):
        load_vectors(buffer.getvalue(), 3, "v.npy")


def test_a_forged_npy_header_is_refused_before_allocating() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 2), dtype=np.float32))
    forged = buffer.getvalue().replace(b"(2, 2)", b"(9999999999, 9999)")
    with pytest.raises(ArtifactError, match="declares shape"):
        load_vectors(forged, None, "v.npy")


def test_word2vec_header_is_bounded_by_the_file_size() -> None:
    buffer = io.BytesIO()
    write_word2vec_binary(buffer, ["a", "b"], np.ones((2, 3), dtype=np.float32))
    body = buffer.getvalue().split(b"\n", 1)[1]
    for header in (b"99999999999 300\n", b"3 3\n"):
        with pytest.raises(ValueError, match=r"only .* bytes follow it"):
            read_word2vec_binary(io.BytesIO(header + body))
    with pytest.raises(ValueError, match="not a word2vec binary file"):
        read_word2vec_binary(io.BytesIO("\u00b2 3\n".encode() + body))  # superscript two is not a digit
    words, vectors = read_word2vec_binary(io.BytesIO(buffer.getvalue()))
    assert words == ["a", "b"] and vectors.shape == (2, 3)
