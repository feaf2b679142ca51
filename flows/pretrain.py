"""The ``pretrain`` Prefect flow: corpus in, published embedding version out.

Orchestration only: each task calls one function of :mod:`corpus2vec.flows.stages`, passes
URIs on, and publishes what it counted as Prefect artifacts with stable keys
``{name}-{what}`` (:data:`corpus2vec.flows.reporting.KEYS`). Each stage is keyed by its
own inputs (:func:`corpus2vec.flows.stages.stage_keys`), so a rerun after a crash resumes
at the first unfinished stage, and a run that changes only training settings starts no
Spark job: the flow logs ``tokenize reused: ...`` for each stage it found finished.

What an operator sees:

* flow runs named ``{name}-{preset}-{UTC time}`` and tagged ``corpus2vec``,
  ``name:…``, ``preset:…``, ``run:{run_id}`` and, once published, ``version:…``;
  task runs named ``{stage}[{name}@{run_id}]`` carrying the same tags;
* a failure raised as :class:`StageFailed`, whose message (also the run's state
  message and an ERROR log line) starts with the stage, names the input and says
  what to do next;
* transient I/O errors retried with backoff (:data:`RETRY_TRANSIENT`), bad input
  and failed quality gates failing at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE

from corpus2vec.flows import events, reporting, stages
from corpus2vec.flows.defaults import DEFAULT_NAME, SAMPLE_CORPUS, default_store
from corpus2vec.model import storage
from corpus2vec.model.config import PipelineConfig, load_config
from corpus2vec.model.contracts import KINDS, Eval, Pairs, StageManifest, Tokens, Train, Vocab

M = TypeVar("M", bound=StageManifest)

# What to do when a stage fails; the message also names the stage and its input.
HINTS: dict[str, str] = {
    "config": "fix the preset, the --set value or the credentials block; `corpus2vec config --preset P` "
    "lists every setting",
    "tokenize": "check that every --corpus path or URL exists and is readable from the machine running "
    "the flow, and that corpus.format / corpus.text_field match the files; then rerun the same command",
    "count": "if no word reaches min_count, lower it (--set min_count=N) or add input; otherwise rerun "
    "the same command (finished stages are skipped)",
    "pairs": "rerun the same command: unfinished pair shards are cleared and the stage starts over",
    "train": "read the log lines above (train.log in the train folder has all of them); checkpoints are "
    "kept, so rerunning the same command resumes training from the last one",
    "evaluate": "rerun the same command; if the vectors and vocabulary disagree, delete the train folder "
    "named above to retrain",
    "publish": "nothing half-published is visible; if the quality gate failed, inspect the candidate it "
    "names and fix the data or relax eval.min_analogy / eval.max_regression, else rerun the same command",
}


class StageFailed(RuntimeError):
    """A stage of ``pretrain`` failed: which stage, on which input, why, and what to do next.

    The original exception is kept as ``__cause__`` (the retry condition looks at
    it). A RuntimeError, so ``corpus2vec run`` prints it as a one-screen error.
    """

    def __init__(self, stage: str, inputs: str, cause: BaseException, hint: str) -> None:
        self.stage, self.inputs, self.hint = stage, inputs, hint
        message = f"{stage} failed on {inputs}: {type(cause).__name__}: {cause}\nwhat to do: {hint}"
        super().__init__(storage.redact_text(message))  # logged and shown: no URL credentials


@contextlib.contextmanager
def stage_errors(stage: str, inputs: str) -> Iterator[None]:
    """Turn any error inside the block into :class:`StageFailed`, logged at ERROR on the run."""
    try:
        yield
    except StageFailed:
        raise
    except Exception as exc:
        error = StageFailed(stage, inputs, exc, HINTS[stage])
        with contextlib.suppress(Exception):  # outside a run there is no run logger
            get_run_logger().error("%s", error)
        raise error from exc


# Exception classes of the HTTP/object-store stacks (aiohttp, botocore, httpx) that mean
# "the network or the service hiccuped"; matched by name so none of them must be importable.
_TRANSIENT_NAMES = frozenset(
    {
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ConnectError",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
    }
)
# A Spark task's Python error reaches the driver as text inside a JVM exception.
_TRANSIENT_TEXT = re.compile(
    r"Connection (reset|refused|aborted)|timed out|ServiceUnavailable|SlowDown|Broken pipe", re.IGNORECASE
)
_NOT_TRANSIENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could help: network and object-store hiccups yes, bad input or a failed gate no."""
    if isinstance(exc, StageFailed) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, _NOT_TRANSIENT):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if _TRANSIENT_NAMES & {cls.__name__ for cls in type(exc).__mro__}:
        return True
    if isinstance(exc, OSError):  # s3fs maps throttling, 5xx and resets to OSError; a full disk stays full
        return exc.errno not in (errno.ENOSPC, errno.EDQUOT)
    if type(exc).__module__.startswith(("pyspark", "py4j")):
        return bool(_TRANSIENT_TEXT.search(str(exc)))
    return False


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only for transient errors."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


# Stage outputs are keyed by their inputs and skipped via manifests, so
# Prefect's own result caching stays off. A retried stage redoes only unfinished work.
RETRY_TRANSIENT: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [5, 30],
    "retry_jitter_factor": 0.5,  # many scheduled runs must not hammer a recovering store in step
    "retry_condition_fn": only_transient,
    "cache_policy": NO_CACHE,
}


def _task_run_name(stage: str) -> Callable[..., str]:
    """``{stage}[{name}@{run_id}]``: tells task runs of different embeddings and inputs apart."""

    def name(parameters: dict[str, Any]) -> str:
        layout = parameters.get("layout")
        return f"{stage}[{parameters.get('name')}@{getattr(layout, 'run_id', '?')}]"

    return name


def _flow_run_name() -> str:
    """``{name}-{preset}-{UTC time}``, so the runs list reads like a retraining history."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{params.get('name') or DEFAULT_NAME}-{params.get('preset') or 'tiny'}-{stamp}"


def _report(publish: Callable[..., Any], *args: Any) -> Any:
    """Publish an artifact; a Prefect API hiccup is logged, never fails a finished stage."""
    try:
        return publish(*args)
    except Exception as exc:
        get_run_logger().warning("could not publish artifact via %s: %r", publish.__name__, exc)
        return None


def _finished(layout: stages.RunLayout, contract: type[M]) -> M | None:
    """The output of a stage an earlier run finished under this key, so a rerun does not start Spark."""
    found = contract.finished(layout.stage(contract.KIND))
    if found is not None:
        get_run_logger().info("%s reused: %s (key %s)", contract.KIND, found.uri, found.key)
    return found


def _stage_done(stage: str, output: str, facts: dict[str, Any]) -> None:
    """A finished stage's counts and output: one INFO line in the run's log, one event for the terminal."""
    shown = ", ".join(f"{k}={_short(v)}" for k, v in facts.items())
    get_run_logger().info("%s done: %s -> %s", stage, shown, output)
    events.emit("done", stage, **facts)


def _short(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _describe(corpus: list[str]) -> str:
    # no square brackets: terminals render these messages with rich markup
    shown = ", ".join(storage.redact_url(c) for c in corpus[:3])
    return f"corpus {shown}{f' (+{len(corpus) - 3} more)' if len(corpus) > 3 else ''}"


@task(name="tokenize-corpus", task_run_name=_task_run_name("tokenize"), **RETRY_TRANSIENT)
def tokenize_corpus(corpus: list[str], layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> Tokens:
    """Spark: ingest and tokenize; publishes corpus stats and the rejected files."""
    from corpus2vec.jobs.session import get_spark

    events.emit("start", "tokenize")
    with stage_errors("tokenize", _describe(corpus)):
        manifest = _finished(layout, Tokens) or stages.tokenize(get_spark(), corpus, layout, cfg)
    rejected = len(manifest.rejects)
    where = f"run {layout.run_id}: {layout.stage('tokens')}"
    _report(
        reporting.publish_table,
        name,
        "corpus",
        reporting.corpus_rows(manifest),
        f"Corpus stats ({rejected} file(s) rejected), {where}",
    )
    _report(
        reporting.publish_markdown_artifact,
        name,
        "corpus-rejects",
        reporting.rejects_markdown(manifest),
        f"Input files skipped by the tokenize stage, {where}",
    )
    keys = ("input_files", "rejected_files", "documents", "sentences", "tokens", "duplicates_removed")
    _stage_done("tokenize", layout.stage("tokens"), {k: getattr(manifest, k) for k in keys})
    return manifest


@task(name="count-vocabulary", task_run_name=_task_run_name("count"), **RETRY_TRANSIENT)
def count_vocabulary(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> Vocab:
    """Spark: build the vocabulary; publishes size, coverage and the top words."""
    from corpus2vec.jobs.session import get_spark

    events.emit("start", "count")
    with stage_errors("count", layout.stage("tokens")):
        manifest = _finished(layout, Vocab) or stages.count(get_spark(), layout, cfg)
    vocab_uri = layout.stage("vocab")
    _report(
        reporting.publish_table, name, "vocab", reporting.vocab_rows(manifest), f"Vocabulary: {vocab_uri}"
    )
    top = _report(reporting.top_words, manifest)
    if top:
        _report(
            reporting.publish_table,
            name,
            "vocab-top-words",
            top,
            f"The {len(top)} most frequent words and their share of all tokens, run {layout.run_id}",
        )
    facts = {k: getattr(manifest, k) for k in ("vocab_size", "coverage", "total_tokens")}
    _stage_done("count", vocab_uri, facts)
    return manifest


@task(name="emit-pairs", task_run_name=_task_run_name("pairs"), **RETRY_TRANSIENT)
def emit_pairs(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> Pairs:
    """Spark: subsample, window, draw negatives and write the pair shards."""
    from corpus2vec.jobs.session import get_spark

    events.emit("start", "pairs")
    with stage_errors("pairs", f"{layout.stage('tokens')} + {layout.stage('vocab')}"):
        manifest = _finished(layout, Pairs) or stages.pairs(get_spark(), layout, cfg)
    _report(
        reporting.publish_table,
        name,
        "pairs",
        reporting.pairs_rows(manifest),
        f"Pair shards of run {layout.run_id}: {layout.stage('pairs')}",
    )
    _stage_done(
        "pairs", layout.stage("pairs"), {k: getattr(manifest, k) for k in ("total_pairs", "bytes_per_pair")}
    )
    return manifest


@task(name="train-sgns", task_run_name=_task_run_name("train"), cache_policy=NO_CACHE)
def train_embeddings(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> Train:
    """torchrun: train SGNS on the shards; resumes from its own checkpoints when rerun.

    No Prefect retries: torchrun already restarts failed ranks, and a rerun of the
    flow resumes from the last checkpoint.
    """
    events.emit("start", "train")
    done = _finished(layout, Train)
    progress = None if done else _report(reporting.TrainingProgress, name, layout.run_id)

    def to_terminal(record: dict[str, Any]) -> None:
        events.emit("progress", "train", **record)

    listeners = [to_terminal] + ([progress] if progress is not None else [])
    with stage_errors("train", layout.stage("pairs")):
        manifest = done or stages.train(
            layout.stage("pairs"),
            layout.stage("vocab"),
            layout.stage("train"),
            cfg,
            on_progress=reporting.forward_to(*listeners),
            key=layout.keys["train"],
        )
        metrics = manifest.metrics()
    if progress is not None:
        progress.finish()
    _report(
        reporting.publish_table,
        name,
        "training",
        reporting.training_rows(manifest, metrics),
        f"SGNS training of run {layout.run_id}: {layout.stage('train')}",
    )
    _report(reporting.publish_loss_curve, name, metrics, layout.run_id)
    keys = ("world_size", "pairs_trained", "seconds", "pairs_per_s", "final_loss")
    _stage_done("train", layout.stage("train"), {k: getattr(manifest, k) for k in keys})
    return manifest


@task(name="evaluate-vectors", task_run_name=_task_run_name("evaluate"), **RETRY_TRANSIENT)
def evaluate_vectors(layout: stages.RunLayout, cfg: PipelineConfig, name: str) -> dict:
    """Analogy and similarity metrics plus nearest neighbours of the probe words."""
    events.emit("start", "evaluate")
    with stage_errors("evaluate", layout.stage("train")):
        _finished(layout, Eval)
        report = stages.evaluate(
            layout.stage("train"), layout.stage("vocab"), layout.stage("eval"), cfg, key=layout.keys["eval"]
        )
    _report(
        reporting.publish_table,
        name,
        "evaluation",
        reporting.evaluation_rows(report),
        f"Evaluation of run {layout.run_id} (higher is better): {layout.stage('eval')}/report.json",
    )
    _report(
        reporting.publish_table,
        name,
        "neighbours",
        reporting.neighbour_rows(report),
        f"Nearest neighbours (cosine) of the probe words, run {layout.run_id}",
    )
    _stage_done("evaluate", layout.stage("eval"), report.get("metrics", {}))
    return report


@task(name="publish-version", task_run_name=_task_run_name("publish"), **RETRY_TRANSIENT)
def publish_version(
    layout: stages.RunLayout, cfg: PipelineConfig, name: str, report: dict, lineage: dict
) -> dict:
    """Quality gate, then the immutable version and the ``latest`` alias (moved last).

    A retry of this task first looks for a version this flow run already
    published (the attempt may have failed after writing it), so retries never
    publish the same run twice.
    """
    from prefect.runtime import task_run

    events.emit("start", "publish")
    flow_run_id = lineage.get("flow_run_id")
    with stage_errors("publish", f"{layout.stage('train')} -> {layout.store}"):
        result = None
        if flow_run_id and (task_run.run_count or 1) > 1:
            result = _published_by(layout.store, name, flow_run_id)
        if result is None:
            result = stages.publish(
                layout.store, name, layout.stage("train"), layout.stage("vocab"), report, cfg, lineage
            )
    _report(
        reporting.publish_markdown_artifact,
        name,
        "publish",
        reporting.publish_markdown(result, layout.store, flow_run_id),
        f"Published {result['name']}@{result['version']}: {result['uri']}",
    )
    _stage_done("publish", result["uri"], {"version": result["version"], "parent": result.get("parent")})
    return result


def _published_by(store: str, name: str, flow_run_id: str) -> dict[str, Any] | None:
    """The version an earlier attempt of this flow run published, in publish()'s result shape."""
    from corpus2vec.model import registry

    for row in reversed(registry.list_versions(store, name)):
        manifest, _ = registry.load_manifest(store, name, row["version"])  # checked, not trusted
        if manifest.lineage.get("flow_run_id") != flow_run_id:
            continue
        alias = registry.read_alias(store, name, registry.LATEST) or {}
        if alias.get("version") in (None, manifest.parent):  # the attempt died before the alias
            registry.promote(store, name, row["version"], registry.LATEST)
        return {
            "name": manifest.name,
            "version": manifest.version,
            "parent": manifest.parent,
            "gate": manifest.gate,
            "metrics": manifest.metrics,
            "uri": row["uri"],
            "aligned": manifest.aligned_to is not None,
        }
    return None


@flow(
    name="pretrain",
    flow_run_name=_flow_run_name,
    log_prints=True,
    description="Corpus -> Spark pair shards -> torchrun SGNS -> evaluation -> versioned embedding.",
)
def pretrain(
    corpus: list[str] | None = None,
    store: str | None = None,
    name: str = DEFAULT_NAME,
    preset: str = "tiny",
    overrides: list[str] | None = None,
    store_credentials: str | None = None,
) -> dict[str, Any]:
    """Tokenize, count, emit pairs, train, evaluate and publish; returns the run summary.

    ``corpus`` takes files, globs, folders, URLs and ``*.paths(.gz)`` lists;
    ``overrides`` are ``key=value`` settings (``sample_files=N`` samples a crawl);
    ``store_credentials`` names a Prefect Secret block with object-store keys (default:
    the environment, or the machine's role).
    """
    logger = get_run_logger()
    if store_credentials:
        with stage_errors("config", f"Secret block {store_credentials!r}"):
            names = load_store_credentials(store_credentials)
        logger.info("store credentials from Secret block %r: %s", store_credentials, ", ".join(names))
    corpus = corpus or [SAMPLE_CORPUS]
    store = store or default_store()
    with stage_errors("config", f"preset {preset!r}, overrides {' '.join(overrides or []) or 'none'}"):
        cfg = load_config(preset, overrides or [])
    with stage_errors("tokenize", _describe(corpus)):
        inputs = stages.fingerprint_inputs(corpus, cfg)
    layout = stages.layout_for(store, inputs, cfg)
    reused = [s for s in stages.STAGES if KINDS[s].finished(layout.stage(s)) is not None]
    run_tags = ["corpus2vec", f"name:{name}", f"preset:{preset}", f"run:{layout.run_id}"]
    _tag_flow_run(run_tags)
    logger.info(
        "run %s: %d input file(s); stage keys %s under %s/stages",
        layout.run_id,
        len(inputs["files"]),
        " ".join(f"{k}={v}" for k, v in layout.keys.items()),
        store,
    )
    if reused:
        logger.info("finished under their keys, reused: %s", ", ".join(reused))

    timer = stages.StageTimer()
    spark_was_running = _active_spark() is not None  # a caller's session (notebook, tests) stays up
    with tags(*run_tags):
        started = time.monotonic()
        tokenize_corpus(corpus, layout, cfg, name)
        timer.record("tokenize", started)
        started = time.monotonic()
        count_vocabulary(layout, cfg, name)
        timer.record("count", started)
        started = time.monotonic()
        emit_pairs(layout, cfg, name)
        timer.record("pairs", started)
        spark_started = not spark_was_running and _active_spark() is not None
        if not spark_was_running:
            _stop_spark()  # training wants the memory and the cores

        started = time.monotonic()
        train_manifest = train_embeddings(layout, cfg, name)
        timer.record("train", started)
        started = time.monotonic()
        report = evaluate_vectors(layout, cfg, name)
        timer.record("evaluate", started)
        started = time.monotonic()
        lineage = {
            "run_id": layout.run_id,
            "stages": dict(layout.keys),
            "corpus": inputs,
            "preset": preset,
            "overrides": overrides or [],
            "flow_run_id": _flow_run_id(),
        }
        result = publish_version(layout, cfg, name, report, lineage)
        timer.record("publish", started)
    _tag_flow_run([f"version:{result['version']}"])
    summary = {
        **result,
        "run_id": layout.run_id,
        "store": store,
        "metrics": report.get("metrics", {}),
        "training": {k: getattr(train_manifest, k) for k in ("pairs_trained", "pairs_per_s", "world_size")},
        "stages": {s: {"key": layout.keys[s], "uri": layout.stage(s)} for s in stages.STAGES},
        "reused": reused,
        "spark_started": spark_started,
        "seconds": timer.seconds,
    }
    _report(
        reporting.publish_markdown_artifact,
        name,
        "run-summary",
        reporting.summary_markdown(summary),
        f"{name}@{result['version']} from run {layout.run_id}",
    )
    return summary


# Keys of the JSON in a Prefect Secret block -> the environment variables s3fs, the Spark
# tasks (jobs/common.py forwards them) and the torchrun ranks (they inherit it) read.
CREDENTIAL_KEYS = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_DEFAULT_REGION",
}


def load_store_credentials(block: str) -> list[str]:
    """Export object-store credentials from the Prefect ``Secret`` block ``block`` into this process.

    The block holds JSON such as ``{"aws_access_key_id": ..., "aws_secret_access_key": ...}``
    (:data:`CREDENTIAL_KEYS`). Only the block *name* is a flow parameter, so keys never reach
    the Prefect database, the UI, logs or manifests. Returns the variable names set.
    """
    from prefect.blocks.system import Secret

    value = Secret.load(block).get()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or not value or set(value) - set(CREDENTIAL_KEYS):
        raise ValueError(
            f"Secret block {block!r} must hold a JSON object with keys from {sorted(CREDENTIAL_KEYS)}"
            + (
                f"; unexpected: {sorted(set(value) - set(CREDENTIAL_KEYS))}"
                if isinstance(value, dict)
                else ""
            )
        )
    names = [CREDENTIAL_KEYS[k] for k in value]
    os.environ.update({CREDENTIAL_KEYS[k]: str(v) for k, v in value.items()})
    with contextlib.suppress(ImportError):  # cached clients hold the old credentials
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    return names


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _tag_flow_run(extra: list[str]) -> None:
    """Add tags to the current flow run (filterable in the UI); a failure is only logged."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    merged = sorted(set(ctx.flow_run.tags or []) | set(extra))
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(ctx.flow_run.id, tags=merged)
        ctx.flow_run.tags = merged
    except Exception as exc:
        get_run_logger().warning("could not tag the flow run with %s: %r", extra, exc)


def _active_spark() -> Any:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _stop_spark() -> None:
    session = _active_spark()
    if session is not None:
        session.stop()
