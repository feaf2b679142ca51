"""The store helpers on a local folder and on S3 (moto server on loopback)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corpus2vec.model import storage
from corpus2vec.model.contracts import Vocab
from tests.model.test_contracts import vocab_manifest


def test_atomic_write_leaves_no_temp_files(store: str) -> None:
    url = storage.join(store, "x", "doc.json")
    storage.write_json_atomic(url, {"b": 1, "a": 2})
    assert os.listdir(Path(url).parent) == ["doc.json"]
    assert Path(url).read_text() == json.dumps({"a": 2, "b": 1}, indent=2, sort_keys=True) + "\n"


def test_corrupt_json_names_the_file(store: str) -> None:
    url = storage.join(store, "bad.json")
    Path(url).write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        storage.read_json(url)


def test_same_helpers_work_on_s3(s3_bucket: str) -> None:
    stage = storage.join(s3_bucket, "runs", "r1", "vocab")
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"\x00" * 10)
    written = vocab_manifest(stage).write(stage)
    manifest = Vocab.read(stage)
    assert manifest == written and manifest.files[0].bytes == 10 and manifest.digest == written.digest
    storage.remove(stage)
    assert not storage.exists(storage.join(stage, "_manifest.json"))
