"""Issue 13, ingest: hostile records become named rejects, memory stays bounded by
``corpus.max_record_bytes``, paths lists are streamed and stay within their scheme/prefix,
and a bounded fuzz run shows every reader and parser either reads or rejects by name."""

from __future__ import annotations

import gzip
import io
import json
import random
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.jobs.ingest import FileReport, expand_corpus, read_documents
from corpus2vec.model.artifact import ArtifactError, load_vectors, parse_vocab_tsv
from corpus2vec.model.config import CorpusConfig, load_config
from corpus2vec.model.word2vec_format import read_word2vec_binary, write_word2vec_binary
from tests.conftest import SHARED_DATA

WET_SAMPLE = SHARED_DATA / "webcrawl" / "whirlwind_whirlwind.warc.wet.gz"


def read_all(path: Path, cfg: CorpusConfig | None = None) -> tuple[list[str], FileReport]:
    report = FileReport(str(path))
    docs = ["".join(pieces) for _, pieces in read_documents(str(path), cfg or CorpusConfig(), report)]
    return docs, report


def jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def wet_record(body: bytes, length: str | None = None, kind: str = "conversion") -> bytes:
    head = f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:{len(body)}>\r\n"
    head += f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    return head.encode() + body + b"\r\n\r\n"


GOOD = json.dumps({"text": "a good record"}).encode()


def test_deeply_nested_json_is_a_named_record_reject(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "n.jsonl", [GOOD, b"[" * 200_000 + b"]" * 200_000, GOOD])
    docs, report = read_all(path)
    assert docs == ["a good record"] * 2 and not report.rejected
    assert report.rejects == [
        {"file": str(path), "record": 1, "reason": "invalid JSON (nested too deeply: RecursionError)"}
    ]


def test_a_huge_number_is_a_named_record_reject_and_later_records_are_kept(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "h.jsonl", [GOOD, b'{"text": "x", "n": ' + b"9" * 100_000 + b"}", GOOD])
    docs, report = read_all(path)
    assert docs == ["a good record"] * 2 and not report.rejected
    assert report.rejects[0]["record"] == 1 and "invalid JSON" in report.rejects[0]["reason"]


def test_a_negative_wet_content_length_does_not_swallow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.warc.wet"
    path.write_bytes(wet_record(b"first page") + wet_record(b"evil", "-1") + wet_record(b"third page"))
    docs, report = read_all(path)
    assert docs == ["first page"]
    assert report.rejected and "bad Content-Length '-1'" in report.rejects[0]["reason"]


def test_records_over_the_byte_cap_are_skipped_by_name_in_bounded_memory(tmp_path: Path) -> None:
    """A 48 MiB JSON line packed into a small gzip (the issue's 199 KiB -> 200 MB case, scaled)."""
    cfg = CorpusConfig(max_record_bytes=1 << 20)
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(GOOD + b"\n" + b'{"text": "' + b"a" * (48 << 20) + b'"}\n' + GOOD + b"\n")
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        docs, report = read_all(path, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert docs == ["a good record"] * 2
    assert report.rejects[0]["record"] == 1 and "max_record_bytes=1048576" in report.rejects[0]["reason"]
    assert peak < 8 << 20, peak


def test_wet_records_over_the_byte_cap_are_skipped_by_name(tmp_path: Path) -> None:
    path = tmp_path / "big.warc.wet"
    path.write_bytes(wet_record(b"small") + wet_record(b"b" * 5000) + wet_record(b"after"))
    docs, report = read_all(path, CorpusConfig(max_record_bytes=4096))
    assert docs == ["small", "after"] and not report.rejected
    assert report.rejects[0]["record"] == 1 and "max_record_bytes=4096" in report.rejects[0]["reason"]


def test_max_record_bytes_is_a_validated_setting() -> None:
    assert load_config("tiny", ["max_record_bytes=2048"]).corpus.max_record_bytes == 2048
    assert load_config("tiny", []).corpus.max_record_bytes == 64 << 20
    with pytest.raises(ValueError, match="max_record_bytes must be >= 1024"):
        load_config("tiny", ["max_record_bytes=0"])


def test_a_paths_list_is_decompressed_as_a_stream(tmp_path: Path) -> None:
    listing = tmp_path / "wet.paths.gz"
    listing.write_bytes(gzip.compress(b"x" * (64 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="line 1 is longer than 65536 bytes"):
            expand_corpus([str(listing)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (b"http://evil.example/x.wet.gz", "another scheme"),
        (b"s3://other-bucket/x.wet.gz", "another scheme"),
        (b"../../../etc/passwd", "climbs out of"),
        (b"segments//x.wet.gz", "climbs out of"),
    ],
)
def test_paths_list_entries_stay_in_the_lists_scheme(tmp_path: Path, entry: bytes, message: str) -> None:
    (tmp_path / "ok.txt").write_text("fine\n")
    listing = tmp_path / "wet.paths"
    listing.write_bytes(b"ok.txt\n" + entry + b"\n")
    with pytest.raises(ValueError, match=rf"wet\.paths line 2: entry .* {message}"):
        expand_corpus([str(listing)])


def test_paths_list_entries_stay_under_the_configured_prefix(tmp_path: Path) -> None:
    listing = tmp_path / "wet.paths"
    crawl = CorpusConfig(paths_prefix="s3://commoncrawl/")
    listing.write_bytes(b"crawl-data/a.wet.gz\ns3://commoncrawl/crawl-data/b.wet.gz\n")
    assert expand_corpus([str(listing)], crawl) == [
        "s3://commoncrawl/crawl-data/a.wet.gz",
        "s3://commoncrawl/crawl-data/b.wet.gz",
    ]
    for bad in (
        b"s3://commoncrawl-evil/x.gz",
        b"/etc/passwd",
        b"file:///etc/passwd",
        b"s3://commoncrawl/../x",
    ):
        listing.write_bytes(bad + b"\n")
        with pytest.raises(ValueError, match="line 1"):
            expand_corpus([str(listing)], crawl)


def test_an_object_store_paths_list_cannot_name_local_files(s3_bucket: str) -> None:
    from corpus2vec.model import storage

    for bad in (b"/etc/passwd", b"file:///etc/passwd", b"http://169.254.169.254/latest"):
        url = f"{s3_bucket}/lists/wet.paths"
        storage.write_bytes_atomic(url, b"crawl/a.wet.gz\n" + bad + b"\n")
        with pytest.raises(ValueError, match=r"line 2: .* another scheme"):
            expand_corpus([url])


# ----------------------------------------------------------------------------- fuzz


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One random damage: truncation, bit flips, an oversize decimal field, or inserted junk."""
    kind = rng.randrange(4)
    if kind == 0 or not data:
        return data[: rng.randrange(len(data) + 1)]
    buf = bytearray(data)
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return bytes(buf)
    at = rng.randrange(len(buf) + 1)
    if kind == 2:
        return (
            bytes(buf[:at])
            + rng.choice([b"99999999999999999999", b"-1", b"1e309", b"9" * 5000])
            + bytes(buf[at:])
        )
    return bytes(buf[:at]) + rng.randbytes(rng.randint(1, 64)) + bytes(buf[at:])


def _seeds() -> dict[str, bytes]:
    records = [json.dumps({"id": i, "text": f"doc {i} text"}).encode() for i in range(5)]
    wet = b"".join(wet_record(f"page {i} words".encode()) for i in range(4))
    return {
        "a.jsonl": b"\n".join(records) + b"\n",
        "a.jsonl.gz": gzip.compress(b"\n".join(records) + b"\n"),
        "a.warc.wet": wet,
        "a.warc.wet.gz": gzip.compress(wet),
        "a.txt": b"one line\ntwo line\n\nthree\n",
        "real.warc.wet.gz": WET_SAMPLE.read_bytes()[:60_000],
    }


def test_fuzz_ingest_readers_read_or_reject_by_name(tmp_path: Path) -> None:
    rng = random.Random(13)
    cfg = CorpusConfig(max_record_bytes=4096)
    seeds = _seeds()
    deadline, runs = time.monotonic() + 4.0, 0
    while time.monotonic() < deadline:
        name = rng.choice(sorted(seeds))
        path = tmp_path / name
        path.write_bytes(_mutate(rng, seeds[name]))
        report = FileReport(str(path))
        for doc_id, pieces in read_documents(str(path), cfg, report):  # never raises
            assert isinstance(doc_id, str) and all(isinstance(p, str) for p in pieces)
        for reject in report.rejects:
            assert reject["file"] == str(path) and reject["reason"], reject
        runs += 1
    assert runs > 50


def test_fuzz_word2vec_vocab_and_npy_parsers_read_or_reject_by_name() -> None:
    rng = random.Random(13)
    words = ["alpha", "beta", "γάμμα", "delta"]
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    w2v = io.BytesIO()
    write_word2vec_binary(w2v, words, vectors)
    npy = io.BytesIO()
    np.save(npy, vectors)
    vocab = "".join(f"{w}\t{10 - i}\n" for i, w in enumerate(words)).encode()
    deadline, runs = time.monotonic() + 3.0, 0
    while time.monotonic() < deadline:
        try:
            got_words, got = read_word2vec_binary(io.BytesIO(_mutate(rng, w2v.getvalue())))
            assert len(got_words) == len(got)
        except ValueError as exc:
            assert str(exc)
        try:
            got_words, counts = parse_vocab_tsv(_mutate(rng, vocab), "f/vocab.tsv")
            assert len(set(got_words)) == len(counts) and all(c >= 0 for c in counts)
        except ArtifactError as exc:
            assert "f/vocab.tsv" in str(exc)
        try:
            assert load_vectors(_mutate(rng, npy.getvalue()), None, "f/v.npy").dtype == np.float32
        except ArtifactError as exc:
            assert "f/v.npy" in str(exc)
        runs += 1
    assert runs > 100
