"""The pipeline's stages as plain functions over URIs and typed configs.

Each stage takes URIs in and gives a URI (or a small dict) out, so the same
function serves the Prefect task in :mod:`corpus2vec.flows.pretrain` and the one-stage CLI
commands (``corpus2vec prepare/train/evaluate/publish``). Heavy work happens in
the Spark jobs (``jobs/``) and the torchrun trainer (``model/``); this module only
decides where outputs go and skips stages whose manifest already exists.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corpus2vec.model import storage
from corpus2vec.model.config import PipelineConfig

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class RunLayout:
    """Where one run's stage outputs live: ``{store}/runs/{run_id}/{stage}/`` (DESIGN.md)."""

    store: str
    run_id: str

    @property
    def root(self) -> str:
        return storage.join(self.store, "runs", self.run_id)

    def stage(self, name: str) -> str:
        return storage.join(self.root, name)


@dataclass
class StageTimer:
    """Seconds per stage, for the run summary and the Prefect artifacts."""

    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, started: float) -> None:
        self.seconds[stage] = round(time.monotonic() - started, 2)


def fingerprint_inputs(corpus: list[str], cfg: PipelineConfig) -> dict[str, Any]:
    """The input file list (URL, size, etag/mtime) that keys a run; no file is read."""
    from corpus2vec.jobs.ingest import expand_corpus

    files = expand_corpus(corpus, cfg.corpus)
    entries = []
    for url in files:
        fs, path = storage.get_fs(url)
        info = fs.info(path)
        tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        # Redacted: this list is the run's lineage (published manifest, Prefect artifacts), and
        # a rotated credential or a fresh signature must not change the run id either.
        entries.append({"url": storage.redact_url(url), "size": int(info.get("size") or 0), "tag": str(tag)})
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"files": entries, "sha256": digest}


def run_id_for(inputs: dict[str, Any], cfg: PipelineConfig) -> str:
    """A run id from the inputs and every setting that shapes the vectors.

    Evaluation and publishing settings are left out on purpose: changing the
    quality gate must not retrain.
    """
    key = json.dumps(
        {"inputs": inputs["sha256"], "config": cfg.fingerprint("corpus", "vocab", "pairs", "train")},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def tokenize(spark: Any, corpus: list[str], layout: RunLayout, cfg: PipelineConfig) -> dict[str, Any]:
    """Ingest and tokenize the corpus into ``runs/{id}/tokens``; returns its manifest."""
    from corpus2vec.jobs.tokenize import run_tokenize

    return run_tokenize(spark, corpus, layout.stage("tokens"), cfg.corpus)


def count(spark: Any, layout: RunLayout, cfg: PipelineConfig) -> dict[str, Any]:
    """Build the vocabulary into ``runs/{id}/vocab``; returns its manifest."""
    from corpus2vec.jobs.count import run_count

    return run_count(spark, layout.stage("tokens"), layout.stage("vocab"), cfg.vocab)


def pairs(spark: Any, layout: RunLayout, cfg: PipelineConfig) -> dict[str, Any]:
    """Subsample and emit (center, context, negatives) shards into ``runs/{id}/pairs``."""
    from corpus2vec.jobs.pairs import run_pairs

    return run_pairs(spark, layout.stage("tokens"), layout.stage("vocab"), layout.stage("pairs"), cfg.pairs)


def train(
    pairs_uri: str, vocab_uri: str, out_uri: str, cfg: PipelineConfig, on_progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Train SGNS under torchrun on the pair shards; returns the train manifest."""
    from corpus2vec.model.launch import launch_training

    return launch_training(pairs_uri, vocab_uri, out_uri, cfg.train, on_progress=on_progress)


def evaluate(train_uri: str, vocab_uri: str, out_uri: str, cfg: PipelineConfig) -> dict[str, Any]:
    """Evaluate the trained vectors; writes ``report.json`` under ``out_uri`` and returns it."""
    from corpus2vec.model.evaluate import evaluate_run

    existing = storage.join(out_uri, "report.json")
    if storage.exists(existing):
        return storage.read_json(existing)
    return evaluate_run(train_uri, vocab_uri, cfg.eval, out_uri)


def publish(
    store: str,
    name: str,
    train_uri: str,
    vocab_uri: str,
    report: dict[str, Any],
    cfg: PipelineConfig,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Gate and publish the run's vectors as ``{store}/embeddings/{name}/{version}``."""
    import numpy as np
    import pyarrow.parquet as pq

    from corpus2vec.model.registry import publish as publish_version

    train_manifest = storage.require_manifest(train_uri, "train")
    fs, vocab_path = storage.get_fs(storage.join(vocab_uri, "vocab.parquet"))
    with fs.open(vocab_path, "rb") as handle:
        vocab = pq.read_table(handle)
    vectors = _load_npy(storage.join(train_uri, "vectors.npy"))
    output_vectors = None
    if storage.exists(storage.join(train_uri, "output_vectors.npy")):
        output_vectors = _load_npy(storage.join(train_uri, "output_vectors.npy"))
    lineage = {
        **lineage,
        "train_manifest": {k: train_manifest.get(k) for k in ("world_size", "pairs_trained")},
    }
    return publish_version(
        store,
        name,
        vectors=np.asarray(vectors, dtype=np.float32),
        words=vocab.column("word").to_pylist(),
        counts=vocab.column("count").to_pylist(),
        report=report,
        config=cfg.to_dict(),
        lineage=lineage,
        cfg=cfg.publish,
        eval_cfg=cfg.eval,
        output_vectors=output_vectors,
    )


def _load_npy(url: str) -> Any:
    import io

    import numpy as np

    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)
