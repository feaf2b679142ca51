"""Scheduled retraining for real: a Prefect server, ``corpus2vec deploy``, a process worker, one run.

Everything runs on 127.0.0.1 with a throwaway ``PREFECT_HOME``. The server's
scheduler is off so that the cron schedule is stored but creates no runs: the
test triggers exactly one run through the API and follows it to Completed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from corpus2vec.flows.reporting import KEYS, artifact_key
from tests.conftest import ROOT
from tests.ui.prefect_server import PREFECT, prefect_server, stop_group

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 300
TINY = ["min_count=2", "vector_size=32", "epochs=1", "num_shards=2", "sample_files=1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server for this module; yields the environment that points clients at it."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
        yield env


@contextlib.contextmanager
def api(env: dict[str, str]) -> Iterator[Any]:
    """A sync Prefect client for the test server (settings scoped to the block)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        yield client


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc.stdout


@contextlib.contextmanager
def worker(pool: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect worker start --pool POOL --type process`` in its own process group, stopped after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
            env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            cwd=log.parent,  # not the project: the deployment's pull step must find the code
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc)


def wait_final(env: dict[str, str], run_id: UUID, log: Path) -> Any:
    """Poll the flow run until it is final; on timeout fail with the worker's log."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        with api(env) as client:
            flow_run = client.read_flow_run(run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} not final after {RUN_TIMEOUT_S}s; worker log:\n{log.read_text()[-4000:]}")


def test_deployed_pretrain_runs_on_a_process_worker(
    server: dict[str, str], small_corpus: Path, tmp_path: Path
) -> None:
    """deploy (pool created) -> worker -> API-triggered run -> Completed, version published, artifacts."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    paths = tmp_path / "crawl" / "wet.paths.gz"
    paths.parent.mkdir()
    with gzip.open(paths, "wt") as handle:  # a Common-Crawl-style paths list with one entry
        handle.write(f"{small_corpus}\n")
    store = tmp_path / "store"
    # fmt: off
    out = run([
        sys.executable, "-m", "corpus2vec.flows.cli", "deploy", "--pool", "c2v-test", "--cron", "0 3 * * 0",
        "--corpus", str(paths), "--store", str(store), "--name", "dep", "--preset", "tiny",
        *[a for o in TINY for a in ("--set", o)], "--json",
    ], server)
    # fmt: on
    deployed = json.loads(out)
    assert deployed["pool_created"] is True
    with api(server) as client:
        deployment = client.read_deployment(UUID(deployed["deployment_id"]))
        pool = client.read_work_pool("c2v-test")
    assert pool.type == "process"
    assert deployment.work_pool_name == "c2v-test"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 0"]
    assert deployment.parameters == {
        "corpus": [str(paths)],
        "store": str(store),
        "name": "dep",
        "preset": "tiny",
        "overrides": TINY,
    }
    assert {"corpus2vec", "name:dep", "preset:tiny"} <= set(deployment.tags)

    log = tmp_path / "worker.log"
    with worker("c2v-test", server, log):
        with api(server) as client:
            flow_run = client.create_flow_run_from_deployment(deployment.id)
        final = wait_final(server, flow_run.id, log)
    assert final.state.is_completed(), f"{final.state.message}\n{log.read_text()[-4000:]}"

    alias = json.loads((store / "embeddings" / "dep" / "aliases" / "latest.json").read_text())
    version_dir = store / "embeddings" / "dep" / alias["version"]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["lineage"]["flow_run_id"] == str(flow_run.id)
    assert manifest["lineage"]["corpus"]["files"][0]["url"] == str(small_corpus)  # via the paths list
    assert f"version:{alias['version']}" in final.tags
    assert final.name.startswith("dep-tiny-")

    with api(server) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {artifact_key("dep", what) for what in KEYS}
    assert {by_key[artifact_key("dep", what)].type for what in KEYS} == set(KEYS.values())
    assert by_key["dep-loss-curve"].data.startswith("data:image/png;base64,")
    assert alias["version"] in by_key["dep-publish"].data and str(version_dir) in by_key["dep-publish"].data
    top = json.loads(by_key["dep-vocab-top-words"].data)
    assert len(top) == 20 and top[0]["rank"] == 1 and top[0]["word"] == "the"
    metrics = {row["metric"] for row in json.loads(by_key["dep-evaluation"].data)}
    assert {"analogy", "wordsim353"} <= metrics


def test_prefect_yaml_declares_the_same_deployment(server: dict[str, str]) -> None:
    """infra/prefect.yaml goes through `prefect deploy` and its parameters are valid flow settings."""
    from corpus2vec.model.config import load_config

    run([*PREFECT, "work-pool", "create", "corpus2vec", "--type", "process"], server)
    run([*PREFECT, "--no-prompt", "deploy", "--prefect-file", "infra/prefect.yaml", "--all"], server)
    with api(server) as client:
        weekly = client.read_deployment_by_name("pretrain/weekly-retrain")
        smoke = client.read_deployment_by_name("pretrain/sample-smoke")
    assert weekly.entrypoint == "flows/pretrain.py:pretrain" and weekly.work_pool_name == "corpus2vec"
    assert [(s.schedule.cron, s.active) for s in weekly.schedules] == [("0 3 * * 0", True)]
    assert weekly.parameters["corpus"][0].endswith("wet.paths.gz")
    assert weekly.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    ]
    for deployment in (weekly, smoke):
        params = deployment.parameters
        load_config(params["preset"], params["overrides"])  # raises on a setting the flow would refuse


def test_a_failed_stage_says_which_input_and_what_to_do(server: dict[str, str], tmp_path: Path) -> None:
    """The state message and the run's ERROR log start with the stage and name the input."""
    from prefect.client.schemas.filters import LogFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from corpus2vec.flows.pretrain import pretrain

    missing = tmp_path / "no-such-crawl.jsonl.gz"
    with temporary_settings(updates={PREFECT_API_URL: server["PREFECT_API_URL"]}):
        state = pretrain(
            corpus=[str(missing)], store=str(tmp_path / "store"), name="broken", return_state=True
        )
    assert state.is_failed()
    assert f"StageFailed: tokenize failed on corpus {missing}" in state.message
    assert "what to do: check that every --corpus path" in state.message
    errors: list[str] = []
    for _ in range(20):  # logs reach the API in batches, shortly after the run ends
        with api(server) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id={"any_": [state.state_details.flow_run_id]})
            )
        errors = [log.message for log in logs if log.level >= 40]
        if errors:
            break
        time.sleep(0.5)
    assert any(m.startswith(f"tokenize failed on corpus {missing}") for m in errors), errors
