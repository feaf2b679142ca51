"""The store helpers on a local folder and on S3 (moto server on loopback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corpus2vec.model import storage


def test_manifest_is_written_last_and_lists_checksums(store: str) -> None:
    stage = storage.join(store, "runs", "r1", "vocab")
    assert storage.read_manifest(stage) is None
    storage.write_bytes_atomic(storage.join(stage, "a.bin"), b"hello")
    entry = storage.file_entry(stage, "a.bin", rows=1)
    manifest = storage.write_manifest(stage, "vocab", [entry], vocab_size=1)
    assert storage.read_manifest(stage, "vocab") == manifest
    assert entry == {
        "path": "a.bin",
        "bytes": 5,
        "rows": 1,
        "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    }


def test_atomic_write_leaves_no_temp_files(store: str) -> None:
    url = storage.join(store, "x", "doc.json")
    storage.write_json_atomic(url, {"b": 1, "a": 2})
    assert os.listdir(Path(url).parent) == ["doc.json"]
    assert Path(url).read_text() == json.dumps({"a": 2, "b": 1}, indent=2, sort_keys=True) + "\n"


def test_missing_and_mismatched_manifests_are_clear_errors(store: str) -> None:
    with pytest.raises(FileNotFoundError, match="has not finished"):
        storage.require_manifest(storage.join(store, "pairs"), "pairs")
    storage.write_manifest(storage.join(store, "pairs"), "vocab", [])
    with pytest.raises(ValueError, match="expected 'pairs'"):
        storage.read_manifest(storage.join(store, "pairs"), "pairs")


def test_corrupt_json_names_the_file(store: str) -> None:
    url = storage.join(store, "bad.json")
    Path(url).write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        storage.read_json(url)


def test_same_helpers_work_on_s3(s3_bucket: str) -> None:
    stage = storage.join(s3_bucket, "runs", "r1", "pairs")
    storage.write_bytes_atomic(storage.join(stage, "part-00000.parquet"), b"\x00" * 10)
    storage.write_manifest(stage, "pairs", [storage.file_entry(stage, "part-00000.parquet", rows=0)])
    manifest = storage.require_manifest(stage, "pairs")
    assert manifest["files"][0]["bytes"] == 10
    storage.remove(stage)
    assert not storage.exists(storage.join(stage, "_manifest.json"))
