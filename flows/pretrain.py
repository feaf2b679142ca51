"""The ``pretrain`` Prefect flow: corpus in, published embedding version out.

Orchestration only: each task calls one function of :mod:`flows.stages`, passes
URIs on, and publishes what it counted as Prefect artifacts with stable keys
(``{name}-corpus``, ``{name}-vocab``, ``{name}-pairs``, ``{name}-training``,
``{name}-evaluation``, ``{name}-publish``). Stages are keyed by the run
fingerprint, so a rerun after a crash resumes at the first unfinished stage.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import events, stages
from flows.defaults import DEFAULT_NAME, SAMPLE_CORPUS, default_store
from model.config import PipelineConfig, load_config


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O hiccups (object store, network), never bad input or a failed quality gate."""
    try:
        state.result()
    except (FileNotFoundError, PermissionError):
        return False
    except (OSError, ConnectionError, TimeoutError):
        return True
    except Exception:  # anything else is a real failure: fail fast
        return False
    return False


# Stage outputs are keyed by the run fingerprint and skipped via manifests, so
# Prefect's own result caching stays off.
RETRY_TRANSIENT: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": only_transient,
    "cache_policy": NO_CACHE,
}


def _key(name: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    safe = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"{safe}-{what}"


@task(name="tokenize-corpus", **RETRY_TRANSIENT)
def tokenize_corpus(corpus: list[str], layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """Spark: ingest and tokenize; publishes corpus stats and rejects."""
    from jobs.session import get_spark

    events.emit("start", "tokenize")
    manifest = stages.tokenize(get_spark(), corpus, layout, cfg)
    keys = ("input_files", "rejected_files", "documents", "sentences", "tokens", "duplicates_removed")
    stats = {k: manifest.get(k) for k in keys}
    rejects = manifest.get("rejects") or []
    create_table_artifact(
        key=_key(name, "corpus"),
        table=[{"metric": k, "value": v} for k, v in stats.items()]
        + [{"metric": f"rejected: {r.get('file')}", "value": r.get("reason")} for r in rejects[:50]],
        description=f"Corpus stats and rejects ({len(rejects)} rejected) for run {layout.run_id}",
    )
    events.emit("done", "tokenize", **stats)
    return manifest


@task(name="count-vocabulary", **RETRY_TRANSIENT)
def count_vocabulary(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """Spark: build the vocabulary; publishes size, coverage and the top words."""
    from jobs.session import get_spark

    events.emit("start", "count")
    manifest = stages.count(get_spark(), layout, cfg)
    keys = ("vocab_size", "total_tokens", "retained_tokens", "coverage", "types", "min_count")
    create_table_artifact(
        key=_key(name, "vocab"),
        table=[{"metric": k, "value": manifest.get(k)} for k in keys],
        description=f"Vocabulary of run {layout.run_id}: {layout.stage('vocab')}",
    )
    events.emit("done", "count", vocab_size=manifest.get("vocab_size"))
    return manifest


@task(name="emit-pairs", **RETRY_TRANSIENT)
def emit_pairs(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """Spark: subsample, window, draw negatives and write the pair shards."""
    from jobs.session import get_spark

    events.emit("start", "pairs")
    manifest = stages.pairs(get_spark(), layout, cfg)
    keys = ("total_pairs", "bytes_per_pair", "tokens_in", "tokens_kept", "seconds")
    create_table_artifact(
        key=_key(name, "pairs"),
        table=[{"metric": k, "value": manifest.get(k)} for k in keys]
        + [{"metric": "shards", "value": len(manifest.get("files", []))}],
        description=f"Pair shards of run {layout.run_id}: {layout.stage('pairs')}",
    )
    events.emit("done", "pairs", total_pairs=manifest.get("total_pairs"))
    return manifest


@task(name="train-sgns", cache_policy=NO_CACHE)
def train_embeddings(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """torchrun: train SGNS on the shards; resumes from its own checkpoints when rerun."""
    events.emit("start", "train")

    def forward(progress: dict[str, Any]) -> None:
        events.emit("progress", "train", **progress)

    manifest = stages.train(
        layout.stage("pairs"), layout.stage("vocab"), layout.stage("train"), cfg, on_progress=forward
    )
    keys = ("world_size", "pairs_trained", "seconds", "pairs_per_s", "final_loss")
    create_table_artifact(
        key=_key(name, "training"),
        table=[{"metric": k, "value": manifest.get(k)} for k in keys],
        description=f"SGNS training of run {layout.run_id}: {layout.stage('train')}",
    )
    events.emit("done", "train", **{k: manifest.get(k) for k in keys})
    return manifest


@task(name="evaluate-vectors", cache_policy=NO_CACHE)
def evaluate_vectors(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """Analogy and similarity metrics plus nearest neighbours of the probe words."""
    events.emit("start", "evaluate")
    report = stages.evaluate(layout.stage("train"), layout.stage("vocab"), layout.stage("eval"), cfg)
    metrics = report.get("metrics", {})
    create_table_artifact(
        key=_key(name, "evaluation"),
        table=[{"metric": k, "value": v} for k, v in metrics.items()],
        description=f"Evaluation of run {layout.run_id}",
    )
    events.emit("done", "evaluate", **metrics)
    return report


@task(name="publish-version", **RETRY_TRANSIENT)
def publish_version(
    layout: stages.RunLayout, cfg: PipelineConfig, name: str, report: dict, lineage: dict
) -> dict:
    """Quality gate, then the immutable version and the ``latest`` alias (moved last)."""
    events.emit("start", "publish")
    result = stages.publish(
        layout.store, name, layout.stage("train"), layout.stage("vocab"), report, cfg, lineage
    )
    create_markdown_artifact(
        key=_key(name, "publish"),
        markdown=f"# Published `{result['name']}@{result['version']}`\n\n"
        f"- location: `{result['uri']}`\n- parent: `{result.get('parent')}`\n",
        description="Published embedding version",
    )
    events.emit("done", "publish", version=result["version"], uri=result["uri"])
    return result


@flow(name="pretrain", flow_run_name="{name}-{preset}", log_prints=True)
def pretrain(
    corpus: list[str] | None = None,
    store: str | None = None,
    name: str = DEFAULT_NAME,
    preset: str = "tiny",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Tokenize, count, emit pairs, train, evaluate and publish; returns the run summary."""
    logger = get_run_logger()
    cfg = load_config(preset, overrides or [])
    corpus = corpus or [SAMPLE_CORPUS]
    store = store or default_store()
    timer = stages.StageTimer()
    inputs = stages.fingerprint_inputs(corpus, cfg)
    layout = stages.RunLayout(store, stages.run_id_for(inputs, cfg))
    logger.info("run %s: %d input file(s) -> %s", layout.run_id, len(inputs["files"]), layout.root)

    started = time.monotonic()
    tokenize_corpus(corpus, layout, cfg, name)
    timer.record("tokenize", started)
    started = time.monotonic()
    count_vocabulary(layout, cfg, name)
    timer.record("count", started)
    started = time.monotonic()
    emit_pairs(layout, cfg, name)
    timer.record("pairs", started)
    _stop_spark()  # training wants the memory and the cores

    started = time.monotonic()
    train_manifest = train_embeddings(layout, cfg, name)
    timer.record("train", started)
    started = time.monotonic()
    report = evaluate_vectors(layout, cfg, name)
    timer.record("evaluate", started)
    started = time.monotonic()
    lineage = {"run_id": layout.run_id, "corpus": inputs, "preset": preset, "overrides": overrides or []}
    result = publish_version(layout, cfg, name, report, lineage)
    timer.record("publish", started)
    return {
        **result,
        "run_id": layout.run_id,
        "store": store,
        "metrics": report.get("metrics", {}),
        "training": {k: train_manifest.get(k) for k in ("pairs_trained", "pairs_per_s", "world_size")},
        "seconds": timer.seconds,
    }


def _stop_spark() -> None:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
