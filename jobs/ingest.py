"""Readers: corpus locations -> file URLs -> documents, with bad input skipped and counted.

Everything here is plain Python that runs inside Spark tasks (or a test) on one file
at a time; nothing imports Spark. Files are opened through fsspec, so the same
reader serves local folders and ``s3://`` (no hadoop-aws/s3a needed).

Bad input policy (one file never fails the whole stage):

* a file that cannot be opened, is not valid gzip/bz2/zstd, stops early (truncated),
  holds binary content (NUL bytes), is empty, is a Parquet file without the text
  column, or disappeared after listing is *rejected*: a reject entry
  ``{file, record: None, reason}`` is logged. Documents read before damage was
  found are kept (they were valid), but the file still counts as rejected;
* a bad record inside a good file (JSON that does not parse, text field missing or
  not a string) is skipped with a reject entry ``{file, record: N, reason}``;
* invalid UTF-8 is *not* a reject: it is decoded with U+FFFD, which the tokenizer
  drops, and the number of bad byte runs is counted as ``decode_errors``.

The stage (jobs/tokenize) fails when rejected files / all files exceeds
``CorpusConfig.max_bad_fraction``.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import functools
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import IO, Any

from corpus2vec.model.config import CorpusConfig
from corpus2vec.model.storage import get_fs, redact_text, redact_url

# A document: its stable id and its text as pieces (one piece, or many for huge lines).
Document = tuple[str, Iterable[str]]

MAX_REJECTS_PER_FILE = 20  # record-level rejects listed per file; the rest are only counted
_TEXT_CHUNK = 1 << 20  # characters read at a time: a 100 MB line never sits in memory whole
_SNIFF_BYTES = 8192
_COMPRESSION_EXTS = (".gz", ".gzip", ".bz2", ".zst", ".zstd")
_PATHS_EXTS = (".paths", ".paths.gz")
_LANGUAGE_ALIASES = {  # WET headers use ISO 639-3; users often type 639-1
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "nl": "nld",
    "ru": "rus", "zh": "zho", "ja": "jpn", "ko": "kor", "ar": "ara", "pl": "pol", "sv": "swe",
}  # fmt: skip


class RejectedFile(Exception):
    """A whole input file is unusable; the message is the reason stored in the rejects list."""


@dataclass
class FileReport:
    """What reading one file produced besides documents: rejects and counters."""

    file: str
    rejects: list[dict[str, Any]] = field(default_factory=list)
    records_skipped: int = 0
    decode_errors: int = 0
    filtered_language: int = 0
    rejected: bool = False

    def reject_record(self, record: int, reason: str) -> None:
        """Skip one record; list the first few per file, count them all."""
        self.records_skipped += 1
        if self.records_skipped <= MAX_REJECTS_PER_FILE:
            self.rejects.append({"file": self.file, "record": record, "reason": reason})

    def reject_file(self, reason: str) -> None:
        """Mark the whole file rejected (counts toward max_bad_fraction)."""
        self.rejected = True
        self.rejects.append({"file": self.file, "record": None, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for transport back to the driver."""
        return {
            "file": self.file,
            "rejects": self.rejects,
            "records_skipped": self.records_skipped,
            "decode_errors": self.decode_errors,
            "filtered_language": self.filtered_language,
            "rejected": self.rejected,
        }


# ----------------------------------------------------------------------------- listing


def expand_corpus(locations: Iterable[str], cfg: CorpusConfig | None = None) -> list[str]:
    """Sorted, de-duplicated file URLs for corpus ``locations``.

    A location is a file, a directory (searched recursively, hidden files skipped), a
    glob, any fsspec URL, or a paths list (``*.paths``/``*.paths.gz``, one URL or path
    per line, like Common Crawl's ``wet.paths.gz``; relative entries are resolved
    against ``cfg.paths_prefix`` or, when unset, the list's own folder). Raises
    ValueError when nothing matches, so a typo never yields an empty corpus.
    """
    files: set[str] = set()
    prefix = cfg.paths_prefix if cfg is not None else None
    for location in locations:
        found = _expand_one(str(location), prefix)
        if not found:
            raise ValueError(f"corpus location {location!r} matched no files; check the path or glob")
        files.update(found)
    result = sorted(files)
    if cfg is not None and cfg.sample_files is not None:
        result = sample_files(result, cfg.sample_files)
    return result


def _expand_one(location: str, paths_prefix: str | None) -> list[str]:
    fs, path = get_fs(location)
    protocol = _protocol(location)
    if any(ch in path for ch in "*?["):
        paths = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        paths = [p for p in fs.find(path) if not _hidden(p)]
    elif fs.exists(path):
        paths = [path]
    else:
        raise ValueError(f"corpus location {location!r} does not exist")
    urls = [_unstrip(protocol, p) for p in sorted(paths)]
    expanded: list[str] = []
    for url in urls:
        expanded.extend(_read_paths_list(url, paths_prefix) if url.endswith(_PATHS_EXTS) else [url])
    return expanded


def _read_paths_list(url: str, prefix: str | None) -> list[str]:
    """Entries of a Common-Crawl-style paths list; relative ones get ``prefix`` (default: the list's folder).

    The list is read line by line through a streaming decompressor (never
    decompressed whole), each line at most 64 KiB. An entry is data from whoever
    wrote the list, not user input: it must use the list's own scheme (a local list
    names local files, an ``s3://`` list ``s3://`` objects), relative entries may not
    climb out of their base with ``..``, and with ``corpus.paths_prefix`` set every
    entry must lie under the prefix. Anything else is a ValueError naming the line.
    """
    fs, path = get_fs(url)
    base = prefix.rstrip("/") if prefix else url.rsplit("/", 1)[0]
    entries = []
    with fs.open(path, "rb") as raw:
        inner: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if url.endswith(".gz") else raw
        stream = io.BufferedReader(inner, buffer_size=1 << 16)  # type: ignore[arg-type]  # readline(limit)
        for number, line in enumerate(_bounded_lines(stream, _MAX_PATHS_LINE), start=1):
            if line is None:
                raise ValueError(f"paths list {url} line {number} is longer than {_MAX_PATHS_LINE} bytes")
            entry = line.decode("utf-8", errors="strict").strip()
            if entry and not entry.startswith("#"):
                entries.append(_check_entry(entry, base, url, prefix, number))
    return entries


_MAX_PATHS_LINE = 1 << 16


def _check_entry(entry: str, base: str, list_url: str, prefix: str | None, number: int) -> str:
    """The entry as a URL, when it stays within the list's scheme (and prefix); else ValueError."""
    where = f"paths list {list_url} line {number}: entry {entry!r}"
    absolute = "://" in entry or entry.startswith("/")
    if not absolute:
        parts = entry.split("/")
        if ".." in parts or any(not p for p in parts[:-1]):
            raise ValueError(f"{where} climbs out of {base} ('..' or '//'); fix the list")
        return f"{base}/{entry}"
    scheme = _protocol(entry) if "://" in entry else ""
    if _scheme_family(scheme) != _scheme_family(_protocol(base if prefix else list_url)):
        raise ValueError(
            f"{where} uses another scheme than the list ({_protocol(list_url) or 'local paths'}); "
            "a paths list may only name files of its own store: fix the list"
        )
    if prefix and not _under(entry, prefix):
        raise ValueError(f"{where} is not under corpus.paths_prefix={prefix!r}; fix the list or the prefix")
    if "/../" in f"{entry}/":
        raise ValueError(f"{where} contains '..'; fix the list")
    return entry


def _scheme_family(scheme: str) -> str:
    return {"": "local", "file": "local", "local": "local", "s3a": "s3"}.get(scheme, scheme)


def _under(entry: str, prefix: str) -> bool:
    root = prefix.rstrip("/") + "/"
    return entry.removeprefix("file://").startswith(root.removeprefix("file://"))


def _protocol(location: str) -> str:
    return location.split("://", 1)[0] if "://" in location else ""


def _unstrip(protocol: str, path: str) -> str:
    """Put the protocol back on a path fsspec returned (local paths stay plain)."""
    if protocol in ("", "file", "local") or "://" in path:  # http(s) paths keep their scheme
        return path
    return f"{protocol}://{path}"


def _hidden(path: str) -> bool:
    """Hidden and marker files (``.tmp-*``, ``_SUCCESS``, ``_manifest.json``) are not corpus."""
    return path.rsplit("/", 1)[-1].startswith((".", "_"))


def sample_files(files: list[str], n: int) -> list[str]:
    """A deterministic subset of ``n`` files: the ``n`` with the smallest sha256(url), sorted.

    Hash ranking (not "first n") spreads the sample over the whole listing (all crawl
    segments, not just the first), and a file's rank does not depend on the order it
    was listed in, so the same listing always yields the same sample.
    """
    if n < 1:
        raise ValueError(f"corpus.sample_files must be >= 1, got {n}")
    ranked = sorted(files, key=lambda url: hashlib.sha256(url.encode()).hexdigest())
    return sorted(ranked[:n])


# ----------------------------------------------------------------------------- formats


def detect_format(url: str, cfg: CorpusConfig) -> str:
    """``text``, ``jsonl``, ``parquet`` or ``wet`` for ``url``: CorpusConfig.format, else the extension."""
    if cfg.format != "auto":
        return cfg.format
    name = url.lower()
    for ext in _COMPRESSION_EXTS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    if name.endswith(".warc.wet") or name.endswith(".wet"):
        return "wet"
    if name.endswith(".warc"):
        return "warc"  # rejected with a hint: the text lives in the WET files
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "text"


@contextlib.contextmanager
def open_decompressed(url: str) -> Iterator[io.BufferedReader]:
    """A buffered binary stream of ``url``'s content, decompressed by magic number.

    Sniffing the bytes (not trusting the extension) means a ``.txt`` that is really
    gzip still reads, and a ``.gz`` that is not gzip is rejected with a clear reason.
    """
    fs, path = get_fs(url)
    with contextlib.ExitStack() as stack:
        try:
            raw = stack.enter_context(fs.open(path, "rb"))
        except FileNotFoundError as exc:
            raise RejectedFile("file disappeared between listing and reading") from exc
        magic = raw.read(4)
        raw.seek(0)
        if not magic:
            raise RejectedFile("empty file (0 bytes)")
        stream: IO[bytes] = raw
        if magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic[:3] == b"BZh":
            stream = bz2.BZ2File(raw)
        elif magic == b"\x28\xb5\x2f\xfd":
            stream = _zstd_reader(raw)
        elif url.lower().endswith((".gz", ".gzip", ".bz2", ".zst", ".zstd")):
            raise RejectedFile(f"not a valid compressed file (starts with bytes {magic.hex()})")
        yield io.BufferedReader(stream, buffer_size=1 << 16)  # type: ignore[arg-type]


def _zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    """zstd through the ``zstandard`` package when installed, else pyarrow's bundled codec."""
    try:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    except ImportError:
        import pyarrow as pa

        if not pa.Codec.is_available("zstd"):
            raise RejectedFile(
                "zstd-compressed, but neither the zstandard package nor pyarrow's zstd codec "
                "is available; pip install zstandard"
            ) from None
        return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd")  # type: ignore[return-value]


# Decoding errors are counted, not fatal: U+FFFD replaces each bad run.
_DECODE_ERRORS = [0]


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    _DECODE_ERRORS[0] += 1
    return "\ufffd", exc.end  # type: ignore[attr-defined]


codecs.register_error("c2v-count", _count_and_replace)


def _check_not_binary(stream: io.BufferedReader) -> None:
    head = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    if not head:
        raise RejectedFile("no content after decompression")
    if b"\x00" in head:
        raise RejectedFile("binary content (NUL bytes), not text")


def _text_stream(stream: io.BufferedReader) -> io.TextIOWrapper:
    _check_not_binary(stream)
    return io.TextIOWrapper(stream, encoding="utf-8", errors="c2v-count", newline=None)


# ----------------------------------------------------------------------------- readers


def read_text(stream: io.BufferedReader, url: str, doc_per: str) -> Iterator[Document]:
    """Plain text: one document per line (``doc_per="line"``) or per blank-line block.

    Lines are streamed in 1M-character pieces, so a text8-style single 100 MB line
    reaches the tokenizer piece by piece instead of as one giant string.
    """
    text = _text_stream(stream)
    pieces = _line_pieces(text) if doc_per == "line" else _block_pieces(text)
    for number, group in groupby(pieces, key=itemgetter(0)):
        yield f"{_shown(url)}#{number}", (piece for _, piece in group)


def _line_pieces(text: IO[str]) -> Iterator[tuple[int, str]]:
    """(line number, piece) for every piece of every non-blank line."""
    line = 0
    while chunk := text.read(_TEXT_CHUNK):
        parts = chunk.split("\n")
        for i, part in enumerate(parts):
            if i:
                line += 1
            if part and not part.isspace():
                yield line, part


def _block_pieces(text: IO[str]) -> Iterator[tuple[int, str]]:
    """(block number, piece): a block ends at a blank line; lines stay separated by a newline."""
    block, seen_content, line_has_content = 0, False, False
    while chunk := text.read(_TEXT_CHUNK):
        parts = chunk.split("\n")
        for i, part in enumerate(parts):
            if i:  # a line ended before this part
                if not line_has_content and seen_content:
                    block, seen_content = block + 1, False
                line_has_content = False
            if part and not part.isspace():
                line_has_content = seen_content = True
                yield block, part + ("\n" if i < len(parts) - 1 else "")


def read_jsonl(
    stream: io.BufferedReader, url: str, cfg: CorpusConfig, report: FileReport
) -> Iterator[Document]:
    """JSON lines: ``cfg.text_field`` is the text, ``cfg.id_field`` (when a string/int) the id.

    Lines are read as bytes, at most ``cfg.max_record_bytes`` at a time: a longer
    line is skipped (and reported) without ever being held whole. Every way a line
    can fail to parse, including nesting deep enough for RecursionError and a number
    too long for ``int()``, is a named record reject, never a failed task.
    """
    _check_not_binary(stream)
    for number, line in enumerate(_bounded_lines(stream, cfg.max_record_bytes)):
        if line is None:
            report.reject_record(
                number, f"record larger than corpus.max_record_bytes={cfg.max_record_bytes} bytes; skipped"
            )
            continue
        if not line.strip():
            continue
        record, why = _parse_json(line.decode("utf-8", errors="c2v-count"))
        if why is not None:
            report.reject_record(number, why)
            continue
        if not isinstance(record, dict):
            report.reject_record(number, f"not a JSON object but {type(record).__name__}")
            continue
        text = record.get(cfg.text_field)
        if not isinstance(text, str):
            why = "missing" if text is None else f"a {type(text).__name__}, not a string"
            report.reject_record(number, f"field {cfg.text_field!r} is {why}")
            continue
        yield _doc_id(record.get(cfg.id_field), url, number), (text,)


def _parse_json(line: str) -> tuple[Any, str | None]:
    """(value, None) or (None, reason): the reasons a hostile line can give, each by name."""
    try:
        return json.loads(line), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply: RecursionError)"
    except MemoryError:
        return None, "invalid JSON (a value too large to parse: MemoryError)"
    except ValueError as exc:  # e.g. an integer literal over Python's 4300-digit limit
        return None, f"invalid JSON ({str(exc)[:120]})"


def _bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Each line of ``stream`` (newline included), or None for a line longer than ``limit`` bytes.

    An overlong line is drained in ``limit``-sized reads, so memory stays bounded
    by the cap whatever the input.
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (more := stream.readline(limit + 1)) and not more.endswith(b"\n"):
            pass
        yield None


def _doc_id(value: Any, url: str, number: int) -> str:
    """The record's own id when it has a usable one, else ``url#record``."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{_shown(url)}#{number}"


@functools.lru_cache(maxsize=256)
def _shown(url: str) -> str:
    """The URL as recorded in document ids and rejects: credentials and signatures removed."""
    return redact_url(url)


def read_parquet(url: str, cfg: CorpusConfig, report: FileReport) -> Iterator[Document]:
    """Parquet: column ``cfg.text_field`` (string) is the text, ``cfg.id_field`` the optional id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = get_fs(url)
    try:
        handle = fs.open(path, "rb")
    except FileNotFoundError as exc:
        raise RejectedFile("file disappeared between listing and reading") from exc
    with handle:
        try:
            pfile = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as exc:
            raise RejectedFile(f"not a readable Parquet file ({exc})") from exc
        names = pfile.schema_arrow.names
        if cfg.text_field not in names:
            raise RejectedFile(f"Parquet file has no column {cfg.text_field!r} (columns: {names})")
        text_type = pfile.schema_arrow.field(cfg.text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            raise RejectedFile(f"Parquet column {cfg.text_field!r} is {text_type}, not a string")
        columns = [cfg.text_field] + ([cfg.id_field] if cfg.id_field in names else [])
        number = 0
        for batch in pfile.iter_batches(batch_size=4096, columns=columns):
            texts = batch.column(0).to_pylist()
            ids = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
            for text, doc in zip(texts, ids, strict=True):
                if text is None:
                    report.reject_record(number, f"column {cfg.text_field!r} is null")
                elif len(text) > cfg.max_record_bytes:  # characters >= bytes / 4: a cheap, safe bound
                    report.reject_record(
                        number, f"text longer than corpus.max_record_bytes={cfg.max_record_bytes}; skipped"
                    )
                else:
                    yield _doc_id(doc, url, number), (text,)
                number += 1


def iter_warc_records(
    stream: IO[bytes], max_record_bytes: int = 64 << 20
) -> Iterator[tuple[dict[str, str], bytes | None]]:
    """(headers with lower-case names, body bytes) of each WARC record in ``stream``.

    The body is None for a record longer than ``max_record_bytes``: it is skipped
    in bounded reads and the caller reports it. Damage that makes the rest of the
    file unparseable raises: a header that is not ``WARC/1.x``, a missing or
    non-decimal ``Content-Length`` (``-1`` would otherwise swallow the rest of the
    file as one record), an overlong header line (ValueError), truncation (EOFError).

    Hand-written rather than warcio/fastwarc: see docs/trust.md for the benchmark
    and the bad-input behaviour that decided it.
    """
    while True:
        line = stream.readline(_MAX_WARC_HEADER_LINE + 1)
        if not line:
            return
        if not line.strip():
            continue
        if not line.startswith(b"WARC/"):
            raise ValueError(f"expected a WARC/1.x record header, found {line[:40]!r}")
        headers = _warc_headers(stream)
        raw = headers.get("content-length")
        if raw is None:
            raise ValueError("WARC record without Content-Length")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ValueError(f"WARC record with a bad Content-Length {raw[:40]!r} (not a decimal byte count)")
        length = int(raw)
        if length > max_record_bytes:
            _skip(stream, length)
            yield headers, None
            continue
        body = stream.read(length)
        if len(body) < length:
            raise EOFError(f"WARC record truncated ({len(body)} of {length} bytes)")
        yield headers, body


_MAX_WARC_HEADER_LINE = 1 << 16
_MAX_WARC_HEADERS = 1000


def _skip(stream: IO[bytes], length: int) -> None:
    """Read past ``length`` bytes in 1 MiB steps; EOFError when the file ends first."""
    left = length
    while left:
        got = len(stream.read(min(left, 1 << 20)))
        if not got:
            raise EOFError(f"WARC record truncated ({length - left} of {length} bytes)")
        left -= got


def _warc_headers(stream: IO[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_WARC_HEADERS):
        line = stream.readline(_MAX_WARC_HEADER_LINE + 1)
        if not line:
            raise EOFError("WARC header truncated")
        if len(line) > _MAX_WARC_HEADER_LINE:
            raise ValueError(f"WARC header line longer than {_MAX_WARC_HEADER_LINE} bytes (corrupt)")
        line = line.rstrip(b"\r\n")
        if not line:
            return headers
        name, _, value = line.decode("utf-8", "replace").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError(f"WARC record with more than {_MAX_WARC_HEADERS} header lines (corrupt)")


def language_matches(header: str | None, wanted: str | None) -> bool:
    """Whether a WET ``WARC-Identified-Content-Language`` (e.g. ``eng,fra``) passes the filter.

    ``wanted`` is a comma-separated list of codes (``en``, ``eng``, ``en,de``); the
    record's first (dominant) language must start with one of them.
    """
    if not wanted:
        return True
    if not header:
        return False
    primary = header.split(",")[0].strip().lower()
    codes = [c.strip().lower() for c in wanted.split(",") if c.strip()]
    return any(primary.startswith(_LANGUAGE_ALIASES.get(c, c)) or primary == c for c in codes)


def read_wet(
    stream: io.BufferedReader, url: str, cfg: CorpusConfig, report: FileReport
) -> Iterator[Document]:
    """Common Crawl WET: the text of ``conversion`` records, optionally filtered by language."""
    for number, (headers, body) in enumerate(iter_warc_records(stream, cfg.max_record_bytes)):
        if headers.get("warc-type") != "conversion":
            continue
        if body is None:
            report.reject_record(
                number, f"WARC record larger than corpus.max_record_bytes={cfg.max_record_bytes}; skipped"
            )
            continue
        if not language_matches(headers.get("warc-identified-content-language"), cfg.language):
            report.filtered_language += 1
            continue
        text = body.decode("utf-8", errors="c2v-count")
        yield _doc_id(headers.get("warc-record-id"), url, number), (text,)


# ----------------------------------------------------------------------------- one file


def read_documents(url: str, cfg: CorpusConfig, report: FileReport) -> Iterator[Document]:
    """Documents of one file; problems go to ``report`` instead of raising.

    The caller must consume each document's pieces before asking for the next one
    (pieces of a huge line are streamed from the open file).
    """
    _DECODE_ERRORS[0] = 0
    fmt = detect_format(url, cfg)
    try:
        if fmt == "warc":
            raise RejectedFile("a WARC file holds HTML, not text: list the matching WET (.warc.wet.gz) files")
        if fmt == "parquet":
            yield from read_parquet(url, cfg, report)
        else:
            with open_decompressed(url) as stream:
                for doc_id, pieces in _format_reader(fmt, stream, url, cfg, report):
                    yield doc_id, _guarded(pieces, report)
    except _READ_ERRORS as exc:
        _reject(report, exc)
    finally:
        report.decode_errors += _DECODE_ERRORS[0]


def _codec_errors() -> tuple[type[BaseException], ...]:
    """Decompressor errors that are not OSError/ValueError (zstandard's ZstdError is a bare Exception)."""
    try:
        import zstandard

        return (zstandard.ZstdError,)
    except ImportError:
        return ()


# Everything a damaged or hostile file can raise while being read; each becomes a named
# per-file reject instead of a failed Spark task. RecursionError/MemoryError included on purpose.
_READ_ERRORS = (
    RejectedFile, EOFError, gzip.BadGzipFile, zlib.error, OSError, ValueError,
    RecursionError, MemoryError, *_codec_errors(),
)  # fmt: skip


def _guarded(pieces: Iterable[str], report: FileReport) -> Iterator[str]:
    """Pieces of a streamed document; a read error mid-document rejects the file and ends it."""
    try:
        yield from pieces
    except _READ_ERRORS as exc:
        _reject(report, exc)


def _reject(report: FileReport, exc: BaseException) -> None:
    if report.rejected:
        return
    if isinstance(exc, RejectedFile):
        report.reject_file(str(exc))
    elif isinstance(exc, FileNotFoundError):
        report.reject_file("file disappeared between listing and reading")
    else:
        report.reject_file(_describe(exc))


def _format_reader(
    fmt: str, stream: io.BufferedReader, url: str, cfg: CorpusConfig, report: FileReport
) -> Iterator[Document]:
    readers: dict[str, Callable[[], Iterator[Document]]] = {
        "text": lambda: read_text(stream, url, cfg.doc_per),
        "jsonl": lambda: read_jsonl(stream, url, cfg, report),
        "wet": lambda: read_wet(stream, url, cfg, report),
    }
    if fmt not in readers:
        raise RejectedFile(f"unknown format {fmt!r}")
    return readers[fmt]()


def _describe(exc: BaseException) -> str:
    """A short reason for a rejected file; truncation gets a plain-words hint."""
    if isinstance(exc, EOFError):
        return redact_text(f"truncated: the file ends before its compressed stream does ({exc})")
    return redact_text(f"unreadable: {type(exc).__name__}: {exc}")
