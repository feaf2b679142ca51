"""Stage contracts: one typed reader per stage output that checks kind, fields and checksums."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from corpus2vec.model import storage
from corpus2vec.model.contracts import (
    STAGE_MANIFEST,
    ContractError,
    Pairs,
    Tokens,
    Vocab,
    entry_for,
)


def vocab_manifest(stage: str, **changes: object) -> Vocab:
    """A vocab manifest for whatever ``vocab.parquet`` holds at ``stage`` (not written yet)."""
    fields = {
        "files": (entry_for(stage, "vocab.parquet", rows=1),),
        "key": "k1",
        "tokens_digest": "0" * 64,
        "vocab_size": 1,
        "total_tokens": 10,
        "retained_tokens": 9,
        "coverage": 0.9,
        "types": 2,
        "min_count": 1,
        "max_vocab_size": None,
        **changes,
    }
    return Vocab(**fields)  # type: ignore[arg-type]


def test_a_manifest_is_written_last_read_back_typed_and_digested(store: str) -> None:
    stage = storage.join(store, "vocab")
    assert Vocab.finished(stage) is None
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"hello")
    written = vocab_manifest(stage).write(stage)
    read = Vocab.read(stage)
    assert read == written and read.uri == stage
    assert read.files[0].to_dict() == {
        "path": "vocab.parquet",
        "bytes": 5,
        "rows": 1,
        "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    }
    raw = Path(stage, STAGE_MANIFEST).read_bytes()
    assert json.loads(raw)["kind"] == "vocab" and read.digest == hashlib.sha256(raw).hexdigest()
    assert read.read_file("vocab.parquet") == b"hello"


def test_missing_and_mismatched_manifests_are_clear_errors(store: str) -> None:
    stage = storage.join(store, "pairs")
    with pytest.raises(FileNotFoundError, match="the pairs stage has not finished there; run it first"):
        Pairs.read(stage)
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"x")
    vocab_manifest(stage).write(stage)
    with pytest.raises(ContractError, match="is a 'vocab' manifest, expected 'pairs'"):
        Pairs.read(stage)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("vocab_size"), "has no 'vocab_size'"),
        (lambda m: m.update(vocab_size="12"), "field 'vocab_size' must be a non-negative integer"),
        (lambda m: m.update(vocab_size=-1), "must be a non-negative integer"),
        (lambda m: m.update(coverage=True), "field 'coverage' must be a number"),
        (
            lambda m: m.update(files=[{"path": "../../etc/passwd", "bytes": 1, "sha256": "x"}]),
            "not a file name",
        ),
        (lambda m: m.update(files=[{"path": "vocab.parquet"}]), "lacks"),
        (lambda m: m.update(format=1), "manifest format 1"),
        (lambda m: m.update(kind="tokens"), "expected 'vocab'"),
    ],
)
def test_a_hand_edited_manifest_names_the_file_and_the_field(store: str, edit, message: str) -> None:
    stage = storage.join(store, "vocab")
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"x")
    raw = vocab_manifest(stage).to_dict()
    edit(raw)
    storage.write_json_atomic(storage.join(stage, STAGE_MANIFEST), raw)
    with pytest.raises(ContractError, match=message) as err:
        Vocab.read(stage)
    assert STAGE_MANIFEST in str(err.value)


def test_not_json_and_oversized_manifests_are_refused(store: str) -> None:
    stage = storage.join(store, "tokens")
    Path(stage).mkdir(parents=True)
    Path(stage, STAGE_MANIFEST).write_text("{not json")
    with pytest.raises(ContractError, match="is not JSON"):
        Tokens.read(stage)
    Path(stage, STAGE_MANIFEST).write_text("[]")
    with pytest.raises(ContractError, match="not a manifest object"):
        Tokens.read(stage)


def test_a_changed_payload_file_fails_its_checksum(store: str) -> None:
    stage = storage.join(store, "vocab")
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"hello")
    vocab_manifest(stage).write(stage)
    Path(stage, "vocab.parquet").write_bytes(b"jello")
    with pytest.raises(ContractError, match="does not match the size/sha256 in its manifest"):
        Vocab.read(stage).read_file("vocab.parquet")
    with pytest.raises(ContractError, match=r"does not list other\.bin"):
        Vocab.read(stage).read_file("other.bin")


def test_a_manifest_the_reader_would_refuse_is_never_written(store: str) -> None:
    stage = storage.join(store, "vocab")
    storage.write_bytes_atomic(storage.join(stage, "vocab.parquet"), b"x")
    with pytest.raises(ContractError, match="must be a non-negative integer"):
        vocab_manifest(stage, vocab_size=-3).write(stage)
    assert Vocab.finished(stage) is None  # the stage stays unfinished, so a rerun can clear and redo it


def test_seeds_may_be_negative_counts_may_not(store: str) -> None:
    from tests.model.pairs_fixtures import planted_corpus

    planted = planted_corpus(store, pairs=1_000, shards=1, row_group_rows=1_000)
    pairs = Pairs.read(planted.pairs_uri)
    rewritten = dataclasses.replace(pairs, seed=-1).write(planted.pairs_uri)
    assert Pairs.read(planted.pairs_uri).seed == -1 == rewritten.seed
    with pytest.raises(ContractError, match="'total_pairs' must be a non-negative integer"):
        dataclasses.replace(pairs, total_pairs=-1).write(planted.pairs_uri)
