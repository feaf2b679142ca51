"""The ``corpus2vec`` command: a thin layer over the flows, the stages and the pull client.

``run`` goes through the Prefect flow ``pretrain`` (a temporary local Prefect
server unless ``PREFECT_API_URL`` points at one). ``prepare/train/evaluate/publish``
run one stage each, taking and giving URIs, so a data engineer can rerun one
stage. ``list/show/pull/promote/diff`` need neither Spark nor Prefect.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from corpus2vec.flows.defaults import DEFAULT_NAME, SAMPLE_CORPUS, default_store, quiet_prefect_defaults
from corpus2vec.model.config import PRESETS, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Corpus-scale word2vec: Spark pair shards, torchrun SGNS, versioned embeddings.",
)
err = Console(stderr=True, highlight=False)

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store root: a folder or s3://bucket/prefix.")]
PresetOpt = Annotated[str, typer.Option("--preset", help=f"Settings preset: {', '.join(PRESETS)}.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting, e.g. --set epochs=3 (repeatable).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")]


def _store(store: str | None) -> str:
    return store or default_store()


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


USER_ERROR = 2  # bad --set, bad ref, missing file: the user can fix it (Click uses 2 for usage errors too)
# What a user can fix from the message alone; printed as one line, never as a traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = USER_ERROR) -> None:
    from corpus2vec.model.storage import redact_text

    err.print(f"[bold red]error:[/] {escape(redact_text(message))}", soft_wrap=True)
    raise typer.Exit(code=code)


def _user_errors(func: F) -> F:
    """Turn a user error anywhere in a command into ``error: ...`` on stderr and exit code 2.

    Other failures of the environment (a store that cannot be reached) exit 1,
    also without a traceback: the message says what failed, the traceback would not help.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except _USER_ERRORS as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{type(exc).__name__}: {exc}", code=1)

    return wrapper  # type: ignore[return-value]


@app.command()
@_user_errors
def run(
    corpus: Annotated[
        list[str] | None, typer.Option("--corpus", help="Input file, glob, folder or URL (repeatable).")
    ] = None,
    store: StoreOpt = None,
    name: Annotated[str, typer.Option("--name", help="Embedding name to publish under.")] = DEFAULT_NAME,
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole pipeline (Prefect flow `pretrain`) and publish NAME@VERSION."""
    from corpus2vec.flows.progress import StageProgress
    from corpus2vec.model.storage import redact_url

    quiet_prefect_defaults()
    load_config(preset, overrides or [])  # fail on a bad --set before starting any server
    if any(redact_url(c) != c for c in corpus or []):
        err.print(
            "warning: a --corpus URL carries credentials or a signature; lineage, manifests and logs "
            "record it without them, but the Prefect flow run keeps its parameters as given. Prefer "
            "credentials from the environment (AWS_*, a Secret block)",
            soft_wrap=True,
        )
    from corpus2vec.flows.pretrain import pretrain

    started = time.monotonic()
    with StageProgress(err):
        try:
            summary = pretrain(
                corpus=corpus or [SAMPLE_CORPUS],
                store=_store(store),
                name=name,
                preset=preset,
                overrides=overrides or [],
            )
        except RuntimeError as exc:
            _fail(str(exc), code=1)
    summary["seconds"]["total"] = round(time.monotonic() - started, 2)
    if as_json:
        _print_json(summary)
        return
    err.print(f"[bold green]published[/] {summary['name']}@{summary['version']}")
    if summary.get("reused"):
        err.print(f"reused finished stages: {', '.join(summary['reused'])} (same inputs and settings)")
    if summary.get("digest"):
        err.print(f"content digest: {summary['name']}@{summary['digest']}", soft_wrap=True)
    typer.echo(f"{summary['name']}@{summary['version']}\t{summary['uri']}")
    if summary.get("latest_moved") is False:
        _fail(str(summary.get("warning")), code=1)


@app.command()
@_user_errors
def deploy(
    pool: Annotated[
        str, typer.Option("--pool", help="Prefect work pool (type process), created if missing.")
    ] = ("corpus2vec"),
    cron: Annotated[
        str, typer.Option("--cron", help="Cron schedule, e.g. '0 3 * * 0'; 'none' for no schedule.")
    ] = "0 3 * * 0",
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of --cron.")] = "UTC",
    corpus: Annotated[
        list[str] | None,
        typer.Option("--corpus", help="Input for every run, e.g. a crawl's wet.paths.gz (repeatable)."),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store root for the runs (default: the worker's).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Embedding name to publish under.")] = DEFAULT_NAME,
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    deployment: Annotated[str, typer.Option("--deployment", help="Deployment name.")] = "weekly-retrain",
    credentials_block: Annotated[
        str | None,
        typer.Option(
            "--credentials-block", help="Prefect Secret block with the store's keys (not the keys)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the work pool and a scheduled deployment of `pretrain` on the server at PREFECT_API_URL."""
    from corpus2vec.flows.deploy import DeploySpec
    from corpus2vec.flows.deploy import deploy as deploy_flow
    from corpus2vec.model.storage import redact_url

    secret = [c for c in corpus or [] if redact_url(c) != c]
    if secret:  # a deployment stores its parameters on the server for every future run
        _fail(
            f"--corpus {redact_url(secret[0])} carries credentials or a signature in its URL, and a "
            "deployment stores its parameters on the Prefect server; pass the keys through "
            "--credentials-block (a Prefect Secret block) or the worker's environment instead"
        )
    spec = DeploySpec(
        pool=pool,
        deployment=deployment,
        cron=None if cron.lower() == "none" else cron,
        timezone=timezone,
        corpus=corpus or [],
        store=store,
        name=name,
        preset=preset,
        overrides=overrides or [],
        store_credentials=credentials_block,
    )
    try:
        result = deploy_flow(spec)
    except ValueError as exc:
        _fail(str(exc))
    _print_result(result, as_json)


@app.command()
@_user_errors
def prepare(
    corpus: Annotated[
        list[str] | None, typer.Option("--corpus", help="Input file, glob, folder or URL.")
    ] = None,
    store: StoreOpt = None,
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Spark stages only: tokenize, count, emit pair shards. Prints the vocab and pairs URIs."""
    from corpus2vec.flows import stages
    from corpus2vec.jobs.session import get_spark

    cfg = load_config(preset, overrides or [])
    corpus = corpus or [SAMPLE_CORPUS]
    try:
        inputs = stages.fingerprint_inputs(corpus, cfg)
        layout = stages.layout_for(_store(store), inputs, cfg)
        spark = get_spark()
        tokens = stages.tokenize(spark, corpus, layout, cfg)
        vocab = stages.count(spark, layout, cfg)
        pairs = stages.pairs(spark, layout, cfg)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    result = {
        "tokens": layout.stage("tokens"),
        "vocab": layout.stage("vocab"),
        "pairs": layout.stage("pairs"),
        "documents": tokens.documents,
        "vocab_size": vocab.vocab_size,
        "total_pairs": pairs.total_pairs,
    }
    _print_result(result, as_json)


@app.command()
@_user_errors
def train(
    pairs: Annotated[str, typer.Option("--pairs", help="Pairs stage URI (with _manifest.json).")],
    vocab: Annotated[str, typer.Option("--vocab", help="Vocab stage URI (with _manifest.json).")],
    out: Annotated[str, typer.Option("--out", help="Where vectors, checkpoints and metrics go.")],
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train SGNS under torchrun on existing pair shards."""
    from corpus2vec.flows import stages
    from corpus2vec.flows.progress import StageProgress

    cfg = load_config(preset, overrides or [])
    with StageProgress(err) as progress:
        try:
            manifest = stages.train(pairs, vocab, out, cfg, on_progress=progress.training_callback())
        except RuntimeError as exc:
            _fail(str(exc), code=1)
    keys = ("world_size", "pairs_trained", "pairs_per_s", "seconds", "final_loss")
    _print_result({"train": out, **{k: getattr(manifest, k) for k in keys}}, as_json)


@app.command()
@_user_errors
def evaluate(
    train_uri: Annotated[str, typer.Option("--train", help="Train stage URI (vectors.npy).")],
    vocab: Annotated[str, typer.Option("--vocab", help="Vocab stage URI.")],
    out: Annotated[
        str | None,
        typer.Option("--out", help="Where report.json goes (default: beside --train, TRAIN-eval)."),
    ] = None,
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate trained vectors: analogies, word similarity, nearest neighbours."""
    from corpus2vec.flows import stages
    from corpus2vec.model import storage

    cfg = load_config(preset, overrides or [])
    out = out or train_uri.rstrip("/") + "-eval"
    try:
        report = stages.evaluate(train_uri, vocab, out, cfg)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_result({"report": storage.join(out, "report.json"), **report.get("metrics", {})}, as_json)


@app.command()
@_user_errors
def publish(
    train_uri: Annotated[str, typer.Option("--train", help="Train stage URI.")],
    vocab: Annotated[str, typer.Option("--vocab", help="Vocab stage URI.")],
    report: Annotated[str, typer.Option("--report", help="report.json written by `evaluate`.")],
    name: Annotated[str, typer.Option("--name", help="Embedding name.")] = DEFAULT_NAME,
    store: StoreOpt = None,
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Gate and publish trained vectors as NAME@VERSION; moves `latest` last."""
    from corpus2vec.flows import stages
    from corpus2vec.model import storage

    cfg = load_config(preset, overrides or [])
    try:
        result = stages.publish(
            _store(store), name, train_uri, vocab, storage.read_json(report), cfg, {"train": train_uri}
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_result(result, as_json)
    if result.get("latest_moved") is False:  # published, but downstream `latest` pulls will not see it
        _fail(str(result.get("warning")), code=1)


@app.command("list")
@_user_errors
def list_(
    name: Annotated[str | None, typer.Argument(help="Embedding name; all names when omitted.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List embedding names, or the versions of NAME with their metrics."""
    from corpus2vec.model import registry

    root = _store(store)
    try:
        if name is None:
            names = registry.list_names(root)
            rows: list[dict[str, Any]] = [
                {"name": n, "versions": len(registry.list_versions(root, n))} for n in names
            ]
        else:
            rows = registry.list_versions(root, name)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(rows)
        return
    if not rows:
        err.print(f"nothing published in {root}" + (f" under {name}" if name else ""))
        return
    for row in rows:
        typer.echo(_format_row(row))


@app.command()
@_user_errors
def show(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME@latest or NAME@ALIAS.")],
    store: StoreOpt = None,
) -> None:
    """Print the manifest of one published version."""
    from corpus2vec.model import registry

    try:
        name, version = registry.resolve(_store(store), ref)
        manifest, digest = registry.load_manifest(_store(store), name, version)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    err.print(f"{name}@{version}  content digest: {name}@{digest}", soft_wrap=True, highlight=False)
    _print_json(manifest.raw)


@app.command()
@_user_errors
def pull(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS (default alias: latest).")],
    store: StoreOpt = None,
    to: Annotated[str | None, typer.Option("--to", help="Copy the verified files into this folder.")] = None,
) -> None:
    """Download a version into the local cache (checksums verified) and print its folder."""
    from corpus2vec.model.pull import pull as pull_version

    try:
        path = pull_version(ref, store=_store(store), to=to)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(str(path))


@app.command()
@_user_errors
def promote(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to point the alias at.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move, e.g. stable.")] = "stable",
    store: StoreOpt = None,
) -> None:
    """Point an alias (e.g. `stable`) at an existing version."""
    from corpus2vec.model import registry

    try:
        name, version = registry.resolve(_store(store), ref)
        registry.promote(_store(store), name, version, alias)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"{name}@{alias} -> {version}")


@app.command()
@_user_errors
def diff(
    ref_a: Annotated[str, typer.Argument(help="Older version, NAME@REF.")],
    ref_b: Annotated[str, typer.Argument(help="Newer version, NAME@REF.")],
    store: StoreOpt = None,
) -> None:
    """Drift between two versions: aligned cosine, neighbour overlap, words added and removed."""
    from corpus2vec.model import registry

    try:
        report = registry.diff(_store(store), ref_a, ref_b)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_json(report)


@app.command()
@_user_errors
def config(preset: PresetOpt = "tiny", overrides: SetOpt = None) -> None:
    """Print the resolved settings of a preset with overrides (every key --set accepts)."""
    try:
        _print_json(load_config(preset, overrides or []).to_dict())
    except ValueError as exc:
        _fail(str(exc))


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        typer.echo(f"{key:<{width}}  {value}")


def _format_row(row: dict[str, Any]) -> str:
    if "version" not in row:
        return f"{row['name']}\t{row['versions']} version(s)"
    aliases = ",".join(row.get("aliases") or [])
    if row.get("error"):
        return f"{row['name']}@{row['version']}\t{aliases}\tDAMAGED: {row['error']}"
    metrics = row.get("metrics") or {}
    shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
    return f"{row['name']}@{row['version']}\t{aliases}\t{shown}\t{row['name']}@{row.get('digest')}"


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
