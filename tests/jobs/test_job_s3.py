"""The whole Spark half against S3 (moto server): same code path, same bytes as a local store."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from corpus2vec.jobs.count import run_count
from corpus2vec.jobs.pairs import run_pairs
from corpus2vec.jobs.tokenize import run_tokenize
from corpus2vec.model import storage
from corpus2vec.model.contracts import StageManifest
from corpus2vec.model.schemas import check_schema, pairs_schema
from tests.jobs.conftest import TINY_CORPUS, TINY_PAIRS, TINY_VOCAB

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def shas(manifest: StageManifest) -> list[tuple[str, str]]:
    return [(f.path, f.sha256) for f in manifest.files]


def test_s3_round_trip_matches_local(spark, pipeline, small_corpus, s3_bucket) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    corpus = f"{s3_bucket}/corpus/small.jsonl.gz"
    fs.put(str(small_corpus), corpus)
    run = f"{s3_bucket}/runs/r1"
    tokens = run_tokenize(spark, [f"{s3_bucket}/corpus/"], f"{run}/tokens", TINY_CORPUS)
    assert tokens.inputs == [corpus] and tokens.input_files == 1
    vocab = run_count(spark, f"{run}/tokens", f"{run}/vocab", TINY_VOCAB)
    pairs = run_pairs(spark, f"{run}/tokens", f"{run}/vocab", f"{run}/pairs", TINY_PAIRS)

    # Byte-identical to the local run: storage never changes the data.
    for stage, manifest in (("tokens", tokens), ("vocab", vocab), ("pairs", pairs)):
        local = pipeline.manifests[stage]
        assert shas(manifest) == shas(local), stage
    fs.invalidate_cache()
    listed = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{run}/pairs"))
    assert listed == ["_manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    first = f"{run}/pairs/part-00000.parquet"
    with fs.open(first, "rb") as handle:
        check_schema(pq.ParquetFile(handle).schema_arrow, pairs_schema(5), first)
    assert storage.sha256_of(first) == pairs.files[0].sha256
    # Lineage on S3 too: each stage records the digests of the manifests it was built from.
    assert vocab.tokens_digest == tokens.digest == storage.sha256_of(f"{run}/tokens/_manifest.json")
    assert (pairs.tokens_digest, pairs.vocab_digest) == (tokens.digest, vocab.digest)
    assert pairs.vocab_sha256 == vocab.vocab_sha256 == pipeline.manifests["vocab"].vocab_sha256
    # Rerun finds the finished stages.
    again = run_pairs(spark, f"{run}/tokens", f"{run}/vocab", f"{run}/pairs", TINY_PAIRS)
    assert again == pairs and again.digest == pairs.digest
