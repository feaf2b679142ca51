"""Defaults every command shares, importable without Prefect or Spark (fast CLI start)."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_CORPUS = str(Path(__file__).resolve().parent / "data" / "enwiki-2014-sample.jsonl.gz")
DEFAULT_NAME = "enwiki-sample"


def default_store() -> str:
    """``$C2V_STORE`` or ``~/.local/share/corpus2vec/store``: the folder every command defaults to."""
    return os.environ.get("C2V_STORE") or str(Path.home() / ".local" / "share" / "corpus2vec" / "store")


def quiet_prefect_defaults() -> None:
    """Settings for the embedded temporary Prefect server, unless the user set them.

    Telemetry heartbeats race the temporary server's SQLite file ("database is
    locked" tracebacks) and reach for a network this tool must not need.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server's default 20 s start-up limit is too short on a busy 2-core box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
