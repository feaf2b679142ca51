"""End to end, as a user runs it: the real CLI, a temporary Prefect server, local Spark,
torchrun with 2 gloo processes, and gensim loading the published word2vec binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``corpus2vec ARGS`` the way a user's shell would, failing loudly with its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "corpus2vec.flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"corpus2vec {' '.join(args)} exited {proc.returncode}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> dict:
    """One full ``corpus2vec run`` on 300 articles; every test below inspects its result."""
    root = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "C2V_CACHE": str(root / "cache")}
    env.pop("PREFECT_API_URL", None)  # the embedded default: a temporary local Prefect server
    store = str(root / "store")
    proc = cli(
        "run",
        "--corpus", str(small_corpus),
        "--store", store,
        "--name", "e2e",
        "--set", "min_count=2",
        "--set", "vector_size=32",
        "--set", "epochs=2",
        "--set", "num_shards=2",
        "--json",
        env=env,
    )  # fmt: skip
    summary = json.loads(proc.stdout)
    return {"summary": summary, "store": store, "env": env, "root": root, "stderr": proc.stderr}


def test_run_publishes_a_version_gensim_loads(published: dict) -> None:
    from gensim.models import KeyedVectors

    summary = published["summary"]
    version_dir = Path(published["store"]) / "embeddings" / "e2e" / summary["version"]
    assert summary["name"] == "e2e"
    assert (version_dir / "manifest.json").is_file()
    vectors = KeyedVectors.load_word2vec_format(str(version_dir / "vectors.bin"), binary=True)
    assert vectors.vector_size == 32
    assert "the" in vectors.key_to_index
    vocab_rows = (version_dir / "vocab.tsv").read_text(encoding="utf-8").splitlines()
    assert len(vectors) == len(vocab_rows) > 1000
    assert set(summary["seconds"]) >= {"tokenize", "count", "pairs", "train", "evaluate", "publish", "total"}


def test_alias_latest_points_at_the_run(published: dict) -> None:
    alias = Path(published["store"]) / "embeddings" / "e2e" / "aliases" / "latest.json"
    assert json.loads(alias.read_text())["version"] == published["summary"]["version"]


def test_list_show_and_pull(published: dict, tmp_path: Path) -> None:
    env, store, version = published["env"], published["store"], published["summary"]["version"]
    listing = cli("list", "e2e", "--store", store, env=env).stdout
    assert f"e2e@{version}" in listing
    manifest = json.loads(cli("show", "e2e@latest", "--store", store, env=env).stdout)
    assert manifest["version"] == version
    assert manifest["config"]["train"]["vector_size"] == 32
    out = tmp_path / "pulled"
    cli("pull", "e2e@latest", "--store", store, "--to", str(out), env=env)
    assert (out / "vectors.npy").is_file() and (out / "vocab.tsv").is_file()


def test_rerun_skips_finished_stages_and_publishes_a_new_version(published: dict, small_corpus: Path) -> None:
    """Same inputs and config: every stage manifest is reused, so only publish does work."""
    env, store = published["env"], published["store"]
    runs = list((Path(store) / "runs").iterdir())
    mtimes = {p: p.stat().st_mtime for p in Path(store, "runs").rglob("_manifest.json")}
    proc = cli(
        "run", "--corpus", str(small_corpus), "--store", store, "--name", "e2e",
        "--set", "min_count=2", "--set", "vector_size=32", "--set", "epochs=2", "--set", "num_shards=2",
        "--json", env=env,
    )  # fmt: skip
    summary = json.loads(proc.stdout)
    assert list((Path(store) / "runs").iterdir()) == runs
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert summary["version"] != published["summary"]["version"]
    assert summary["parent"] == published["summary"]["version"]
