"""The pipeline's stages as plain functions over URIs and typed configs.

Each stage takes URIs in and gives a URI (or a small dict) out, so the same
function serves the Prefect task in :mod:`corpus2vec.flows.pretrain` and the one-stage CLI
commands (``corpus2vec prepare/train/evaluate/publish``). Heavy work happens in
the Spark jobs (:mod:`corpus2vec.jobs`) and the torchrun trainer (:mod:`corpus2vec.model`); this module only
decides where outputs go (each stage under its own key, :func:`stage_keys`); each
stage function returns at once when its output is already finished
(:meth:`corpus2vec.model.contracts.StageManifest.finished`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from corpus2vec.model import storage
from corpus2vec.model.config import PipelineConfig
from corpus2vec.model.contracts import Pairs, Tokens, Train, Vocab

ProgressFn = Callable[[dict[str, Any]], None]


STAGES = ("tokens", "vocab", "pairs", "train", "eval")
# What shapes each stage besides its upstream stage: the config sections it reads.
STAGE_SECTIONS = {"tokens": "corpus", "vocab": "vocab", "pairs": "pairs", "train": "train", "eval": "eval"}


@dataclass(frozen=True)
class RunLayout:
    """Where one run's stage outputs live: ``{store}/stages/{stage}/{key}/``.

    Each stage is keyed by what shapes it (:func:`stage_keys`): tokens by the
    input files and the corpus settings, vocab by the tokens key and the vocab
    settings, and so on down to eval. A run that changes only ``vector_size``
    therefore finds tokens, vocab and pairs finished under their keys and starts no
    Spark job; one that changes ``min_count`` reuses only the tokens.
    """

    store: str
    keys: dict[str, str]

    @property
    def run_id(self) -> str:
        """The whole chain's id (the eval key depends on every stage above it)."""
        return self.keys["eval"]

    def stage(self, name: str) -> str:
        return storage.join(self.store, "stages", name, self.keys[name])


def stage_keys(inputs: dict[str, Any], cfg: PipelineConfig) -> dict[str, str]:
    """Each stage's key: sha256 of its upstream key and its own config section (16 hex digits).

    The pairs section holds the resolved draw count (one draw per epoch by default),
    so ``epochs`` reaches the pairs key only through it. Publishing settings key
    nothing: changing the quality gate re-gates, never retrains.
    """
    keys: dict[str, str] = {}
    upstream = inputs["sha256"]
    for stage in STAGES:
        material = json.dumps(
            {"stage": stage, "upstream": upstream, "settings": cfg.fingerprint(STAGE_SECTIONS[stage])},
            sort_keys=True,
        )
        upstream = keys[stage] = hashlib.sha256(material.encode()).hexdigest()[:16]
    return keys


def layout_for(store: str, inputs: dict[str, Any], cfg: PipelineConfig) -> RunLayout:
    return RunLayout(store, stage_keys(inputs, cfg))


@dataclass
class StageTimer:
    """Seconds per stage, for the run summary and the Prefect artifacts."""

    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, started: float) -> None:
        self.seconds[stage] = round(time.monotonic() - started, 2)


def fingerprint_inputs(corpus: list[str], cfg: PipelineConfig) -> dict[str, Any]:
    """The input file list (URL, size, etag/mtime) that keys the tokens stage; no file is read.

    Sizes and tags come from folder listings where many inputs share a folder (one
    request per 1,000 objects on S3, as a crawl's ``wet/`` folders do) and from
    metadata requests issued :data:`FINGERPRINT_THREADS` at a time for the rest, so
    a crawl of 10,000 files costs seconds, not 10,000 serial round trips.
    """
    from corpus2vec.jobs.ingest import expand_corpus

    files = expand_corpus(corpus, cfg.corpus)
    found: dict[str, dict[str, Any]] = {}
    by_folder: dict[str, list[str]] = {}
    for url in files:
        by_folder.setdefault(url.rsplit("/", 1)[0], []).append(url)
    listed = [members for members in by_folder.values() if len(members) >= LIST_MIN_FILES]
    with ThreadPoolExecutor(max_workers=FINGERPRINT_THREADS) as pool:
        for result in pool.map(_listed_fingerprints, listed):
            found.update(result)
        rest = [url for url in files if url not in found]
        found.update(zip(rest, pool.map(_file_fingerprint, rest), strict=True))
    entries = [found[url] for url in files]
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"files": entries, "sha256": digest}


FINGERPRINT_THREADS = 32
LIST_MIN_FILES = 8  # inputs in one folder from which listing it beats one request per file


def _tag(info: dict[str, Any]) -> Any:
    return info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")


def _fingerprint(url: str, info: dict[str, Any]) -> dict[str, Any]:
    # Redacted: this list is the run's lineage (published manifest, Prefect artifacts), and
    # a rotated credential or a fresh signature must not change the key either.
    return {"url": storage.redact_url(url), "size": int(info.get("size") or 0), "tag": str(_tag(info))}


def _file_fingerprint(url: str) -> dict[str, Any]:
    fs, path = storage.get_fs(url)
    return _fingerprint(url, fs.info(path))


def _listed_fingerprints(urls: list[str]) -> dict[str, dict[str, Any]]:
    """Fingerprints of ``urls`` (one folder) from one listing; those it lacks are left out."""
    fs, folder = storage.get_fs(urls[0].rsplit("/", 1)[0])
    try:
        listing = fs.ls(folder, detail=True)
    except (NotImplementedError, OSError, ValueError):
        return {}  # no listing here (http has none): these files get one metadata request each
    wanted = {storage.get_fs(url)[1]: url for url in urls}
    out = {}
    for info in listing:
        url = wanted.get(str(info.get("name", "")).rstrip("/"))
        # an entry without size or tag is left to its own metadata request
        if (
            url is not None
            and info.get("type", "file") == "file"
            and info.get("size") is not None
            and _tag(info)
        ):
            out[url] = _fingerprint(url, info)
    return out


def tokenize(spark: Any, corpus: list[str], layout: RunLayout, cfg: PipelineConfig) -> Tokens:
    """Ingest and tokenize the corpus into its tokens folder; returns its manifest."""
    from corpus2vec.jobs.tokenize import run_tokenize

    return run_tokenize(spark, corpus, layout.stage("tokens"), cfg.corpus, key=layout.keys["tokens"])


def count(spark: Any, layout: RunLayout, cfg: PipelineConfig) -> Vocab:
    """Build the vocabulary into its vocab folder; returns its manifest."""
    from corpus2vec.jobs.count import run_count

    return run_count(
        spark, layout.stage("tokens"), layout.stage("vocab"), cfg.vocab, key=layout.keys["vocab"]
    )


def pairs(spark: Any, layout: RunLayout, cfg: PipelineConfig) -> Pairs:
    """Subsample and emit (center, context, negatives) shards into the pairs folder."""
    from corpus2vec.jobs.pairs import run_pairs

    return run_pairs(
        spark,
        layout.stage("tokens"),
        layout.stage("vocab"),
        layout.stage("pairs"),
        cfg.pairs,
        key=layout.keys["pairs"],
    )


def train(
    pairs_uri: str,
    vocab_uri: str,
    out_uri: str,
    cfg: PipelineConfig,
    on_progress: ProgressFn | None = None,
    key: str = "",
) -> Train:
    """Train SGNS under torchrun on the pair shards; returns the train manifest."""
    from corpus2vec.model.launch import launch_training

    return launch_training(pairs_uri, vocab_uri, out_uri, cfg.train, on_progress=on_progress, key=key)


def evaluate(
    train_uri: str, vocab_uri: str, out_uri: str, cfg: PipelineConfig, key: str = ""
) -> dict[str, Any]:
    """Evaluate the trained vectors into ``out_uri`` (reused when finished); returns the report."""
    from corpus2vec.model.evaluate import evaluate_run

    return evaluate_run(train_uri, vocab_uri, cfg.eval, out_uri, key=key)


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

    from corpus2vec.model.registry import publish as publish_version

    trained, vocab = Train.read(train_uri), Vocab.read(vocab_uri)
    if trained.vocab_sha256 != vocab.vocab_sha256:
        raise ValueError(f"{train_uri} was trained on another vocabulary than {vocab_uri}; retrain it")
    table = vocab.table()
    lineage = {
        **lineage,
        "train_manifest": {"world_size": trained.world_size, "pairs_trained": trained.pairs_trained},
    }
    return publish_version(
        store,
        name,
        vectors=np.asarray(trained.vectors(), dtype=np.float32),
        words=table.column("word").to_pylist(),
        counts=table.column("count").to_pylist(),
        report=report,
        config=cfg.to_dict(),
        lineage=lineage,
        cfg=cfg.publish,
        eval_cfg=cfg.eval,
        output_vectors=np.asarray(trained.vectors("output_vectors.npy")),
    )
