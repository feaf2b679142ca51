"""run_tokenize on local[2] Spark: manifest, determinism, dedup, rejects, idempotency."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpus2vec.jobs.tokenize import run_tokenize
from corpus2vec.model import storage
from corpus2vec.model.config import CorpusConfig
from corpus2vec.model.contracts import FORMAT, STAGE_MANIFEST, Tokens
from corpus2vec.model.schemas import TOKENS_SCHEMA, check_schema

pytestmark = pytest.mark.spark


def jsonl(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return path


def articles(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"doc{i:04d}", "text": f"Article {i} talks about topic {i % 7}. Words: alpha beta {i}."}
        for i in range(start, start + n)
    ]


def test_manifest_and_parts_on_small_corpus(pipeline) -> None:
    manifest = pipeline.manifests["tokens"]
    assert isinstance(manifest, Tokens) and manifest.input_files == 1
    raw = json.loads(Path(pipeline.tokens, STAGE_MANIFEST).read_bytes())
    assert (raw["kind"], raw["format"], raw["key"]) == ("tokens", FORMAT, "")
    assert manifest == Tokens.read(pipeline.tokens)
    assert manifest.digest == storage.sha256_of(storage.join(pipeline.tokens, STAGE_MANIFEST))
    assert manifest.documents > 250 and manifest.tokens > 50_000 and manifest.bad_fraction == 0
    assert manifest.num_parts == 3
    assert [f.path for f in manifest.files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    rows = 0
    for entry in manifest.files:
        url = storage.join(pipeline.tokens, entry.path)
        assert storage.sha256_of(url) == entry.sha256 and entry.bytes == Path(url).stat().st_size
        table = pq.read_table(url)
        check_schema(table.schema, TOKENS_SCHEMA, url)
        keys = list(
            zip(table.column("doc_id").to_pylist(), table.column("sentence").to_pylist(), strict=True)
        )
        assert keys == sorted(keys)
        rows += table.num_rows
    assert rows == manifest.sentences
    assert sum(f.rows for f in manifest.files) == rows


def test_rerun_is_a_no_op(spark, pipeline, small_corpus) -> None:
    before = Path(pipeline.tokens, "part-00000.parquet").stat().st_mtime_ns
    again = run_tokenize(spark, [str(small_corpus)], pipeline.tokens, CorpusConfig(num_parts=3))
    assert again == pipeline.manifests["tokens"] and again.digest == pipeline.manifests["tokens"].digest
    assert Path(pipeline.tokens, "part-00000.parquet").stat().st_mtime_ns == before


def test_unfinished_leftovers_are_cleared(spark, tmp_path) -> None:
    corpus = jsonl(tmp_path / "c.jsonl.gz", articles(20))
    out = tmp_path / "tokens"
    out.mkdir()
    (out / "part-00099.parquet").write_bytes(b"half written")
    manifest = run_tokenize(spark, [str(corpus)], str(out), CorpusConfig(num_parts=2), key="tokens-key")
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert manifest.documents == 20 and manifest.key == "tokens-key"
    assert Tokens.read(str(out)) == manifest


def test_output_does_not_depend_on_file_split_or_partitions(spark, tmp_path) -> None:
    """Same documents (with ids) in 1 file or 3 files, 1 or 3 tasks: byte-identical parts."""
    docs = articles(60)
    one = jsonl(tmp_path / "one.jsonl.gz", docs)
    three = [jsonl(tmp_path / f"three{i}.jsonl.gz", docs[i::3]) for i in range(3)]
    cfg = CorpusConfig(num_parts=4)
    a = run_tokenize(spark, [str(one)], str(tmp_path / "a"), cfg)
    b = run_tokenize(spark, [str(p) for p in three], str(tmp_path / "b"), cfg, partitions=3)
    c = run_tokenize(spark, [str(p) for p in three], str(tmp_path / "c"), cfg, partitions=1)
    shas = [[(f.path, f.sha256) for f in m.files] for m in (a, b, c)]
    assert shas[0] == shas[1] == shas[2]
    assert a.documents == 60


def test_exact_duplicates_are_removed_keeping_smallest_id(spark, tmp_path) -> None:
    docs = [
        *articles(10),
        {"id": "zzz", "text": articles(1, 3)[0]["text"]},
        {"id": "aaa", "text": articles(1, 5)[0]["text"].upper()},
    ]
    path = jsonl(tmp_path / "dups.jsonl.gz", docs)
    manifest = run_tokenize(spark, [str(path)], str(tmp_path / "t"), CorpusConfig(num_parts=2))
    assert manifest.duplicates_removed == 2 and manifest.documents == 10
    ids = {
        i for f in manifest.files for i in pq.read_table(tmp_path / "t" / f.path).column("doc_id").to_pylist()
    }
    assert (
        "zzz" not in ids and "aaa" in ids and "doc0005" not in ids
    )  # lower-casing makes "aaa" a copy of doc0005
    kept = run_tokenize(spark, [str(path)], str(tmp_path / "nodedup"), CorpusConfig(num_parts=2, dedup=False))
    assert kept.duplicates_removed == 0 and kept.documents == 12


def test_text8_style_line_is_cut_into_max_sentence_pieces(spark, tmp_path) -> None:
    path = tmp_path / "text8.txt.gz"
    path.write_bytes(gzip.compress(" ".join(f"w{i % 500}" for i in range(25_000)).encode()))
    manifest = run_tokenize(spark, [str(path)], str(tmp_path / "t"), CorpusConfig(num_parts=3))
    assert manifest.documents == 1 and manifest.sentences == 3 and manifest.tokens == 25_000
    lengths = sorted(
        len(tokens)
        for f in manifest.files
        for tokens in pq.read_table(tmp_path / "t" / f.path).column("tokens").to_pylist()
    )
    assert lengths == [5_000, 10_000, 10_000]


def test_bad_files_within_tolerance_are_listed(spark, tmp_path) -> None:
    for i in range(3):
        jsonl(tmp_path / f"good{i}.jsonl.gz", articles(5, 5 * i))
    data = gzip.compress(b'{"id": "x", "text": "hello"}\n' * 50_000)
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "missing-field.jsonl").write_text(
        '{"id": "m", "body": "x"}\n{"id": "n", "text": "fine text"}\n'
    )
    cfg = CorpusConfig(num_parts=2, max_bad_fraction=0.5)
    manifest = run_tokenize(spark, [str(tmp_path)], str(tmp_path / "out"), cfg)
    assert manifest.input_files == 5 and manifest.rejected_files == 1
    assert manifest.bad_fraction == pytest.approx(0.2)
    by_file = {(Path(r["file"]).name, r["record"]): r["reason"] for r in manifest.rejects}
    assert "truncated" in by_file[("cut.jsonl.gz", None)]
    assert "'text' is missing" in by_file[("missing-field.jsonl", 0)]
    assert manifest.records_skipped == 1


def test_too_many_bad_files_fail_naming_them(spark, tmp_path) -> None:
    jsonl(tmp_path / "good.jsonl.gz", articles(5))
    (tmp_path / "junk.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="max_bad_fraction") as info:
        run_tokenize(spark, [str(tmp_path)], str(tmp_path / "out"), CorpusConfig(num_parts=1))
    message = str(info.value)
    assert "junk.txt: binary content" in message and "empty.txt: empty file" in message
    assert "2 of 3 input files" in message
    assert Tokens.finished(str(tmp_path / "out")) is None  # not marked finished
