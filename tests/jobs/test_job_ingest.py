"""Readers: listing, format detection, WET parsing and every kind of bad input (no Spark)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus2vec.jobs.ingest import (
    FileReport,
    detect_format,
    expand_corpus,
    iter_warc_records,
    language_matches,
    read_documents,
    sample_files,
)
from corpus2vec.model.config import CorpusConfig
from tests.conftest import SHARED_DATA

WET_SAMPLE = SHARED_DATA / "webcrawl" / "whirlwind_whirlwind.warc.wet.gz"


def read_all(path: Path, cfg: CorpusConfig | None = None) -> tuple[list[tuple[str, str]], FileReport]:
    """(doc_id, text) of every document in ``path`` plus the file report."""
    report = FileReport(str(path))
    docs = [
        (doc_id, "".join(pieces))
        for doc_id, pieces in read_documents(str(path), cfg or CorpusConfig(), report)
    ]
    return docs, report


def write_jsonl_gz(path: Path, records: list[object]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


# ----------------------------------------------------------------------------- listing


def test_expand_directories_globs_and_paths_lists(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/1.txt", "a/2.txt", "a/.hidden.txt", "b.jsonl"):
        (tmp_path / name).write_text("x\n")
    assert expand_corpus([str(tmp_path / "a")]) == [str(tmp_path / "a/1.txt"), str(tmp_path / "a/2.txt")]
    assert expand_corpus([str(tmp_path / "*.jsonl")]) == [str(tmp_path / "b.jsonl")]
    listing = tmp_path / "wet.paths.gz"
    listing.write_bytes(gzip.compress(b"a/2.txt\n" + str(tmp_path / "b.jsonl").encode() + b"\n\n"))
    assert expand_corpus([str(listing)]) == [str(tmp_path / "a/2.txt"), str(tmp_path / "b.jsonl")]
    crawl = CorpusConfig(paths_prefix="s3://commoncrawl/")
    # issue 13: with a prefix set, every entry must lie under it (the local absolute entry does not)
    with pytest.raises(ValueError, match=r"line 2: .* another scheme"):
        expand_corpus([str(listing)], crawl)
    listing.write_bytes(gzip.compress(b"a/2.txt\ns3://commoncrawl/c.txt\n"))
    assert expand_corpus([str(listing)], crawl) == ["s3://commoncrawl/a/2.txt", "s3://commoncrawl/c.txt"]
    listing.write_bytes(gzip.compress(b"a/2.txt\n" + str(tmp_path / "b.jsonl").encode() + b"\n\n"))
    everything = expand_corpus([str(tmp_path)])
    assert len(everything) == 3 and expand_corpus(
        [str(tmp_path)], CorpusConfig(sample_files=2)
    ) == sample_files(everything, 2)


def test_expand_missing_location_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        expand_corpus([str(tmp_path / "nope.txt")])
    with pytest.raises(ValueError, match="matched no files"):
        expand_corpus([str(tmp_path / "*.nothing")])


def test_sample_files_is_deterministic_and_spread() -> None:
    files = [f"s3://crawl/segment-{i:03d}.warc.wet.gz" for i in range(100)]
    picked = sample_files(files, 10)
    assert picked == sample_files(list(reversed(files)), 10) == sorted(picked)
    assert len(picked) == 10 and picked != files[:10]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.txt", "text"),
        ("a.txt.gz", "text"),
        ("a.bz2", "text"),
        ("a.jsonl.gz", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
        ("CC-MAIN-1.warc.wet.gz", "wet"),
        ("CC-MAIN-1.warc.gz", "warc"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name, CorpusConfig()) == fmt
    assert detect_format(name, CorpusConfig(format="jsonl")) == "jsonl"


# ----------------------------------------------------------------------------- good input


def test_text_lines_blocks_and_compression(tmp_path: Path) -> None:
    body = "first doc line\nsecond doc\n\n\nthird\nstill third\n"
    (tmp_path / "plain.txt").write_text(body)
    (tmp_path / "c.txt.bz2").write_bytes(bz2.compress(body.encode()))
    docs, report = read_all(tmp_path / "plain.txt")
    assert [t for _, t in docs] == ["first doc line", "second doc", "third", "still third"]
    assert docs[0][0] == f"{tmp_path / 'plain.txt'}#0" and not report.rejects
    blocks, _ = read_all(tmp_path / "c.txt.bz2", CorpusConfig(doc_per="block"))
    assert [t.split() for _, t in blocks] == [
        ["first", "doc", "line", "second", "doc"],
        ["third", "still", "third"],
    ]


def test_zstd_text_is_read(tmp_path: Path) -> None:
    out = pa.BufferOutputStream()
    with pa.CompressedOutputStream(out, "zstd") as stream:
        stream.write(b"zstd line one\nline two\n")
    (tmp_path / "z.txt.zst").write_bytes(out.getvalue().to_pybytes())
    docs, report = read_all(tmp_path / "z.txt.zst")
    assert [t for _, t in docs] == ["zstd line one", "line two"] and not report.rejects


def test_huge_single_line_is_streamed_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "text8.txt.gz"
    path.write_bytes(gzip.compress(b"word " * 600_000))  # 3 MB, one line
    report = FileReport(str(path))
    docs = [list(pieces) for _, pieces in read_documents(str(path), CorpusConfig(), report)]
    assert len(docs) == 1
    assert len(docs[0]) >= 3 and max(map(len, docs[0])) <= 1 << 20


def test_jsonl_ids_and_bad_records(tmp_path: Path) -> None:
    path = write_jsonl_gz(
        tmp_path / "d.jsonl.gz",
        [
            {"id": "a", "text": "alpha"},
            {"text": "no id"},
            {"id": 7, "body": "x"},
            {"id": 8, "text": 3},
            "{not json",
            [1],
        ],
    )
    docs, report = read_all(path)
    assert docs == [("a", "alpha"), (f"{path}#1", "no id")]
    assert [(r["record"], r["reason"].split(" ")[0]) for r in report.rejects] == [
        (2, "field"),
        (3, "field"),
        (4, "invalid"),
        (5, "not"),
    ]
    assert "missing" in report.rejects[0]["reason"] and "int, not a string" in report.rejects[1]["reason"]
    assert not report.rejected and report.records_skipped == 4


def test_parquet_text_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["one two", None]}), tmp_path / "t.parquet")
    docs, report = read_all(tmp_path / "t.parquet")
    assert docs == [("p1", "one two")] and report.records_skipped == 1


def test_invalid_utf8_is_replaced_and_counted(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café au lait\nnaïve\n".encode("latin-1"))
    docs, report = read_all(tmp_path / "latin1.txt")
    assert [t for _, t in docs] == ["caf\ufffd au lait", "na\ufffdve"]
    assert report.decode_errors == 2 and not report.rejected


# ----------------------------------------------------------------------------- WET


def test_warc_parser_on_handmade_records() -> None:
    def record(kind: str, body: bytes, lang: str = "eng") -> bytes:
        head = f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:{kind}{len(body)}>\r\n"
        head += f"WARC-Identified-Content-Language: {lang}\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body + b"\r\n\r\n"

    data = (
        record("warcinfo", b"software: x")
        + record("conversion", b"Hello\r\nworld")
        + record("conversion", b"Hola", "spa")
    )
    records = list(iter_warc_records(io.BytesIO(data)))
    assert [h["warc-type"] for h, _ in records] == ["warcinfo", "conversion", "conversion"]
    assert records[1][1] == b"Hello\r\nworld"
    with pytest.raises(EOFError):
        list(iter_warc_records(io.BytesIO(data[:-10])))


def test_language_filter() -> None:
    assert (
        language_matches("eng,fra", "en") and language_matches("eng", "eng") and language_matches(None, None)
    )
    assert not language_matches("spa", "en") and not language_matches(None, "en")
    assert language_matches("spa", "de,es")


@pytest.mark.skipif(not WET_SAMPLE.exists(), reason="shared Common Crawl samples not present")
def test_real_wet_file() -> None:
    docs, report = read_all(WET_SAMPLE)
    assert len(docs) == 1 and not report.rejects
    doc_id, text = docs[0]
    assert doc_id.startswith("<urn:uuid:") and text.startswith("Escopete")
    filtered, report = read_all(WET_SAMPLE, CorpusConfig(language="en"))
    assert filtered == [] and report.filtered_language == 1
    kept, _ = read_all(WET_SAMPLE, CorpusConfig(language="es"))
    assert len(kept) == 1


@pytest.mark.skipif(not WET_SAMPLE.exists(), reason="shared Common Crawl samples not present")
def test_warc_instead_of_wet_is_rejected_with_a_hint() -> None:
    _, report = read_all(WET_SAMPLE.parent / "whirlwind_whirlwind.warc.gz")
    assert report.rejected and ".warc.wet.gz" in report.rejects[0]["reason"]


# ----------------------------------------------------------------------------- bad files


def rejection(path: Path, cfg: CorpusConfig | None = None) -> str:
    _, report = read_all(path, cfg)
    assert report.rejected, f"{path.name} should have been rejected"
    (entry,) = [r for r in report.rejects if r["record"] is None]
    assert entry["file"] == str(path)
    return entry["reason"]


def test_truncated_gzip_is_rejected_but_good_prefix_kept(tmp_path: Path) -> None:
    data = gzip.compress(("".join(f"line {i} words here\n" for i in range(300_000))).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    docs, report = read_all(path)
    assert report.rejected and "truncated" in report.rejects[0]["reason"]
    assert docs and docs[0][1] == "line 0 words here"


def test_corrupt_gzip_is_rejected(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"hello world\n" * 1000))
    data[20:40] = b"\xff" * 20
    (tmp_path / "bad.txt.gz").write_bytes(bytes(data))
    assert "unreadable" in rejection(tmp_path / "bad.txt.gz")


def test_junk_bytes_are_rejected(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 64
    (tmp_path / "junk.txt").write_bytes(junk)
    (tmp_path / "junk.gz").write_bytes(b"PK\x03\x04" + junk)
    assert "binary" in rejection(tmp_path / "junk.txt")
    assert "not a valid compressed file" in rejection(tmp_path / "junk.gz")


def test_empty_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty.txt.gz").write_bytes(gzip.compress(b""))
    assert "empty" in rejection(tmp_path / "empty.txt")
    assert "no content" in rejection(tmp_path / "empty.txt.gz")


def test_parquet_without_the_column_is_rejected(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nocol.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    assert "no column 'text'" in rejection(tmp_path / "nocol.parquet")
    assert "not a string" in rejection(tmp_path / "ints.parquet")
    assert "not a readable Parquet" in rejection(tmp_path / "fake.parquet")


def test_file_that_disappeared_is_rejected(tmp_path: Path) -> None:
    assert "disappeared" in rejection(tmp_path / "gone.txt")
    assert "disappeared" in rejection(tmp_path / "gone.parquet")
