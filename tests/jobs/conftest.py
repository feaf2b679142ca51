"""Fixtures for the Spark job tests: one tokenize -> count -> pairs run on the small corpus."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from corpus2vec.model.config import CorpusConfig, PairsConfig, VocabConfig
from corpus2vec.model.contracts import StageManifest

TINY_CORPUS = CorpusConfig(num_parts=3)
TINY_VOCAB = VocabConfig(min_count=3)
TINY_PAIRS = PairsConfig(num_shards=3, sample=1e-3, row_group_size=50_000)


@dataclass
class Pipeline:
    """URIs and manifests of a finished small pipeline run."""

    root: Path
    tokens: str
    vocab: str
    pairs: str
    manifests: dict[str, StageManifest]  # the typed manifests run_tokenize/run_count/run_pairs returned


@pytest.fixture(scope="session")
def pipeline(spark, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """tokenize -> count -> pairs on the 300-article corpus, once per session."""
    from corpus2vec.jobs.count import run_count
    from corpus2vec.jobs.pairs import run_pairs
    from corpus2vec.jobs.tokenize import run_tokenize

    root = tmp_path_factory.mktemp("pipeline")
    tokens, vocab, pairs = (str(root / name) for name in ("tokens", "vocab", "pairs"))
    manifests = {
        "tokens": run_tokenize(spark, [str(small_corpus)], tokens, TINY_CORPUS),
        "vocab": run_count(spark, tokens, vocab, TINY_VOCAB),
    }
    manifests["pairs"] = run_pairs(spark, tokens, vocab, pairs, TINY_PAIRS)
    return Pipeline(root, tokens, vocab, pairs, manifests)
