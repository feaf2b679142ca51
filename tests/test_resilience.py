"""Resilience: transient errors are retried, real ones fail fast and say what to do, and a run
killed mid-stage (SIGKILL of the whole process tree, as when a worker machine dies) resumes at
the stage it died in and publishes exactly what an uninterrupted run publishes.

The two kill scenarios check each other instead of a third, clean run (CI time):

* killed in **pairs**: the rerun redoes pairs, then trains uninterrupted;
* killed in **training** (after a checkpoint): Spark stages ran uninterrupted, the rerun
  resumes training from the checkpoint.

Equal pair shards (sha256) prove the pairs rerun reproduces uninterrupted output; equal
published ``vectors.npy`` (sha256) then prove that resuming training from a checkpoint is
bitwise identical to training straight through, as model/train.py documents for the same
world size with one kernel thread per rank (``threads=1``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corpus2vec.flows import pretrain
from corpus2vec.flows.pretrain import StageFailed, is_transient, stage_errors
from corpus2vec.model.contracts import KINDS, Pairs, Train
from tests.conftest import ROOT

# Same settings in both scenarios, so both map to the same run fingerprint. Checkpoints at
# every sync (20k pairs per rank) give the training kill a resumable state within ~1 s.
SETTINGS = [
    "min_count=2", "vector_size=32", "epochs=6", "num_shards=2",
    "threads=1", "sync_every=20000", "checkpoint_every_s=0",
]  # fmt: skip
KILL_TIMEOUT_S = 120


# ---------------------------------------------------------------- fast: error classification


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError("peer reset"), True),
        (TimeoutError("read timed out"), True),
        (OSError("s3: 503 SlowDown"), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (FileNotFoundError("s3://b/x.jsonl"), False),
        (PermissionError("403 AccessDenied"), False),
        (ValueError("bad record in x.jsonl line 3"), False),
        (RuntimeError("training failed (torchrun exit code 1)"), False),
        (type("ServerDisconnectedError", (Exception,), {})(), True),  # aiohttp, matched by name
        (type("EndpointConnectionError", (Exception,), {})(), True),  # botocore
    ],
)
def test_only_transient_errors_are_retried(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
    wrapped = StageFailed("pairs", "somewhere", exc, "hint")
    wrapped.__cause__ = exc
    assert is_transient(wrapped) is transient  # the stage wrapper keeps the verdict


def test_retry_condition_reads_the_failed_state() -> None:
    from prefect.states import Failed

    assert pretrain.only_transient(None, None, Failed(data=ConnectionResetError("reset"))) is True
    assert pretrain.only_transient(None, None, Failed(data=ValueError("bad input"))) is False
    assert pretrain.RETRY_TRANSIENT["retries"] >= 1
    assert len(pretrain.RETRY_TRANSIENT["retry_delay_seconds"]) == pretrain.RETRY_TRANSIENT["retries"]


def test_stage_failure_names_stage_input_and_next_step() -> None:
    with pytest.raises(StageFailed) as caught, stage_errors("tokenize", "corpus /data/x.jsonl.gz"):
        raise FileNotFoundError("/data/x.jsonl.gz does not exist")
    message = str(caught.value)
    assert message.startswith("tokenize failed on corpus /data/x.jsonl.gz: FileNotFoundError")
    assert "what to do: check that every --corpus path" in message
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert set(pretrain.HINTS) >= {"config", "tokenize", "count", "pairs", "train", "evaluate", "publish"}


# ---------------------------------------------------------------- slow: kill and resume


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torchrun and the Prefect server start their own sessions)."""
    children, found, stack = _children(), [pid], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_machine(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the run and everything it started, as a dying machine would: freeze first, so
    nothing forks or gets reparented between the listing and the kill."""
    for _ in range(3):
        for pid in _tree(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    pids = _tree(proc.pid)
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def start_run(corpus: Path, store: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    cli = [sys.executable, "-m", "corpus2vec.flows.cli"]
    args = [*cli, "run", "--corpus", str(corpus), "--store", str(store)]
    args += ["--name", "resume", "--json", *[a for s in SETTINGS for a in ("--set", s)]]
    return subprocess.Popen(
        args,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_to_end(corpus: Path, store: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = start_run(corpus, store, env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out)


def stage_dir(store: Path, stage: str) -> Path:
    """The one folder of ``stage`` in a store these tests ran one configuration into."""
    found = sorted((store / "stages" / stage).glob("*")) if (store / "stages" / stage).exists() else []
    assert len(found) <= 1, f"{stage}: more than one key in {store}: {found}"
    return found[0] if found else store / "stages" / stage / "not-started"


def kill_when(corpus: Path, store: Path, env: dict[str, str], ready: Callable[[Path], bool]) -> None:
    """Start a run, SIGKILL its whole tree as soon as ``ready(store)``; fail if it never is."""
    proc = start_run(corpus, store, env)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready(store):
                return
            time.sleep(0.02)
        _, err = proc.communicate(timeout=5) if proc.poll() is not None else ("", "")
        pytest.fail(f"the stage to kill was never caught running (exit {proc.poll()}):\n{err[-3000:]}")
    finally:
        kill_machine(proc)


def in_pairs(store: Path) -> bool:
    """Vocabulary finished, pair shards being written, pairs not finished."""
    pairs = stage_dir(store, "pairs")
    return (
        (stage_dir(store, "vocab") / "_manifest.json").exists()
        and pairs.exists()
        and not (pairs / "_manifest.json").exists()
    )


def in_training(store: Path) -> bool:
    """A checkpoint past the first epoch exists and training has not finished."""
    train = stage_dir(store, "train")
    pointer = train / "checkpoints" / "latest.json"
    if not pointer.exists() or (train / "_manifest.json").exists():
        return False
    with contextlib.suppress(ValueError, OSError):
        pairs_done = int(json.loads(pointer.read_text())["name"].split("-")[1])
        epoch = Pairs.read(str(stage_dir(store, "pairs"))).epoch_pairs(0)
        return pairs_done > epoch  # mid-run: more than one epoch of six done
    return False


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_mtimes(store: Path, stages: tuple[str, ...]) -> dict[str, float]:
    return {s: (stage_dir(store, s) / "_manifest.json").stat().st_mtime for s in stages}


def assert_clean(store: Path, summary: dict[str, Any]) -> Path:
    """One version, no candidates or leftovers; every stage folder holds exactly its manifest's files."""
    names = store / "embeddings" / "resume"
    assert sorted(p.name for p in names.iterdir()) == sorted(["aliases", summary["version"]])
    for stage in ("tokens", "vocab", "pairs", "train", "eval"):
        folder = stage_dir(store, stage)
        assert str(folder) == summary["stages"][stage]["uri"]
        listed = {f.path for f in KINDS[stage].read(str(folder)).files}
        present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert present - {"_manifest.json", "train.log"} == listed, f"{stage}: stray or missing files"
    assert not (stage_dir(store, "train") / "checkpoints").exists()
    return names / summary["version"]


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> dict[str, Any]:
    """Both scenarios: kill in pairs / kill in training, then rerun each to the end."""
    root = tmp_path_factory.mktemp("resilience")
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "C2V_CACHE": str(root / "cache")}
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    out: dict[str, Any] = {}
    for scenario, ready, kept in (
        ("pairs", in_pairs, ("tokens", "vocab")),
        ("train", in_training, ("tokens", "vocab", "pairs")),
    ):
        store = root / scenario
        started = time.monotonic()
        kill_when(small_corpus, store, env, ready)
        before = manifest_mtimes(store, kept)
        summary = run_to_end(small_corpus, store, env)
        out[scenario] = {
            "store": store,
            "summary": summary,
            "kept_before": before,
            "kept_after": manifest_mtimes(store, kept),
            "seconds": time.monotonic() - started,
        }
    return out


@pytest.mark.slow
def test_rerun_resumes_at_the_killed_stage(killed_runs: dict[str, Any]) -> None:
    for scenario, result in killed_runs.items():
        assert result["kept_after"] == result["kept_before"], f"{scenario}: a finished stage was redone"
    metrics = Train.read(killed_runs["train"]["summary"]["stages"]["train"]["uri"]).metrics()
    assert metrics["resumed_from"] is not None and metrics["resumed_from"]["pairs_trained"] > 0
    unbroken = Train.read(killed_runs["pairs"]["summary"]["stages"]["train"]["uri"]).metrics()
    assert unbroken["resumed_from"] is None


@pytest.mark.slow
def test_resumed_runs_publish_identical_vectors_and_nothing_twice(killed_runs: dict[str, Any]) -> None:
    a, b = killed_runs["pairs"], killed_runs["train"]
    assert a["summary"]["run_id"] == b["summary"]["run_id"]
    version_a, version_b = assert_clean(a["store"], a["summary"]), assert_clean(b["store"], b["summary"])
    assert a["summary"]["stages"]["pairs"]["key"] == b["summary"]["stages"]["pairs"]["key"]
    shards = [Pairs.read(s["summary"]["stages"]["pairs"]["uri"]).files for s in (a, b)]
    assert shards[0] == shards[1], "pairs redone after a kill differ from uninterrupted pairs"
    assert sha256(version_a / "vectors.npy") == sha256(version_b / "vectors.npy"), (
        "training resumed from a checkpoint is not bitwise equal to uninterrupted training"
    )


def test_a_publish_retry_finds_the_version_its_flow_run_already_published(store: str) -> None:
    """An attempt that died after writing the version but before moving `latest` is not published twice."""
    from corpus2vec.model import registry
    from corpus2vec.model.config import EvalConfig, PublishConfig
    from tests.model.embedding_helpers import random_table

    words, counts, vectors = random_table(20, 4)
    first = registry.publish(
        store, "news", vectors=vectors, words=words, counts=counts, report={"metrics": {"analogy": 0.5}},
        config={}, lineage={"flow_run_id": "run-1"}, cfg=PublishConfig(), eval_cfg=EvalConfig(),
    )  # fmt: skip
    (Path(store) / "embeddings" / "news" / "aliases" / "latest.json").unlink()
    found = pretrain._published_by(store, "news", "run-1")
    assert found is not None and found["version"] == first["version"] and found["gate"]["passed"]
    assert found["metrics"] == {"analogy": 0.5} and found["parent"] is None and not found["aligned"]
    assert registry.read_alias(store, "news", "latest")["version"] == first["version"]  # moved now
    assert pretrain._published_by(store, "news", "run-2") is None
