"""Helpers shared by the Spark jobs: store settings for tasks, stable hashes, Parquet I/O in tasks.

Spark never touches the store itself (no hadoop-aws jars exist for ``s3a://``):
the driver lists files with fsspec and hands URLs to tasks, which read and write
with fsspec + pyarrow, the cc-pyspark way. The same code then serves a local
folder and ``s3://``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from corpus2vec.model import storage
from corpus2vec.model.contracts import StageManifest

# Object-store settings the driver forwards to its tasks. Executors of a local[*]
# session were started before a test or CLI set them, so they would not see them;
# on a cluster with instance roles none is set and nothing travels.
_FORWARDED_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)
ZSTD_LEVEL = 3


def store_env() -> dict[str, str]:
    """The driver's object-store environment, to be applied in tasks with :func:`apply_store_env`."""
    return {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}


def apply_store_env(env: dict[str, str]) -> None:
    """Make this task process see the driver's store settings; drop cached s3fs clients if they changed."""
    changed = any(os.environ.get(k) != v for k, v in env.items())
    os.environ.update(env)
    if changed:
        try:
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
        except ImportError:  # pragma: no cover - s3fs is a base dependency
            pass


def stable_hash64(*parts: Any) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process and Python version.

    Python's ``hash`` of str is salted per process, so it must never decide where a
    row goes; blake2b of the repr-free encoding does.
    """
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        digest.update(len(data).to_bytes(4, "little"))
        digest.update(data)
    return int.from_bytes(digest.digest(), "little")


def write_parquet_atomic(
    url: str, schema: pa.Schema, tables: Iterable[pa.Table], **options: Any
) -> dict[str, Any]:
    """Write each table as one row group of a zstd Parquet file at ``url``, all or nothing.

    Pages stream into :func:`corpus2vec.model.storage.open_atomic` (a hidden local temp file,
    renamed or uploaded in one piece only when the writer finished), hashed on the
    way, so a killed task never leaves a file that looks finished and the file is
    never held twice in memory. ``options`` go to ``pyarrow.parquet.ParquetWriter``
    (zstd level 3 unless given). Returns a manifest file entry (path is the
    basename) plus ``row_groups``.
    """
    rows = row_groups = 0
    options = {"compression": "zstd", "compression_level": ZSTD_LEVEL, **options}
    with storage.open_atomic(url) as handle:
        sink = storage.HashingWriter(handle)
        with pq.ParquetWriter(sink, schema, **options) as writer:
            for table in tables:
                if table.num_rows:
                    writer.write_table(table.cast(schema), row_group_size=table.num_rows)
                    rows += table.num_rows
                    row_groups += 1
    return {
        "path": url.rstrip("/").rsplit("/", 1)[-1],
        "bytes": sink.bytes,
        "sha256": sink.digest.hexdigest(),
        "rows": rows,
        "row_groups": row_groups,
    }


def manifest_units(stage: StageManifest) -> list[tuple[str, int]]:
    """(file URL, row group) work units covering exactly the files a manifest lists.

    Row groups (not files) are the unit so a corpus that landed in few files still
    spreads over many tasks.
    """
    units = []
    for entry in stage.files:
        url = storage.join(stage.uri, entry.path)
        groups = entry.row_groups
        if groups is None:
            fs, path = storage.get_fs(url)
            with fs.open(path, "rb") as handle:
                groups = pq.ParquetFile(handle).num_row_groups
        units.extend((url, group) for group in range(int(groups)))
    return units


def read_row_group(url: str, group: int, columns: list[str], expected: pa.Schema) -> pa.Table:
    """One row group of a Parquet file listed in a manifest, schema-checked against ``expected``."""
    from corpus2vec.model.schemas import check_schema

    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as handle:
        pfile = pq.ParquetFile(handle)
        check_schema(pfile.schema_arrow, expected, url)
        return pfile.read_row_group(group, columns=columns)


def task_count(spark: Any, units: int, requested: int | None = None) -> int:
    """Map-side Spark tasks for ``units`` work units: ``requested``, else 4 per core, never more than units."""
    wanted = requested or spark.sparkContext.defaultParallelism * 4
    return max(1, min(units, wanted))


def common_args(parser: argparse.ArgumentParser) -> None:
    """Arguments every job's ``main`` takes: Spark master and config preset/overrides."""
    parser.add_argument(
        "--master", default=None, help="Spark master (default: $C2V_SPARK_MASTER or local[*])"
    )
    parser.add_argument("--preset", default="tiny", help="config preset: tiny, bench, web")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )


def run_job_main(
    args: argparse.Namespace, job: str, run: Callable[[Any, Any], StageManifest], keys: tuple[str, ...]
) -> int:
    """The shared body of every job's ``main``: Spark session, the job, its counts, exit code.

    ``run(spark, cfg)`` gets the whole pipeline config; bad input (ValueError, a missing
    stage) prints ``error: ...`` and exits 2 instead of a Java-laden traceback.
    """
    from corpus2vec.jobs.session import get_spark
    from corpus2vec.model.config import load_config

    try:
        cfg = load_config(args.preset, args.overrides)  # a bad --set is one line too, before Spark starts
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spark = get_spark(args.master, app_name=f"corpus2vec-{job}")
    try:
        manifest = run(spark, cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {storage.redact_text(str(exc))}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print(" ".join(f"{k}={getattr(manifest, k)}" for k in keys))
    return 0
