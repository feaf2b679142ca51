"""Ingest + tokenize: raw corpus files -> ``tokens/part-NNNNN.parquet`` (TOKENS_SCHEMA) + manifest.

Run as ``python -m corpus2vec.jobs.tokenize CORPUS... --out URI [--master M] [--preset P] [--set k=v]``.

Shape of the job (one shuffle, no corpus data on the driver)::

    file URLs --(task per file: read, tokenize, cut sentences)--> (part, row)
              --partitionBy(part)--> one task per part: sort, drop duplicates, write

* A *sentence* is a piece of a document of at most ``max_sentence_tokens`` tokens
  (gensim's limit is 10,000). Documents are never merged, so windows never cross
  documents; no linguistic sentence splitting is done (word2vec.c does none either).
* Output is byte-identical for the same inputs whatever the Spark partitioning:
  a row's part is ``hash(document content hash, sentence) % num_parts`` and rows are
  sorted by ``(doc_id, sentence)`` inside a part. Placing rows by *content* hash
  makes exact duplicate documents meet in the same part, so deduplication needs no
  second shuffle: the copy with the smallest doc_id is kept.
* Documents longer than ``_DEDUP_MAX_SENTENCES`` sentences (text8-style single
  lines) are streamed instead of buffered, and are never deduplicated.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus2vec.jobs import common
from corpus2vec.jobs.ingest import FileReport, expand_corpus, read_documents
from corpus2vec.model import storage
from corpus2vec.model.config import CorpusConfig
from corpus2vec.model.contracts import Tokens, files_from
from corpus2vec.model.schemas import TOKENS_SCHEMA

ROW_GROUP_TOKENS = 1_000_000  # tokens per row group: the work unit of count and pairs
ROW_GROUP_ROWS = 65_536
PART_INPUT_BYTES = 16 << 20  # default: one output part per 16 MiB of (compressed) input
MAX_PARTS = 4096
_DEDUP_MAX_SENTENCES = 64  # documents up to 640k tokens are buffered and deduplicated
_MAX_CARRY = 1 << 20  # characters held back waiting for whitespace before tokenizing anyway
_META = "meta"


def _mark_class() -> str:
    """A regex class of every combining mark (Unicode category M*), built from unicodedata.

    Python's ``\\w`` does not match marks, which would cut Devanagari, Bengali or
    Thai words at every vowel sign.
    """
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)).startswith("M"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


# A run of letters/digits of any script, marks attached; then inner apostrophes
# (don't, l'homme) and digit-separating . or , (3.14, 1,000) join runs into one token.
_RUN = rf"[^\W_]+(?:[{_mark_class()}]+[^\W_]*)*"
TOKEN_RE = re.compile(rf"{_RUN}(?:(?:'(?=[^\W_])|(?<=\d)[.,](?=\d)){_RUN})*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})


# ASCII text needs no normalisation and has no marks: the same rule, 2-5x faster.
_ASCII_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:(?:'(?=[A-Za-z0-9])|(?<=[0-9])[.,](?=[0-9]))[A-Za-z0-9]+)*")
_ASCII_WORDS_ONLY = re.compile(r"[A-Za-z0-9\s]*")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Tokens of ``text``: NFKC-normalised, optionally lower-cased, matched by :data:`TOKEN_RE`.

    Punctuation and symbols are dropped; typographic apostrophes become ``'``.
    ASCII input (text8-style corpora, most English) takes an equivalent fast path.
    """
    if text.isascii():
        text = text.lower() if lowercase else text
        if _ASCII_WORDS_ONLY.fullmatch(text):
            return text.split()
        return _ASCII_TOKEN_RE.findall(text)
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    return TOKEN_RE.findall(text.lower() if lowercase else text)


def iter_sentences(pieces: Iterable[str], max_tokens: int, lowercase: bool = True) -> Iterator[list[str]]:
    """Sentences of at most ``max_tokens`` tokens from a document given as text pieces.

    Pieces are tokenized as they arrive (cut at the last space so no token is split),
    so memory stays bounded by one piece plus one sentence however long the document.
    """
    buffer: list[str] = []
    carry = ""
    for piece in pieces:
        text = carry + piece
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        if cut < 0 and len(text) < _MAX_CARRY:
            carry = text
            continue
        head, carry = (text[:cut], text[cut:]) if cut >= 0 else (text, "")
        buffer.extend(tokenize(head, lowercase))
        start = 0
        while len(buffer) - start >= max_tokens:
            yield buffer[start : start + max_tokens]
            start += max_tokens
        buffer = buffer[start:]
    buffer.extend(tokenize(carry, lowercase))
    for start in range(0, len(buffer), max_tokens):
        yield buffer[start : start + max_tokens]


def part_of(content_hash: bytes, sentence: int, num_parts: int) -> int:
    """Output part of a sentence row: depends on content only, never on Spark partitioning."""
    return common.stable_hash64(content_hash, sentence) % num_parts


# A row travelling to its part: (doc_id, sentence, content hash, space-joined tokens, n tokens).
# Tokens never contain whitespace, so one joined string carries a sentence compactly.
Row = tuple[str, int, bytes, str, int]


def document_rows(doc_id: str, sentences: Iterator[list[str]], min_tokens: int) -> Iterator[Row]:
    """Rows of one document; documents with fewer than ``min_tokens`` tokens yield nothing.

    Buffering up to ``_DEDUP_MAX_SENTENCES`` sentences gives the exact content hash
    used for dedup; longer documents are streamed with a hash of their id instead.
    """
    digest = hashlib.blake2b(digest_size=16)
    buffered: list[tuple[str, int]] = []
    for tokens in sentences:
        if len(buffered) == _DEDUP_MAX_SENTENCES:
            yield from _stream_long_document(doc_id, buffered, tokens, sentences)
            return
        joined = " ".join(tokens)
        digest.update(joined.encode() + b"\n")
        buffered.append((joined, len(tokens)))
    if sum(n for _, n in buffered) >= max(min_tokens, 1):
        content = digest.digest()
        for i, (text, n) in enumerate(buffered):
            yield doc_id, i, content, text, n


def _stream_long_document(
    doc_id: str, buffered: list[tuple[str, int]], current: list[str], rest: Iterator[list[str]]
) -> Iterator[Row]:
    """Rows of a document too long to buffer; its id stands in for the content hash (no dedup)."""
    unique = b"id:" + hashlib.blake2b(doc_id.encode(), digest_size=16).digest()
    yield from ((doc_id, i, unique, text, n) for i, (text, n) in enumerate(buffered))
    for index, tokens in enumerate(itertools.chain([current], rest), start=len(buffered)):
        yield doc_id, index, unique, " ".join(tokens), len(tokens)


def tokenize_file(
    url: str, cfg: CorpusConfig, num_parts: int, env: dict[str, str]
) -> Iterator[tuple[int, Any]]:
    """(part, row) for every sentence of one input file, then (num_parts, file report).

    The report travels through the same shuffle as the data to one extra partition,
    so it is counted exactly once even when Spark retries a task.
    """
    common.apply_store_env(env)
    report = FileReport(storage.redact_url(url))  # reject lists are recorded: no credentials
    documents = short = 0
    for doc_id, pieces in read_documents(url, cfg, report):
        documents += 1
        sentences = iter_sentences(pieces, cfg.max_sentence_tokens, cfg.lowercase)
        emitted = False
        for row in document_rows(doc_id, sentences, cfg.min_doc_tokens):
            emitted = True
            yield part_of(row[2], row[1], num_parts), row
        short += not emitted
    yield num_parts, (_META, {**report.to_dict(), "documents_read": documents, "short_documents": short})


def dedup_sorted(rows: list[Row]) -> tuple[list[Row], int]:
    """Drop rows of documents whose content already appeared under a smaller doc_id.

    ``rows`` must be sorted by doc_id, so the first doc_id seen for a content hash is
    the smallest; returns the kept rows and how many documents were removed (counted
    at their sentence 0, which lives in exactly one part).
    """
    first: dict[bytes, str] = {}
    kept: list[Row] = []
    removed = 0
    for row in rows:
        if first.setdefault(row[2], row[0]) == row[0]:
            kept.append(row)
        elif row[1] == 0:
            removed += 1
    return kept, removed


def rows_to_tables(rows: list[Row]) -> Iterator[pa.Table]:
    """TOKENS_SCHEMA tables of about ROW_GROUP_TOKENS tokens each (fixed cut rule: deterministic)."""
    start, tokens = 0, 0
    for end, row in enumerate(rows, start=1):
        tokens += row[4]
        if tokens >= ROW_GROUP_TOKENS or end - start >= ROW_GROUP_ROWS or end == len(rows):
            chunk = rows[start:end]
            yield pa.Table.from_arrays(
                [
                    pa.array([r[0] for r in chunk], pa.string()),
                    pa.array([r[1] for r in chunk], pa.int32()),
                    pc.split_pattern(pa.array([r[3] for r in chunk], pa.string()), " "),
                ],
                schema=TOKENS_SCHEMA,
            )
            start, tokens = end, 0


def write_part(
    index: int,
    items: Iterable[tuple[int, Any]],
    out_uri: str,
    num_parts: int,
    dedup: bool,
    env: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """Task body after the shuffle: write part ``index`` (or pass file reports through)."""
    common.apply_store_env(env)
    if index == num_parts:
        for _, (_, report) in items:
            yield {"report": report}
        return
    rows: list[Row] = [row for _, row in items]
    if not rows:
        return
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    rows, removed = dedup_sorted(rows) if dedup else (rows, 0)
    entry = common.write_parquet_atomic(
        storage.join(out_uri, f"part-{index:05d}.parquet"), TOKENS_SCHEMA, rows_to_tables(rows)
    )
    entry.update(
        documents=sum(1 for r in rows if r[1] == 0),
        sentences=len(rows),
        tokens=sum(r[4] for r in rows),
        duplicates_removed=removed,
    )
    yield {"part": entry}


def default_num_parts(files: list[str]) -> int:
    """Output parts from input size (one per 16 MiB), so the same inputs always give the same parts.

    Sizes of at most 256 evenly spaced files are looked up and extrapolated, so a
    90,000-file crawl listing costs 256 HEAD requests, not 90,000.
    """
    step = max(1, len(files) // 256)
    probe = files[::step]
    sizes = []
    for url in probe:
        fs, path = storage.get_fs(url)
        try:
            sizes.append(int(fs.size(path) or 0))
        except FileNotFoundError:
            sizes.append(0)
    total = sum(sizes) * len(files) / max(1, len(probe))
    return max(1, min(MAX_PARTS, math.ceil(total / PART_INPUT_BYTES)))


def check_bad_fraction(reports: list[dict[str, Any]], cfg: CorpusConfig) -> float:
    """Rejected files / all files; raise ValueError naming the files when above the limit."""
    bad = [r for r in reports if r["rejected"]]
    fraction = len(bad) / max(1, len(reports))
    if fraction > cfg.max_bad_fraction:
        listed = "; ".join(
            f"{r['file']}: {next(x['reason'] for x in r['rejects'] if x['record'] is None)}" for r in bad[:20]
        )
        more = f" (and {len(bad) - 20} more)" if len(bad) > 20 else ""
        raise ValueError(
            f"{len(bad)} of {len(reports)} input files are unreadable ({fraction:.1%} > "
            f"corpus.max_bad_fraction={cfg.max_bad_fraction}): {listed}{more}. Fix or remove these files, "
            f"or allow more with --set corpus.max_bad_fraction=..."
        )
    return fraction


def tokenize_corpus(
    spark: Any,
    files: list[str],
    out_uri: str,
    cfg: CorpusConfig,
    num_parts: int,
    partitions: int | None = None,
) -> list[dict]:
    """Run the read/tokenize/shuffle/write pipeline; returns per-part entries and per-file reports.

    ``partitions`` (map-side tasks) defaults to one per file, at most 10,000: a file is
    read by one task, so more would idle. It never changes the output.
    """
    env = common.store_env()
    sc = spark.sparkContext
    slices = max(1, min(len(files), partitions or 10_000))
    results = (
        sc.parallelize(files, slices)
        .flatMap(lambda url: tokenize_file(url, cfg, num_parts, env))
        .partitionBy(num_parts + 1, lambda key: key)
        .mapPartitionsWithIndex(lambda i, items: write_part(i, items, out_uri, num_parts, cfg.dedup, env))
        .collect()
    )
    return results


def run_tokenize(
    spark: Any,
    corpus: list[str],
    out_uri: str,
    cfg: CorpusConfig,
    *,
    partitions: int | None = None,
    key: str = "",
) -> Tokens:
    """Tokenize ``corpus`` into ``out_uri`` and return its manifest.

    ``key`` is the stage key the flow files this output under (empty from the job CLI).

    Idempotent: a finished output (manifest present) is returned untouched; the
    leftovers of an unfinished one are cleared first, after the inputs were listed,
    and a folder holding anything this stage does not write is refused
    (:func:`corpus2vec.model.storage.clear_unfinished`). Raises ValueError when too many input files
    are unreadable; nothing is marked finished then.
    """
    started = time.time()
    done = Tokens.finished(out_uri)
    if done is not None:
        return done
    files = expand_corpus(corpus, cfg)  # inputs first: a typo must fail before the output is touched
    storage.clear_unfinished(out_uri)
    num_parts = cfg.num_parts or default_num_parts(files)
    results = tokenize_corpus(spark, files, out_uri, cfg, num_parts, partitions)
    parts = sorted((r["part"] for r in results if "part" in r), key=lambda e: e["path"])
    reports = sorted((r["report"] for r in results if "report" in r), key=lambda r: r["file"])
    bad_fraction = check_bad_fraction(reports, cfg)
    if not parts:
        raise ValueError(
            f"no tokens in {len(files)} input file(s) {files[:3]}: check corpus.format/text_field"
        )
    return Tokens(
        files=files_from(parts),
        key=key,
        **_stats(files, parts, reports, bad_fraction, num_parts, cfg),
        seconds=round(time.time() - started, 3),
    ).write(out_uri)


def _stats(
    files: list[str],
    parts: list[dict],
    reports: list[dict],
    bad_fraction: float,
    num_parts: int,
    cfg: CorpusConfig,
) -> dict[str, Any]:
    rejects = [x for r in reports for x in r["rejects"]]
    shown = [storage.redact_url(f) for f in files]  # manifests never hold URL credentials
    return {
        "input_files": len(files),
        "inputs": shown[:1000],
        "inputs_sha256": hashlib.sha256("\n".join(shown).encode()).hexdigest(),
        "documents": sum(p["documents"] for p in parts),
        "sentences": sum(p["sentences"] for p in parts),
        "tokens": sum(p["tokens"] for p in parts),
        "duplicates_removed": sum(p["duplicates_removed"] for p in parts),
        "short_documents": sum(r["short_documents"] for r in reports),
        "records_skipped": sum(r["records_skipped"] for r in reports),
        "decode_errors": sum(r["decode_errors"] for r in reports),
        "filtered_language": sum(r["filtered_language"] for r in reports),
        "rejected_files": sum(r["rejected"] for r in reports),
        "rejects": rejects,
        "bad_fraction": bad_fraction,
        "num_parts": num_parts,
        "config": asdict(cfg),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m corpus2vec.jobs.tokenize CORPUS... --out URI``; prints the manifest's counts."""
    parser = argparse.ArgumentParser(
        prog="python -m corpus2vec.jobs.tokenize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("corpus", nargs="+", help="files, folders, globs, URLs or *.paths lists")
    parser.add_argument("--out", required=True, help="output folder URL (the tokens stage dir)")
    common.common_args(parser)
    args = parser.parse_args(argv)
    keys = (
        "input_files",
        "documents",
        "sentences",
        "tokens",
        "duplicates_removed",
        "rejected_files",
        "seconds",
    )
    return common.run_job_main(
        args, "tokenize", lambda spark, cfg: run_tokenize(spark, args.corpus, args.out, cfg.corpus), keys
    )


if __name__ == "__main__":
    sys.exit(main())
