"""run_count on local[2] Spark and the pure vocab ordering."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus2vec.jobs.count import order_vocab, run_count
from corpus2vec.jobs.tokenize import run_tokenize, tokenize
from corpus2vec.model import storage
from corpus2vec.model.config import CorpusConfig, VocabConfig
from corpus2vec.model.contracts import FORMAT, STAGE_MANIFEST, Vocab
from corpus2vec.model.schemas import VOCAB_SCHEMA, check_schema

pytestmark = pytest.mark.spark


def test_order_is_descending_count_then_word() -> None:
    words = pa.table({"word": ["b", "a", "c", "d"], "count": pa.array([5, 5, 9, 1], pa.int64())})
    vocab = order_vocab(words, None)
    assert vocab.column("word").to_pylist() == ["c", "a", "b", "d"]
    assert vocab.column("id").to_pylist() == [0, 1, 2, 3]
    assert order_vocab(words, 2).column("word").to_pylist() == ["c", "a"]


def test_vocab_matches_a_python_count(pipeline, small_corpus) -> None:
    import json

    counts: Counter[str] = Counter()
    with gzip.open(small_corpus, "rt") as handle:
        for line in handle:
            counts.update(tokenize(json.loads(line)["text"]))
    manifest = Vocab.read(pipeline.vocab)
    vocab = manifest.table()
    check_schema(vocab.schema, VOCAB_SCHEMA, "vocab")
    expected = sorted(((w, c) for w, c in counts.items() if c >= 3), key=lambda wc: (-wc[1], wc[0]))
    assert (
        list(zip(vocab.column("word").to_pylist(), vocab.column("count").to_pylist(), strict=True))
        == expected
    )
    assert manifest.total_tokens == sum(counts.values()) == pipeline.manifests["tokens"].tokens
    assert manifest.types == len(counts)
    assert manifest.retained_tokens == sum(c for _, c in expected)
    assert manifest.coverage == pytest.approx(manifest.retained_tokens / manifest.total_tokens)
    assert manifest.vocab_size == len(expected) and manifest.min_count == 3
    assert manifest.vocab_sha256 == storage.sha256_of(storage.join(pipeline.vocab, "vocab.parquet"))
    assert [(f.path, f.rows) for f in manifest.files] == [("vocab.parquet", len(expected))]
    # lineage: the digest of the tokens manifest it counted, as that stage returned it
    tokens_digest = storage.sha256_of(storage.join(pipeline.tokens, STAGE_MANIFEST))
    assert manifest.tokens_digest == tokens_digest == pipeline.manifests["tokens"].digest
    # what run_count returned is what a reader gets back, byte for byte
    assert manifest == pipeline.manifests["vocab"]
    assert manifest.digest == pipeline.manifests["vocab"].digest
    assert manifest.digest == storage.sha256_of(storage.join(pipeline.vocab, STAGE_MANIFEST))
    raw = json.loads(Path(pipeline.vocab, STAGE_MANIFEST).read_bytes())
    assert (raw["kind"], raw["format"], raw["key"]) == ("vocab", FORMAT, "")


def test_max_vocab_size_and_rerun(spark, pipeline, tmp_path) -> None:
    out = str(tmp_path / "vocab")
    cfg = VocabConfig(min_count=1, max_vocab_size=100)
    first = run_count(spark, pipeline.tokens, out, cfg, partitions=1, key="vocab-key")
    assert first.vocab_size == 100 and first.max_vocab_size == 100 and first.key == "vocab-key"
    assert Vocab.read(out) == first
    table = pq.read_table(Path(out, "vocab.parquet"))
    assert table.column("count").to_pylist() == sorted(table.column("count").to_pylist(), reverse=True)
    again = run_count(spark, pipeline.tokens, out, cfg)
    assert again == first and again.digest == first.digest


def test_empty_vocabulary_is_an_actionable_error(spark, tmp_path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("every word here is unique\n")
    tokens = str(tmp_path / "tokens")
    run_tokenize(spark, [str(corpus)], tokens, CorpusConfig())
    with pytest.raises(ValueError, match=r"min_count=5 times in 5 tokens; lower it with --set min_count"):
        run_count(spark, tokens, str(tmp_path / "vocab"), VocabConfig(min_count=5))
    assert Vocab.finished(str(tmp_path / "vocab")) is None


def test_unfinished_tokens_stage_is_refused(spark, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="run it first"):
        run_count(spark, str(tmp_path / "nothing"), str(tmp_path / "vocab"), VocabConfig())
