"""Benchmark behind docs/trust.md: records/s of the hand-written WARC reader vs warcio and fastwarc,
and what each does with bad input. Not part of the test suite (warcio/fastwarc are not dependencies).

    pip install warcio fastwarc && python tests/bench/bench_warc.py
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable
from pathlib import Path

from fastwarc.warc import ArchiveIterator as FastIter
from warcio.archiveiterator import ArchiveIterator as WarcioIter

from corpus2vec.jobs.ingest import iter_warc_records

SAMPLE = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "webcrawl" / "whirlwind_whirlwind.warc.wet.gz"
)


def _hand(data: bytes, gz: bool) -> int:
    raw = gzip.GzipFile(fileobj=io.BytesIO(data)) if gz else io.BytesIO(data)
    return sum(1 for _, body in iter_warc_records(io.BufferedReader(raw, 1 << 16)) if body is not None)


def _warcio(data: bytes, gz: bool) -> int:
    return sum(1 for r in WarcioIter(io.BytesIO(data)) if r.content_stream().read() is not None)


def _fast(data: bytes, gz: bool) -> int:
    return sum(1 for r in FastIter(io.BytesIO(data), parse_http=False) if r.reader.read() is not None)


def _record(body: bytes, length: str | None = None) -> bytes:
    head = "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Record-ID: <urn:x>\r\n"
    return (
        (head + f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode()
        + body
        + b"\r\n\r\n"
    )


def main() -> None:
    """Print records/s (best of 3) on 4,000 copies of the sample's conversion record, then bad-input behaviour."""
    src = gzip.decompress(SAMPLE.read_bytes())
    records = [b"WARC/1.0\r\n" + r for r in src.split(b"WARC/1.0\r\n") if r][1:]
    plain = b"".join(records) * 4000
    members = b"".join(gzip.compress(r, 1) for r in records) * 4000  # one gzip member per record, as in WET
    readers: dict[str, Callable[[bytes, bool], int]] = {
        "hand-written": _hand,
        "warcio": _warcio,
        "fastwarc": _fast,
    }
    for name, read in readers.items():
        for gz, data in ((False, plain), (True, members)):
            best = min(_timed(read, data, gz) for _ in range(3))
            print(
                f"{name:13s} gzip={gz!s:5s} {4000 / best:10,.0f} records/s {len(data) / best / 1e6:6.0f} MB/s"
            )
    bad = {
        "Content-Length -1": _record(b"first") + _record(b"evil", "-1") + _record(b"third"),
        "Content-Length abc": _record(b"first") + _record(b"evil", "abc") + _record(b"third"),
        "truncated body": (_record(b"first") + _record(b"x" * 100))[:-60],
    }
    bodies: dict[str, Callable[[bytes], list[bytes]]] = {
        "hand-written": lambda d: [b or b"" for _, b in iter_warc_records(io.BytesIO(d))],
        "warcio": lambda d: [r.content_stream().read() for r in WarcioIter(io.BytesIO(d))],
        "fastwarc": lambda d: [r.reader.read() for r in FastIter(io.BytesIO(d), parse_http=False)],
    }
    for label, data in bad.items():
        for name, read_bodies in bodies.items():
            try:
                print(f"{label:20s} {name:13s} -> record sizes {[len(b) for b in read_bodies(data)]}")
            except Exception as exc:  # what each library raises is the point of the comparison
                print(f"{label:20s} {name:13s} -> {type(exc).__name__}: {str(exc)[:80]}")


def _timed(read: Callable[[bytes, bool], int], data: bytes, gz: bool) -> float:
    started = time.perf_counter()
    read(data, gz)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
