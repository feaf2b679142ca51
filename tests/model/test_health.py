"""The health checks that keep collapsed vectors out of the registry, on their own and through the gate."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import registry, storage
from corpus2vec.model.config import EvalConfig, PublishConfig, TrainConfig
from corpus2vec.model.evaluate import evaluate_run
from corpus2vec.model.health import CORPUS_FLOORS, health_checks
from corpus2vec.model.train import DistEnv, parse_args, train
from tests.model.pairs_fixtures import Planted, planted_corpus

GOOD_METRICS = {"epoch_loss": [2.7, 2.5, 2.4]}


def _report(analogy: float, wordsim: float, oov: float = 0.1) -> dict:
    return {
        "metrics": {"analogy": analogy, "wordsim353": wordsim},
        "analogy": {"questions_words": {"oov_rate": oov}},
        "similarity": {"wordsim353": {"oov_rate": oov}},
    }


def _table() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)


def test_a_healthy_run_passes_every_check() -> None:
    result = health_checks(_table(), GOOD_METRICS, 25_000_000, _report(0.35, 0.6))
    assert result["passed"] and not result["reasons"] and result["advice"] is None
    assert {c["check"] for c in result["checks"]} == {
        "health:finite",
        "health:loss",
        "health:analogy",
        "health:wordsim353",
    }


def test_non_finite_vectors_fail() -> None:
    table = _table()
    table[3, 1], table[7, 0] = np.nan, np.inf
    result = health_checks(table, GOOD_METRICS, 1_000, _report(0.0, 0.0))
    assert not result["passed"]
    assert result["reasons"] == ["2 non-finite values in the vectors (training diverged)"]


@pytest.mark.parametrize(
    "metrics",
    [
        {"epoch_loss": [3.57, 40.1, 122.9]},  # the 4-rank "sum" run that published collapsed vectors
        {"epoch_loss": [2.5, float("nan")]},
        {"epoch_loss": [2.5], "loss_curve": [{"loss": 2.0 + i / 10} for i in range(20)]},
        # 8 ranks at a local rate of 0.4 on 10M words: diverged, then "fell" (analogy 0.7%)
        {"epoch_loss": [1.27e25, 2.73e23], "negative": 5},
    ],
)
def test_a_loss_that_did_not_fall_fails(metrics: dict) -> None:
    result = health_checks(_table(), metrics, 1_000, _report(0.0, 0.0))
    assert not result["passed"] and "loss did not fall" in result["reasons"][0]


def test_too_short_a_loss_record_is_not_judged() -> None:
    result = health_checks(_table(), {"epoch_loss": [2.5], "loss_curve": []}, 1_000, _report(0.0, 0.0))
    assert result["passed"]


def test_quality_far_below_the_corpus_size_fails_and_mostly_oov_sets_are_skipped() -> None:
    size, analogy_floor, wordsim_floor = CORPUS_FLOORS[0]
    collapsed = health_checks(_table(), GOOD_METRICS, size, _report(0.001, 0.02))
    assert not collapsed["passed"] and len(collapsed["reasons"]) == 2
    assert f"{size:,} corpus tokens" in collapsed["reasons"][0]
    just_above = health_checks(_table(), GOOD_METRICS, size, _report(analogy_floor, wordsim_floor))
    assert just_above["passed"]
    foreign = health_checks(_table(), GOOD_METRICS, size, _report(0.0, 0.0, oov=0.9))
    assert foreign["passed"] and {c["check"] for c in foreign["checks"]} == {"health:finite", "health:loss"}
    tiny = health_checks(_table(), GOOD_METRICS, 100_000, _report(0.0, 0.0))
    assert tiny["passed"]  # below the smallest floor's size nothing is predicted


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = str(tmp_path_factory.mktemp("health"))
    return planted_corpus(root, groups=10, per_group=20, pairs=200_000, shards=2, row_group_rows=50_000)


def test_a_diverged_training_run_is_refused_by_the_gate(planted: Planted, tmp_path: Path) -> None:
    # the old batched kernel (no curvature limit) at a large batch and step: the run blows up
    cfg = TrainConfig(
        vector_size=16, epochs=2, alpha=2.0, kernel="torch", batch_size=65536, row_step_limit=None,
        threads=1, checkpoint_every_s=1e9,
    )  # fmt: skip
    out = str(tmp_path / "train")
    argv = ["--pairs", planted.pairs_uri, "--vocab", planted.vocab_uri, "--out", out]
    train(parse_args([*argv, "--config", json.dumps(asdict(cfg))]), cfg, DistEnv())
    report = evaluate_run(out, planted.vocab_uri, EvalConfig(), str(tmp_path / "eval"))
    assert not report["health"]["passed"], report["health"]
    store = str(tmp_path / "store")
    os.makedirs(store)
    vectors = np.load(os.path.join(out, "vectors.npy"))
    words = [f"w{i}" for i in range(len(vectors))]
    with pytest.raises(registry.QualityGateFailed, match="collapsed"):
        registry.publish(
            store, "planted", vectors=np.nan_to_num(vectors), words=words, counts=[1] * len(words),
            report=report, config={}, lineage={}, cfg=PublishConfig(), eval_cfg=EvalConfig(),
        )  # fmt: skip
    assert not storage.exists(storage.join(store, "embeddings", "planted", "aliases", "latest.json"))
    # the same run with the curvature limit on trains and passes
    healthy = str(tmp_path / "healthy")
    limited = replace(cfg, row_step_limit=1.0, alpha=0.025)
    train(parse_args([*argv[:-1], healthy, "--config", json.dumps(asdict(limited))]), limited, DistEnv())
    health = evaluate_run(healthy, planted.vocab_uri, EvalConfig(), str(tmp_path / "e2"))["health"]
    assert health["passed"]
    # training records K, so the loss is also held under what untrained vectors score, (1+K)·ln 2
    assert json.loads(Path(healthy, "metrics.json").read_text())["negative"] == 5
    loss = next(c for c in health["checks"] if c["check"] == "health:loss")
    assert loss["value"] < loss["limit"] <= 6 * math.log(2)
