"""A Spark standalone master + worker on 127.0.0.1 runs ``python -m corpus2vec.jobs.tokenize`` unchanged.

Spark allows one SparkContext per process and the session fixture already holds one,
so the job runs in a subprocess with ``--master spark://...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from corpus2vec.model.contracts import Tokens
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


def alive_workers(ui_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
        return int(json.load(response).get("aliveworkers", 0))


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """spark://127.0.0.1:PORT with one 1-core worker; both processes stopped afterwards."""
    logs = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master_cmd = [str(spark_class()), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
    master_cmd += ["--port", str(port), "--webui-port", str(ui)]
    worker_cmd = [str(spark_class()), "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}"]
    worker_cmd += ["--host", "127.0.0.1", "--cores", "1", "--memory", "1g", "--webui-port", str(worker_ui)]
    worker_cmd += ["--work-dir", str(logs / "work")]
    processes = []
    try:
        with open(logs / "master.log", "wb") as master_log:
            processes.append(
                subprocess.Popen(master_cmd, env=env, stdout=master_log, stderr=subprocess.STDOUT)
            )
        wait_for(lambda: alive_workers(ui) >= 0, "Spark master")
        with open(logs / "worker.log", "wb") as worker_log:
            processes.append(
                subprocess.Popen(worker_cmd, env=env, stdout=worker_log, stderr=subprocess.STDOUT)
            )
        wait_for(lambda: alive_workers(ui) >= 1, "Spark worker")
        yield f"spark://127.0.0.1:{port}"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_tokenize_on_a_standalone_cluster_matches_local(standalone, pipeline, small_corpus, tmp_path) -> None:
    out = tmp_path / "tokens"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    command = [sys.executable, "-m", "corpus2vec.jobs.tokenize", str(small_corpus), "--out", str(out)]
    command += ["--master", standalone, "--set", "corpus.num_parts=3"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "documents=" in result.stdout
    manifest = Tokens.read(str(out))
    expected = pipeline.manifests["tokens"]
    assert [(f.path, f.sha256) for f in manifest.files] == [(f.path, f.sha256) for f in expected.files]
    assert f"documents={manifest.documents} " in result.stdout


def test_cli_reports_bad_input_with_exit_code_2(tmp_path) -> None:
    (tmp_path / "junk.txt").write_bytes(bytes(range(256)) * 10)
    command = [
        sys.executable,
        "-m",
        "corpus2vec.jobs.tokenize",
        str(tmp_path / "junk.txt"),
        "--out",
        str(tmp_path / "t"),
    ]
    result = subprocess.run(
        [*command, "--master", "local[1]"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert "junk.txt: binary content" in result.stderr
