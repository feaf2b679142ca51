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
    return {
        "summary": summary, "store": store, "env": env, "root": root, "stderr": proc.stderr, "corpus": small_corpus,
    }  # fmt: skip


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


SETTINGS = ("--set", "min_count=2", "--set", "vector_size=32", "--set", "epochs=2", "--set", "num_shards=2")


def _rerun(published: dict, small_corpus: Path, *extra: str) -> tuple[dict, str]:
    proc = cli(
        "run", "--corpus", str(small_corpus), "--store", published["store"], "--name", "e2e",
        *SETTINGS, *extra, "--json", env=published["env"],
    )  # fmt: skip
    return json.loads(proc.stdout), proc.stderr


def _stage_dirs(store: str) -> dict[str, list[str]]:
    root = Path(store) / "stages"
    return {stage.name: sorted(p.name for p in stage.iterdir()) for stage in sorted(root.iterdir())}


def test_rerun_skips_finished_stages_and_publishes_a_new_version(published: dict, small_corpus: Path) -> None:
    """Same inputs and config: every stage manifest is reused, so only publish does work."""
    store = published["store"]
    first = published["summary"]
    assert first["reused"] == [] and first["spark_started"] is True
    dirs = _stage_dirs(store)
    assert all(len(keys) == 1 for keys in dirs.values()) and set(dirs) == {
        "tokens",
        "vocab",
        "pairs",
        "train",
        "eval",
    }
    mtimes = {p: p.stat().st_mtime for p in Path(store, "stages").rglob("_manifest.json")}
    summary, _ = _rerun(published, small_corpus)
    assert _stage_dirs(store) == dirs
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert summary["reused"] == ["tokens", "vocab", "pairs", "train", "eval"]
    assert summary["spark_started"] is False
    assert summary["version"] != first["version"]
    assert summary["parent"] == first["version"]


def test_a_training_setting_reuses_every_spark_stage(published: dict, small_corpus: Path) -> None:
    """`--set vector_size=...` keys only train and eval anew: no Spark job starts, a new version is out."""
    first = published["summary"]
    # the 300-article corpus gives noisy scores: the gate's regression check would be a coin toss
    summary, log = _rerun(published, small_corpus, "--set", "vector_size=24", "--set", "max_regression=1")
    assert summary["reused"] == ["tokens", "vocab", "pairs"]
    assert summary["spark_started"] is False
    assert "finished under their keys, reused: tokens, vocab, pairs" in log
    for stage in ("tokens", "vocab", "pairs"):
        assert summary["stages"][stage] == first["stages"][stage]
        assert f"{stage} reused: {first['stages'][stage]['uri']}" in log
    for stage in ("train", "eval"):
        assert summary["stages"][stage]["key"] != first["stages"][stage]["key"]
    manifest = json.loads(cli("show", f"e2e@{summary['version']}", "--store", published["store"],
                              env=published["env"]).stdout)  # fmt: skip
    assert manifest["config"]["train"]["vector_size"] == 24
    assert manifest["lineage"]["stages"]["pairs"] == first["stages"]["pairs"]["key"]


def test_a_vocabulary_setting_reuses_only_the_tokens(published: dict, small_corpus: Path) -> None:
    first = published["summary"]
    summary, _ = _rerun(published, small_corpus, "--set", "min_count=4", "--set", "max_regression=1")
    assert summary["reused"] == ["tokens"] and summary["spark_started"] is True
    assert summary["stages"]["tokens"] == first["stages"]["tokens"]
    assert all(summary["stages"][s]["key"] != first["stages"][s]["key"] for s in ("vocab", "pairs", "train"))


def test_one_stage_commands_chain_through_their_manifests(published: dict, tmp_path: Path) -> None:
    """prepare -> train -> evaluate -> publish by hand, each reading the previous stage's contract."""
    env, store, first = published["env"], published["store"], published["summary"]
    settings = SETTINGS
    prepared = json.loads(cli("prepare", "--corpus", str(published["corpus"]), "--store", store,
                              *settings, "--json", env=env).stdout)  # fmt: skip
    for stage in ("tokens", "vocab", "pairs"):  # the same keys as the flow's run: reused, not redone
        assert prepared[stage] == first["stages"][stage]["uri"]
    train = str(tmp_path / "train")
    trained = json.loads(cli("train", "--pairs", prepared["pairs"], "--vocab", prepared["vocab"], "--out", train,
                             *settings, "--set", "nproc=1", "--json", env=env).stdout)  # fmt: skip
    assert trained["world_size"] == 1 and trained["pairs_trained"] > 0
    evaluated = json.loads(cli("evaluate", "--train", train, "--vocab", prepared["vocab"], *settings,
                               "--json", env=env).stdout)  # fmt: skip
    report = Path(evaluated["report"])
    assert report == Path(train + "-eval") / "report.json"
    assert json.loads((report.parent / "_manifest.json").read_text())["kind"] == "eval"
    out = cli("publish", "--train", train, "--vocab", prepared["vocab"], "--report", str(report),
              "--name", "by-hand", "--store", store, *settings, "--json", env=env).stdout  # fmt: skip
    assert json.loads(out)["name"] == "by-hand"
