"""run_pairs on local[2] Spark: contract, determinism across partitionings, idempotency."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from corpus2vec.jobs.pairs import run_pairs
from corpus2vec.model import storage
from corpus2vec.model.contracts import FORMAT, STAGE_MANIFEST, FileEntry, Pairs
from corpus2vec.model.schemas import check_schema, pairs_schema
from tests.jobs.conftest import TINY_PAIRS

pytestmark = pytest.mark.spark


def shas(files: Iterable[FileEntry]) -> list[tuple[str, str]]:
    return [(f.path, f.sha256) for f in files]


def test_shards_follow_the_contract(pipeline) -> None:
    manifest = pipeline.manifests["pairs"]
    vocab = pipeline.manifests["vocab"]
    assert isinstance(manifest, Pairs) and manifest.vocab_sha256 == vocab.vocab_sha256
    raw = json.loads(Path(pipeline.pairs, STAGE_MANIFEST).read_bytes())
    assert (raw["kind"], raw["format"], raw["key"]) == ("pairs", FORMAT, "")
    assert manifest == Pairs.read(pipeline.pairs) and manifest.digest == Pairs.read(pipeline.pairs).digest
    # lineage: the digests of the tokens and vocab manifests it was built from
    assert manifest.tokens_digest == pipeline.manifests["tokens"].digest
    assert manifest.vocab_digest == vocab.digest
    assert vocab.digest == storage.sha256_of(storage.join(pipeline.vocab, STAGE_MANIFEST))
    assert (manifest.negative, manifest.window, manifest.sample, manifest.seed) == (5, 5, 1e-3, 1)
    assert manifest.ns_exponent == 0.75 and len(manifest.files) == 3
    assert manifest.vocab_size == vocab.vocab_size
    assert manifest.tokens_in == vocab.retained_tokens
    assert 0 < manifest.tokens_kept < manifest.tokens_in
    total = 0
    for entry in manifest.files:
        url = storage.join(pipeline.pairs, entry.path)
        assert storage.sha256_of(url) == entry.sha256 and storage.exists(url)
        pfile = pq.ParquetFile(url)
        check_schema(pfile.schema_arrow, pairs_schema(5), url)
        assert pfile.num_row_groups == entry.row_groups == -(-entry.rows // TINY_PAIRS.row_group_size)
        assert entry.draw == 0 and entry.bytes == Path(url).stat().st_size
        table = pfile.read()
        center = table.column("center").to_numpy()
        context = table.column("context").to_numpy()
        negatives = np.asarray(table.column("negatives").combine_chunks().flatten()).reshape(-1, 5)
        assert center.max() < vocab.vocab_size and negatives.min() >= 0
        assert not (negatives == context[:, None]).any()
        total += table.num_rows
    assert total == manifest.total_pairs > 0
    assert manifest.draws == 1 and manifest.draw_pairs == [total]
    assert manifest.shards(0) == list(manifest.files)
    bytes_total = sum(f.bytes for f in manifest.files)
    assert manifest.bytes_per_pair == pytest.approx(bytes_total / total)


def test_rows_are_shuffled(pipeline) -> None:
    manifest = pipeline.manifests["pairs"]
    ratio = manifest.adjacent_same_center / manifest.adjacent_same_center_baseline
    assert 0.7 < ratio < 1.3  # unshuffled output (all pairs of a centre together) gives ratio >> 10


@pytest.mark.parametrize("partitions", [1, 2, 8])
def test_byte_identical_for_any_partitioning(spark, pipeline, tmp_path, partitions) -> None:
    out = str(tmp_path / "pairs")
    manifest = run_pairs(spark, pipeline.tokens, pipeline.vocab, out, TINY_PAIRS, partitions=partitions)
    assert shas(manifest.files) == shas(pipeline.manifests["pairs"].files)


def test_join_path_gives_the_same_shards(spark, pipeline, tmp_path) -> None:
    cfg = replace(TINY_PAIRS, broadcast_vocab_max=10)
    manifest = run_pairs(spark, pipeline.tokens, pipeline.vocab, str(tmp_path / "pairs"), cfg)
    assert shas(manifest.files) == shas(pipeline.manifests["pairs"].files)


def test_seed_changes_the_shards(spark, pipeline, tmp_path) -> None:
    manifest = run_pairs(
        spark, pipeline.tokens, pipeline.vocab, str(tmp_path / "p"), replace(TINY_PAIRS, seed=2)
    )
    assert set(shas(manifest.files)).isdisjoint(shas(pipeline.manifests["pairs"].files))


def test_rerun_is_a_no_op_and_leftovers_are_cleared(spark, pipeline, tmp_path) -> None:
    again = run_pairs(spark, pipeline.tokens, pipeline.vocab, pipeline.pairs, TINY_PAIRS)
    assert again == pipeline.manifests["pairs"] and again.digest == pipeline.manifests["pairs"].digest
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"killed mid-write")
    manifest = run_pairs(spark, pipeline.tokens, pipeline.vocab, str(out), TINY_PAIRS, key="pairs-key")
    assert shas(manifest.files) == shas(pipeline.manifests["pairs"].files)
    assert manifest.key == "pairs-key" and Pairs.read(str(out)) == manifest


def test_context_input_writes_the_same_rows_with_roles_swapped(spark, pipeline, tmp_path) -> None:
    """input_word="context" (word2vec.c's roles, the default): row r holds "centre"'s row r with
    centre and context exchanged, so the pairs are the same and only which word trains its input
    vector changes; negatives are drawn against each row's target."""
    centre = run_pairs(
        spark, pipeline.tokens, pipeline.vocab, str(tmp_path / "p"), replace(TINY_PAIRS, input_word="centre")
    )
    context = pipeline.manifests["pairs"]
    assert context.input_word == "context" and centre.input_word == "centre"
    assert context.total_pairs == centre.total_pairs
    for swapped_entry, centre_entry in zip(context.files, centre.files, strict=True):
        swapped = pq.read_table(storage.join(context.uri, swapped_entry.path))
        table = pq.read_table(storage.join(centre.uri, centre_entry.path))
        assert np.array_equal(swapped.column("center").to_numpy(), table.column("context").to_numpy())
        assert np.array_equal(swapped.column("context").to_numpy(), table.column("center").to_numpy())
        negatives = np.asarray(swapped.column("negatives").combine_chunks().flatten()).reshape(-1, 5)
        assert not (negatives == swapped.column("context").to_numpy()[:, None]).any()


def test_sample_zero_keeps_every_token(spark, pipeline, tmp_path) -> None:
    cfg = replace(TINY_PAIRS, sample=0.0, num_shards=2)
    manifest = run_pairs(spark, pipeline.tokens, pipeline.vocab, str(tmp_path / "p"), cfg)
    assert manifest.tokens_kept == manifest.tokens_in


def test_each_draw_is_an_independent_sample_and_epochs_cycle_through_them(spark, pipeline, tmp_path) -> None:
    """draws=3: draw 0 is the single-draw output byte for byte; draws 1 and 2 are fresh samples of
    the same process (similar size, different rows); epoch e reads exactly draw e % 3."""
    from corpus2vec.model.reader import PairReader

    out = str(tmp_path / "pairs")
    manifest = run_pairs(spark, pipeline.tokens, pipeline.vocab, out, replace(TINY_PAIRS, draws=3))
    single = pipeline.manifests["pairs"]
    assert manifest.draws == 3 and len(manifest.files) == 3 * len(single.files)
    by_draw = {d: [f for f in manifest.files if f.draw == d] for d in range(3)}
    assert all(manifest.shards(d) == by_draw[d] for d in range(3))
    assert shas(by_draw[0]) == shas(single.files)
    assert all(f.path.startswith(f"draw-{d:02d}/") for d in (1, 2) for f in by_draw[d])
    assert manifest.draw_pairs == [sum(f.rows for f in by_draw[d]) for d in range(3)]
    assert manifest.total_pairs == sum(manifest.draw_pairs)
    assert manifest.draw_pairs[0] == single.total_pairs
    sizes = np.array(manifest.draw_pairs, dtype=float)
    assert sizes.std() / sizes.mean() < 0.02  # same process, same expected size
    assert len({f.sha256 for f in manifest.files}) == len(manifest.files)

    def epoch_rows(epoch: int) -> np.ndarray:
        reader = PairReader(out, manifest, manifest.vocab_size, seed=1, prefetch=0)
        batches = list(reader.epoch_batches(epoch))
        return np.sort(np.concatenate([b.center.astype(np.int64) << 32 | b.context for b in batches]))

    def draw_rows(draw: int) -> np.ndarray:
        tables = [pq.read_table(storage.join(out, f.path)) for f in by_draw[draw]]
        return np.sort(
            np.concatenate(
                [
                    t.column("center").to_numpy().astype(np.int64) << 32 | t.column("context").to_numpy()
                    for t in tables
                ]
            )
        )

    for epoch in range(4):
        assert manifest.draw_of(epoch) == epoch % 3
        assert len(epoch_rows(epoch)) == manifest.epoch_pairs(epoch) == manifest.draw_pairs[epoch % 3]
        assert np.array_equal(epoch_rows(epoch), draw_rows(epoch % 3))
    # another subsampling and window draw, not a reshuffle of the same pairs
    assert not np.array_equal(draw_rows(0), draw_rows(1))
