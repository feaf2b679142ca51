"""infra/stack.sh really starts, reports and stops the local services on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def stack(action: str, service: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", str(ROOT / "infra" / "stack.sh"), action, service],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_spark_and_s3_start_report_and_stop(tmp_path: Path) -> None:
    ports = {
        k: str(free_port()) for k in ("SPARK_MASTER_PORT", "SPARK_UI_PORT", "SPARK_WORKER_UI_PORT", "S3_PORT")
    }
    env = {**os.environ, **ports, "C2V_STACK_DIR": str(tmp_path)}
    try:
        stack("start", "spark", env)
        stack("start", "s3", env)
        status = stack("status", "all", env)
        assert "spark-master: running" in status and "spark-worker: running" in status
        assert "s3: running" in status and "prefect: stopped" in status
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['SPARK_UI_PORT']}/json/", timeout=10) as resp:
            master = json.load(resp)
        assert master["url"] == f"spark://127.0.0.1:{ports['SPARK_MASTER_PORT']}"
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['S3_PORT']}/", timeout=10) as resp:
            assert resp.status == 200
    finally:
        stack("stop", "all", env)
    assert "running" not in stack("status", "all", env)
    assert not list(tmp_path.glob("*.pid"))
