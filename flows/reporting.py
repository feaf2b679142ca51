"""What each stage of ``pretrain`` shows in the Prefect UI: artifacts with stable keys.

A data engineer watching a scheduled retrain opens the flow run and wants the
numbers that tell a healthy run from a broken one without reading the store:
how much text came in and what was rejected, how big the vocabulary is and what
it covers, how many pairs were made and how fast training went, the loss curve,
the metrics and neighbours, and where the version landed. Keys are
``{name}-{what}`` (see :data:`KEYS`) so the Artifacts page keeps one history per
embedding name across scheduled runs.

Rendering (rows, markdown, the loss-curve PNG) is plain functions of manifests
and reports, testable without a Prefect server; the ``publish_*`` functions add
the Prefect calls and must run inside a flow or task run.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from corpus2vec.model import storage
from corpus2vec.model.contracts import Pairs, Tokens, Train, Vocab

log = logging.getLogger(__name__)

# what -> kind; every key a run of `pretrain` creates is f"{safe name}-{what}"
KEYS: dict[str, str] = {
    "corpus": "table",
    "corpus-rejects": "markdown",
    "vocab": "table",
    "vocab-top-words": "table",
    "pairs": "table",
    "training-progress": "progress",
    "training": "table",
    "loss-curve": "image",
    "evaluation": "table",
    "neighbours": "table",
    "publish": "markdown",
    "run-summary": "markdown",
}
TOP_WORDS = 20
MAX_REJECTS_SHOWN = 50
PROGRESS_EVERY_S = 5.0  # each update is an API call; the UI does not need more


def artifact_key(name: str, what: str) -> str:
    """``{name}-{what}`` folded to what Prefect keys allow (lowercase letters, digits, dashes)."""
    safe = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"{safe}-{what}"


def _rows(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": k, "value": _fmt(v)} for k, v in values.items()]


def _fmt(value: Any) -> Any:
    """Round floats for display; keep ints and strings as they are (tables show them verbatim)."""
    if isinstance(value, float):
        return round(value, 6) if abs(value) < 1e4 else round(value, 1)
    return value


# ---------------------------------------------------------------- corpus


def corpus_rows(manifest: Tokens) -> list[dict[str, Any]]:
    """Counts of the tokenize stage: inputs, rejects, documents, sentences, tokens, duplicates."""
    keys = (
        "input_files",
        "rejected_files",
        "bad_fraction",
        "documents",
        "sentences",
        "tokens",
        "duplicates_removed",
        "short_documents",
        "filtered_language",
        "records_skipped",
        "decode_errors",
        "seconds",
    )
    return _rows({k: getattr(manifest, k) for k in keys})


def rejects_markdown(manifest: Tokens) -> str:
    """The files the tokenize stage skipped and why; says so explicitly when there were none."""
    rejects = manifest.rejects
    if not rejects:
        return f"# Rejected inputs\n\nNone of the {manifest.input_files} input file(s) was rejected.\n"
    lines = [
        "# Rejected inputs",
        "",
        f"{len(rejects)} of {manifest.input_files} input file(s) were skipped "
        f"(allowed share: `corpus.max_bad_fraction`). Fix or drop them and rerun.",
        "",
        "| file | reason |",
        "| --- | --- |",
    ]
    for reject in rejects[:MAX_REJECTS_SHOWN]:
        reason = str(reject.get("reason", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{reject.get('file')}` | {reason} |")
    if len(rejects) > MAX_REJECTS_SHOWN:
        lines.append(f"\n... and {len(rejects) - MAX_REJECTS_SHOWN} more in the tokens manifest.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- vocabulary


def vocab_rows(manifest: Vocab) -> list[dict[str, Any]]:
    """Vocabulary size, token totals and coverage (share of tokens the vocabulary keeps)."""
    keys = (
        "vocab_size",
        "types",
        "min_count",
        "max_vocab_size",
        "total_tokens",
        "retained_tokens",
        "coverage",
    )
    return _rows({k: getattr(manifest, k) for k in keys})


def top_words(vocab: Vocab, n: int = TOP_WORDS) -> list[dict[str, Any]]:
    """The ``n`` most frequent words of the vocabulary (ids are by descending count)."""
    total_tokens = vocab.total_tokens
    rows = []
    for row in vocab.table().slice(0, n).to_pylist():
        share = row["count"] / total_tokens if total_tokens else None
        rows.append({"rank": row["id"] + 1, "word": row["word"], "count": row["count"], "share": _fmt(share)})
    return rows


# ---------------------------------------------------------------- pairs and training


def pairs_rows(manifest: Pairs) -> list[dict[str, Any]]:
    """Pairs written, storage cost per pair, subsampling effect and stage time."""
    tokens_in, kept = manifest.tokens_in, manifest.tokens_kept
    values = {
        "total_pairs": manifest.total_pairs,
        "draws": manifest.draws,  # independent samples; epoch e reads draw e % draws
        "shards": len(manifest.files),
        "bytes_per_pair": manifest.bytes_per_pair,
        "bytes_total": sum(f.bytes for f in manifest.files),
        "tokens_in": tokens_in,
        "tokens_kept": kept,
        "kept_after_subsampling": (kept / tokens_in) if tokens_in else None,
        "window": manifest.window,
        "negative": manifest.negative,
        "sample": manifest.sample,
        "seconds": manifest.seconds,
    }
    return _rows(values)


def training_rows(manifest: Train, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Throughput, scale-out, communication, learning-rate schedule and loss of the training stage."""
    config = manifest.config
    epoch_loss = metrics.get("epoch_loss") or []
    values = {
        "world_size": manifest.world_size,
        "backend": manifest.backend,
        "kernel": manifest.kernel,
        "pairs_trained": manifest.pairs_trained,
        "seconds": manifest.seconds,
        "pairs_per_s": manifest.pairs_per_s,
        "pairs_per_s_per_rank": metrics.get("pairs_per_s_per_rank"),
        "bytes_communicated": manifest.bytes_communicated,
        "syncs": metrics.get("syncs"),
        # rank 0's share of wall time spent in syncs and waiting for the pair reader: a high
        # reader share on a GPU means train.reader_threads (or faster storage) would speed it up
        "sync_share": metrics.get("sync_share"),
        "read_wait_share": metrics.get("read_wait_share"),
        "epochs": config.get("epochs"),
        "learning_rate": f"{config.get('alpha')} -> {config.get('min_alpha')} (linear)",
        "final_loss": manifest.final_loss,
        "loss_per_epoch": ", ".join(f"{x:.4f}" for x in epoch_loss),
        "resumed_from_checkpoint": bool(metrics.get("resumed_from")),
    }
    return _rows(values)


def loss_curve_png(metrics: dict[str, Any], title: str) -> bytes | None:
    """A small PNG of loss (and learning rate) against pairs trained; None without matplotlib.

    Points are the trainer's ~2 s progress samples plus one mean per finished epoch,
    so even a run of a few seconds draws a curve.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the flows extra brings matplotlib; a bare install still runs
        return None
    curve = [p for p in metrics.get("loss_curve") or [] if p.get("loss") is not None]
    epoch_loss = metrics.get("epoch_loss") or []
    if not curve and not epoch_loss:
        return None
    per_epoch = metrics.get("pairs", 0) / max(1, len(epoch_loss)) if epoch_loss else 0
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=80)
    if curve:
        ax.plot([p["pairs"] for p in curve], [p["loss"] for p in curve], "-", color="#1f77b4", label="loss")
    if epoch_loss:
        ends = [per_epoch * (i + 1) for i in range(len(epoch_loss))]
        ax.plot(ends, epoch_loss, "o", color="#d62728", label="epoch mean")
    ax.set_xlim(left=0)
    ax.set_xlabel("pairs trained")
    ax.set_ylabel("SGNS loss per pair")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curve:
        lr_axis = ax.twinx()
        lr_axis.plot([p["pairs"] for p in curve], [p["lr"] for p in curve], "--", color="#7f7f7f", lw=1)
        lr_axis.set_ylabel("learning rate", color="#7f7f7f")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return _shrink_png(buffer.getvalue())


def _shrink_png(data: bytes) -> bytes:
    """Palette-quantise the PNG: the image travels inside the artifact as a data: URL."""
    try:
        from PIL import Image
    except ImportError:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=32)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(data) else data


def data_url(png: bytes) -> str:
    """``data:image/png;base64,...``: shown by the UI's ``<img>`` with no file server or bucket to expose."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------- evaluation and publish


def evaluation_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Headline metrics (higher is better) plus how much of each test set was answerable."""
    rows = _rows(report.get("metrics", {}))
    for name, result in (report.get("analogy") or {}).items():
        rows.append({"metric": f"{name} answered", "value": result.get("total")})
    for name, result in (report.get("similarity") or {}).items():
        rows.append({"metric": f"{name} pairs", "value": result.get("pairs")})
    return rows


def neighbour_rows(report: dict[str, Any], shown: int = 8) -> list[dict[str, Any]]:
    """One row per probe word: its nearest neighbours with cosine similarity."""
    return [
        {"probe": probe, "neighbours": ", ".join(f"{w} ({s:.2f})" for w, s in found[:shown])}
        for probe, found in (report.get("neighbours") or {}).items()
    ]


def publish_markdown(result: dict[str, Any], store: str, flow_run_id: str | None) -> str:
    """Where the version is, how to pull it, what the gate checked, which run made it."""
    ref = f"{result['name']}@{result['version']}"
    lines = [
        f"# Published `{ref}`",
        "",
        f"- artifact URI: `{result['uri']}`",
        f"- manifest: `{storage.join(result['uri'], 'manifest.json')}`",
        f"- parent: `{result.get('parent')}`" + ("  (aligned to it)" if result.get("aligned") else ""),
        f"- pull: `corpus2vec pull {ref} --store {store}`",
        f"- flow run: `{flow_run_id}`",
        "",
        "| gate check | value | limit | ok |",
        "| --- | --- | --- | --- |",
    ]
    for check in (result.get("gate") or {}).get("checks", []):
        value = check.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {check.get('check')} | {shown} | {check.get('limit')} | {check.get('ok')} |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The flow's result in one place: version, stage times, metrics, store locations."""
    lines = [
        f"# Run `{summary['run_id']}` -> `{summary['name']}@{summary['version']}`",
        "",
        f"- store: `{summary['store']}`",
        f"- stage outputs: `{storage.join(summary['store'], 'runs', summary['run_id'])}`",
        f"- published: `{summary['uri']}`",
        "",
        "| stage | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in summary["seconds"].items()]
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in summary["metrics"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Prefect side


def publish_table(name: str, what: str, table: list[dict[str, Any]], description: str) -> None:
    """A table artifact under the stable key ``{name}-{what}``."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(key=artifact_key(name, what), table=table, description=description)


def publish_markdown_artifact(name: str, what: str, markdown: str, description: str) -> None:
    """A markdown artifact under the stable key ``{name}-{what}``."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key=artifact_key(name, what), markdown=markdown, description=description)


def publish_loss_curve(name: str, metrics: dict[str, Any], run_id: str) -> bool:
    """The loss-curve image artifact; falls back to a markdown table when no PNG can be drawn."""
    from prefect.artifacts import create_image_artifact

    png = loss_curve_png(metrics, f"{name} - run {run_id}")
    if png is None:
        curve = metrics.get("loss_curve") or []
        table = "\n".join(f"| {p['pairs']} | {p['loss']:.4f} | {p['lr']:.6f} |" for p in curve)
        publish_markdown_artifact(
            name,
            "loss-curve",
            f"# Loss curve\n\n| pairs | loss | lr |\n| --- | --- | --- |\n{table}\n",
            "Loss curve (install matplotlib for the plot)",
        )
        return False
    create_image_artifact(
        image_url=data_url(png),
        key=artifact_key(name, "loss-curve"),
        description=f"SGNS loss and learning rate against pairs trained, run {run_id}",
    )
    return True


class TrainingProgress:
    """A Prefect progress artifact that follows the trainer's ``progress`` records.

    Updates at most every :data:`PROGRESS_EVERY_S` seconds; a failing update is
    logged, never raised, because a monitoring hiccup must not stop training.
    """

    def __init__(self, name: str, run_id: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.name, self.run_id = name, run_id
        self.last = 0.0
        self.artifact_id: UUID | None = create_progress_artifact(
            progress=0.0,
            key=artifact_key(name, "training-progress"),
            description=f"SGNS training of run {run_id}: percent of all pairs of all epochs",
        )

    def __call__(self, record: dict[str, Any], *, force: bool = False) -> None:
        """Take one trainer progress record (``pairs``, ``total_pairs``, ``loss``, ``lr``)."""
        now = time.monotonic()
        if self.artifact_id is None or (now - self.last < PROGRESS_EVERY_S and not force):
            return
        self.last = now
        total = record.get("total_pairs") or 0
        percent = 100.0 * min(1.0, (record.get("pairs") or 0) / total) if total else 0.0
        self._update(percent, record)

    def finish(self) -> None:
        """Mark the artifact complete (a resumed or skipped stage sends no records at all)."""
        self._update(100.0, {})

    def _update(self, percent: float, record: dict[str, Any]) -> None:
        from prefect.artifacts import update_progress_artifact

        loss, rate = record.get("loss"), record.get("pairs_per_s")
        text = f"SGNS training of run {self.run_id}"
        if loss is not None and rate is not None:
            text += f": loss {loss:.4f}, {rate:,.0f} pairs/s, lr {record.get('lr', 0):.5f}"
        try:
            assert self.artifact_id is not None
            update_progress_artifact(self.artifact_id, percent, description=text)
        except Exception as exc:  # monitoring must never fail the stage
            log.warning("could not update the training progress artifact: %r", exc)


def forward_to(*listeners: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """One progress callback that feeds several listeners (terminal display, Prefect artifact)."""

    def forward(record: dict[str, Any]) -> None:
        for listener in listeners:
            listener(record)

    return forward
