"""The production templates in infra/ work: Spark submit wrapper and defaults, torchrun multi-node
launcher, the Prefect deployment file, and object-store credentials that never leak.

Dry runs check the commands a cluster would get; the cheap real runs (spark-submit on
``local[2]``, torchrun with one node) prove the wrappers actually start the jobs.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from corpus2vec.model.config import load_config
from tests.conftest import ROOT

SUBMIT = ROOT / "infra" / "spark" / "submit.sh"
MULTINODE = ROOT / "infra" / "torchrun" / "multinode.sh"


def sh(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], env={**os.environ, **(env or {})}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def argv_of(dry_run_output: str) -> list[str]:
    """The command a ``--dry-run`` printed (shell-quoted by ``printf %q``), as argv."""
    return shlex.split(dry_run_output.strip().splitlines()[-1])


# ---------------------------------------------------------------- Spark


@pytest.mark.parametrize(
    ("master", "mode"),
    [
        ("spark://spark-master:7077", "client"),
        ("yarn", "cluster"),
        ("k8s://https://k8s.example:6443", "cluster"),
    ],
)
def test_spark_submit_dry_run_targets_each_cluster_manager(master: str, mode: str) -> None:
    proc = sh(SUBMIT, "--master", master, "--deploy-mode", mode, "--dry-run",
              "pairs", "--tokens", "s3://b/t", "--vocab", "s3://b/v", "--out", "s3://b/p", "--preset", "web")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    argv = argv_of(proc.stdout)
    assert argv[0].endswith("spark-submit")
    assert argv[argv.index("--master") + 1] == master
    assert argv[argv.index("--deploy-mode") + 1] == mode
    assert argv[argv.index("--properties-file") + 1] == str(ROOT / "infra" / "spark" / "spark-defaults.conf")
    assert argv[argv.index("--py-files") + 1].endswith(".zip")
    job = argv[argv.index(str(ROOT / "infra" / "spark" / "run_job.py")) + 1 :]
    # the job's own flags, plus the master (jobs/session.py sets it on the builder)
    assert job == ["pairs", "--tokens", "s3://b/t", "--vocab", "s3://b/v", "--out", "s3://b/p",
                   "--preset", "web", "--master", master]  # fmt: skip


def test_spark_submit_refuses_what_spark_would_refuse_later() -> None:
    assert sh(SUBMIT, "--dry-run", "train").returncode == 2
    standalone_cluster = sh(
        SUBMIT, "--master", "spark://h:7077", "--deploy-mode", "cluster", "--dry-run", "count"
    )
    assert standalone_cluster.returncode == 2 and "client" in standalone_cluster.stderr


def test_spark_defaults_are_well_formed_and_hold_no_secrets() -> None:
    settings = {}
    for line in (ROOT / "infra" / "spark" / "spark-defaults.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            settings[key] = value.strip()
    assert all(k.startswith("spark.") for k in settings)
    assert settings["spark.speculation"] == "false" and int(settings["spark.task.maxFailures"]) > 1
    assert not any("secret" in k.lower() or "access.key" in k.lower() for k in settings)


@pytest.mark.slow
def test_spark_submit_runs_a_job_for_real(tmp_path: Path, small_corpus: Path) -> None:
    """spark-submit on local[2] with the zipped packages, run_job.py and the defaults file."""
    corpus = tmp_path / "twenty.jsonl.gz"
    with gzip.open(small_corpus, "rt") as src, gzip.open(corpus, "wt") as dst:
        dst.writelines(line for _, line in zip(range(20), src, strict=False))
    out = tmp_path / "tokens"
    proc = sh(SUBMIT, "--master", "local[2]", "--conf", "spark.ui.enabled=false",
              "tokenize", str(corpus), "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["kind"] == "tokens" and manifest["documents"] > 0
    assert "documents=" in proc.stdout


def test_executor_zip_holds_the_jobs_and_runs_them_without_the_installed_package(tmp_path: Path) -> None:
    """The --py-files zip alone imports every job (no trainer inside, torch never imported)."""
    zip_path = tmp_path / "pyfiles.zip"
    built = subprocess.run([sys.executable, str(ROOT / "infra" / "spark" / "pyfiles.py"), str(zip_path)],
                           capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    entries = built.stdout.split()
    assert "corpus2vec/jobs/pairs.py" in entries and "corpus2vec/model/storage.py" in entries
    assert not {"corpus2vec/model/train.py", "corpus2vec/model/sgns.py", "corpus2vec/flows/cli.py"} & set(
        entries
    )
    # a Python that cannot see the installed corpus2vec (editable finders dropped), only the zip
    probe = f"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path.insert(0, {str(zip_path)!r})
import corpus2vec.jobs.tokenize, corpus2vec.jobs.count, corpus2vec.jobs.pairs, corpus2vec
assert corpus2vec.__file__.startswith({str(zip_path)!r}), corpus2vec.__file__
assert "torch" not in sys.modules and "corpus2vec.model.train" not in sys.modules
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# ---------------------------------------------------------------- torchrun


def test_multinode_dry_run_builds_the_torchrun_command() -> None:
    env = {
        "NNODES": "4",
        "NODE_RANK": "3",
        "MASTER_ADDR": "10.0.0.5",
        "MASTER_PORT": "29400",
        "NPROC_PER_NODE": "8",
    }
    proc = sh(MULTINODE, "--pairs", "s3://b/p", "--vocab", "s3://b/v", "--out", "s3://b/t",
              "--preset", "web", "--set", "epochs=2", "--dry-run", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    argv = argv_of(proc.stdout)
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    for flag in ("--nnodes=4", "--node-rank=3", "--nproc-per-node=8", "--master-addr=10.0.0.5",
                 "--master-port=29400"):  # fmt: skip
        assert flag in argv
    assert argv[argv.index("-m", 3) + 1] == "corpus2vec.model.train"
    config = json.loads(argv[argv.index("--config") + 1])
    assert config == dataclasses.asdict(load_config("web", ["epochs=2"]).train)


@pytest.mark.parametrize(
    ("env", "out", "why"),
    [
        ({"NNODES": "2", "NODE_RANK": "2"}, "s3://b/t", "NODE_RANK"),
        ({"NNODES": "2", "NODE_RANK": "0"}, "/local/train", "shared storage"),
        ({}, "s3://b/t", "unknown setting"),
    ],
)
def test_multinode_refuses_bad_setups(env: dict[str, str], out: str, why: str) -> None:
    extra = ["--set", "no_such_setting=1"] if why == "unknown setting" else []
    proc = sh(MULTINODE, "--pairs", "p", "--vocab", "v", "--out", out, *extra, "--dry-run", env=env)
    assert proc.returncode != 0 and why in proc.stderr


@pytest.mark.slow
def test_multinode_trains_for_real_on_one_node(tmp_path: Path) -> None:
    from tests.conftest import free_port
    from tests.model.pairs_fixtures import planted_corpus

    planted = planted_corpus(str(tmp_path), pairs=20_000, shards=2)
    out = tmp_path / "train"
    env = {"NNODES": "1", "NODE_RANK": "0", "NPROC_PER_NODE": "2", "MASTER_PORT": str(free_port())}
    proc = sh(MULTINODE, "--pairs", planted.pairs_uri, "--vocab", planted.vocab_uri, "--out", str(out),
              "--set", "epochs=1", "--set", "vector_size=16", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["pairs_trained"] == 20_000


# ---------------------------------------------------------------- Prefect deployment file


def test_prefect_yaml_matches_the_flow() -> None:
    """Every deployment points at the flow, uses its parameter names and valid settings, no secrets."""
    from corpus2vec.flows.pretrain import pretrain

    text = (ROOT / "infra" / "prefect.yaml").read_text()
    spec = yaml.safe_load(text)
    accepted = set(inspect.signature(pretrain.fn).parameters)
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (ROOT / path).is_file() and name == "pretrain"
        params = deployment["parameters"]
        assert set(params) <= accepted, set(params) - accepted
        load_config(params.get("preset", "tiny"), params.get("overrides", []))
        assert deployment["work_pool"]["name"] == "corpus2vec"
        for schedule in deployment.get("schedules") or []:
            from prefect.schedules import Cron

            Cron(schedule["cron"], timezone=schedule.get("timezone"))
    assert "AWS_SECRET_ACCESS_KEY:" not in text and "aws_secret_access_key" not in text


# ---------------------------------------------------------------- credentials


def _grep_store(store: str, secret: str) -> list[str]:
    """Every object under ``store`` whose bytes contain ``secret``."""
    from corpus2vec.model import storage

    fs, root = storage.get_fs(store)
    fs.invalidate_cache()
    return [path for path in fs.find(root) if secret.encode() in fs.cat_file(path)]


# Runs in a fresh interpreter with its own PREFECT_HOME: the temporary Prefect server
# starts and stops with that process. (prefect_test_harness's teardown can hang on
# draining its log and event workers, which would stall the whole suite.)
_SECRET_RUN = """
import json, sys
from uuid import UUID
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter
from corpus2vec.flows.pretrain import pretrain
from corpus2vec.model import registry

args = json.loads(sys.argv[1])
Secret(value={"aws_access_key_id": args["key_id"], "aws_secret_access_key": args["secret"]}).save("c2v-s3-test")
summary = pretrain(corpus=[args["corpus"]], store=args["store"], name="s3cred",
                   overrides=args["overrides"], store_credentials="c2v-s3-test")
import os
used = os.environ.get("AWS_SECRET_ACCESS_KEY") == args["secret"]
manifest = registry.read_manifest(args["store"], "s3cred@" + summary["version"]).raw
run_id = UUID(manifest["lineage"]["flow_run_id"])
with get_client(sync_client=True) as client:
    logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [run_id]}))
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    flow_run = client.read_flow_run(run_id)
records = [*[log.message for log in logs], *[a.data for a in artifacts], flow_run.model_dump_json()]
print("RESULT " + json.dumps({"summary": summary, "used_block_keys": used, "manifest": manifest,
                               "records": [str(r) for r in records]}, default=str))
"""


@pytest.mark.slow
def test_s3_credentials_from_a_secret_block_never_leak(
    s3_bucket: str, spark: Any, small_corpus: Path, tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Publish to a moto S3 store with keys from a Prefect Secret block (none in the environment),
    then look for the secret in every object of the store, the Prefect logs, artifacts and
    parameters, and everything the run printed."""
    import s3fs

    from corpus2vec.flows import stages

    key_id, secret = f"C2VKEY{uuid.uuid4().hex[:12].upper()}", f"c2v-secret-{uuid.uuid4().hex}"
    overrides = ["min_count=2", "vector_size=16", "epochs=1", "num_shards=1", "nproc=1"]
    cfg = load_config("tiny", overrides)
    # The expensive stages run locally (the flow skips finished stages), then move to S3.
    local = str(tmp_path / "local-store")
    layout = stages.layout_for(local, stages.fingerprint_inputs([str(small_corpus)], cfg), cfg)
    stages.tokenize(spark, [str(small_corpus)], layout, cfg)
    stages.count(spark, layout, cfg)
    stages.pairs(spark, layout, cfg)
    stages.train(layout.stage("pairs"), layout.stage("vocab"), layout.stage("train"), cfg)
    store = f"{s3_bucket}/store"
    uploader = s3fs.S3FileSystem(key=key_id, secret=secret, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    uploader.put(f"{local}/stages", f"{store.removeprefix('s3://')}/stages", recursive=True)

    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.pop("PREFECT_API_URL", None)
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    args = {
        "key_id": key_id,
        "secret": secret,
        "corpus": str(small_corpus),
        "store": store,
        "overrides": overrides,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SECRET_RUN, json.dumps(args)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    summary, manifest, records = result["summary"], result["manifest"], result["records"]
    assert result["used_block_keys"]  # the run used the block's keys
    assert summary["uri"].startswith(f"{store}/embeddings/s3cred/")
    assert any("store credentials from Secret block 'c2v-s3-test'" in r for r in records)
    leaks = _grep_store(store, secret) + _grep_store(local, secret)
    leaks += [r[:80] for r in records if secret in r]
    leaks += ["stdout/stderr"] if secret in proc.stdout + proc.stderr + "".join(capfd.readouterr()) else []
    assert not leaks, f"the secret key leaked into: {leaks}"
    assert key_id not in json.dumps(manifest)
