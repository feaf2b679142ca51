"""Training end to end: outputs and manifest, determinism, resume (same and other world size), torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from corpus2vec.model import checkpoint, storage
from corpus2vec.model.config import TrainConfig, load_config
from corpus2vec.model.contracts import Pairs, Train, Vocab
from corpus2vec.model.launch import free_port, launch_training, torchrun_command, worker_env
from corpus2vec.model.reader import VocabMismatchError
from corpus2vec.model.train import (
    COALESCE_BYTES,
    DistEnv,
    all_reduce_together,
    capped_merge_warning,
    full_sync_rate_warning,
    hot_row_count,
    land_mean_merge,
    overlaps_partial_syncs,
    parse_args,
    reader_thread_count,
    scaled_lr_factor,
    start_mean_merge,
    train,
)
from tests.model.pairs_fixtures import (  # noqa: F401 - one_torch_thread is a fixture
    Planted,
    group_separation,
    one_torch_thread,
    planted_corpus,
    write_vocab,
)

# sync_every is small against V=500: with every row hot, long "sum" intervals overshoot (see model/train.py)
CFG = TrainConfig(vector_size=16, epochs=3, sync_every=5_000, checkpoint_every_s=1e9, threads=1, nproc=2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = str(tmp_path_factory.mktemp("train"))
    return planted_corpus(root, groups=20, per_group=25, pairs=300_000, shards=4, row_group_rows=50_000)


def _train_here(
    planted: Planted, out: str, cfg: TrainConfig, stop_after: int | None = None, key: str | None = None
) -> Train | None:
    """One in-process rank (world size 1), as ``python -m corpus2vec.model.train`` runs it."""
    argv = ["--pairs", planted.pairs_uri, "--vocab", planted.vocab_uri, "--out", out]
    argv += ["--config", json.dumps(asdict(cfg))]
    if key is not None:
        argv += ["--key", key]
    if stop_after is not None:
        argv += ["--stop-after-pairs", str(stop_after)]
    return train(parse_args(argv), cfg, DistEnv())


def _vectors(out: str) -> np.ndarray:
    return np.load(os.path.join(out, "vectors.npy"))


def test_single_process_writes_vectors_metrics_and_manifest_last(planted: Planted, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    manifest = _train_here(planted, out, CFG, key="train-key")
    assert isinstance(manifest, Train)
    assert json.loads(Path(out, "_manifest.json").read_text())["kind"] == "train"
    assert Train.read(out) == manifest and Train.read(out).digest == manifest.digest
    assert {f.path for f in manifest.files} == {"vectors.npy", "output_vectors.npy", "metrics.json"}
    for entry in manifest.files:
        assert storage.sha256_of(os.path.join(out, entry.path)) == entry.sha256
        assert os.path.getsize(os.path.join(out, entry.path)) == entry.bytes
    assert manifest.pairs_trained == 3 * planted.total_pairs
    vocab, pairs = Vocab.read(planted.vocab_uri), Pairs.read(planted.pairs_uri)
    assert manifest.vocab_sha256 == vocab.vocab_sha256
    # lineage: the manifests it was built from, and the key the flow passed
    assert manifest.vocab_digest == vocab.digest and manifest.pairs_digest == pairs.digest
    assert manifest.key == "train-key" and manifest.uri == out
    assert manifest.pairs_uri == planted.pairs_uri and manifest.vocab_uri == planted.vocab_uri
    assert (manifest.vocab_size, manifest.vector_size) == (500, CFG.vector_size)
    metrics = json.loads(Path(out, "metrics.json").read_text())
    assert metrics["world_size"] == 1 and metrics["bytes_communicated"] == 0
    assert metrics["epoch_loss"][-1] < metrics["epoch_loss"][0]
    # the wait for the reader is timed (it includes the first buffer's decode, so it is not 0)
    assert metrics["reader_threads"] == 1 and 0 < metrics["read_wait_seconds"] < metrics["seconds"]
    assert metrics["read_wait_share"] == pytest.approx(metrics["read_wait_seconds"] / metrics["seconds"])
    vectors = _vectors(out)
    assert vectors.shape == (500, 16) and vectors.dtype == np.float32
    assert group_separation(vectors, planted.groups) > 0.4
    assert not (tmp_path / "out" / "checkpoints").exists()
    # a finished stage is not redone
    stamp = os.path.getmtime(os.path.join(out, "vectors.npy"))
    assert _train_here(planted, out, CFG).created_at == manifest.created_at
    assert os.path.getmtime(os.path.join(out, "vectors.npy")) == stamp


def test_average_output_is_the_mean_of_both_tables(planted: Planted, tmp_path: Path) -> None:
    out = str(tmp_path / "avg")
    _train_here(planted, out, replace(CFG, epochs=1, output="average"))
    output = np.load(os.path.join(out, "output_vectors.npy"))
    assert output.any()
    first = str(tmp_path / "in")
    _train_here(planted, first, replace(CFG, epochs=1))
    np.testing.assert_allclose(_vectors(out), (_vectors(first) + output) / 2, rtol=1e-6)


def test_one_thread_is_deterministic_and_resume_is_exact(planted: Planted, tmp_path: Path) -> None:
    a, b, resumed = (str(tmp_path / n) for n in ("a", "b", "resumed"))
    _train_here(planted, a, CFG)
    _train_here(planted, b, replace(CFG, reader_threads=3))  # decode threads do not change the stream
    assert np.array_equal(_vectors(a), _vectors(b))
    assert _train_here(planted, resumed, CFG, stop_after=400_000) is None
    assert (tmp_path / "resumed" / "checkpoints" / "latest.json").exists()
    assert not (tmp_path / "resumed" / "_manifest.json").exists()
    manifest = _train_here(planted, resumed, CFG)
    assert manifest.pairs_trained == 3 * planted.total_pairs
    assert np.array_equal(_vectors(resumed), _vectors(a))


def test_reader_threads_default_to_one_beside_a_cpu_kernel_and_the_cores_beside_a_gpu() -> None:
    cores = len(os.sched_getaffinity(0))
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert reader_thread_count(TrainConfig(), DistEnv(), cpu) == 1
    assert reader_thread_count(TrainConfig(), DistEnv(), gpu) == min(8, cores)
    two_local = DistEnv(rank=1, world=4, local_rank=1, local_world=2)
    assert reader_thread_count(TrainConfig(), two_local, gpu) == min(8, max(1, cores // 2))
    assert reader_thread_count(TrainConfig(reader_threads=5), DistEnv(), cpu) == 5


@pytest.mark.usefixtures("one_torch_thread")
def test_the_torch_kernel_trains_on_cpu_too(planted: Planted, tmp_path: Path) -> None:
    out = str(tmp_path / "torch")
    manifest = _train_here(planted, out, replace(CFG, kernel="torch", batch_size=2048, epochs=1))
    assert manifest.kernel == "torch"
    assert group_separation(_vectors(out), planted.groups) > 0.3


def test_a_checkpoint_from_other_settings_is_refused(planted: Planted, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    _train_here(planted, out, CFG, stop_after=100_000)
    with pytest.raises(ValueError, match="different vector_size"):
        _train_here(planted, out, replace(CFG, vector_size=8))


def test_a_checkpoint_naming_unknown_or_misshapen_arrays_is_refused(planted: Planted, tmp_path: Path) -> None:
    """The checkpoint's state.json is read from a store: the array names it lists are checked
    against the known ones before any file is opened, and every table against input.npy's shape."""
    out = str(tmp_path / "out")
    _train_here(planted, out, CFG, stop_after=100_000)
    folder = next(Path(out, "checkpoints").glob("ckpt-*"))
    state_file = folder / "state.json"
    state = json.loads(state_file.read_text())
    assert state["arrays"] == ["input", "output"]  # one process: no merge, no velocity
    state_file.write_text(json.dumps({**state, "arrays": ["input", "output", "../../../etc/passwd"]}))
    with pytest.raises(ValueError, match=r"state\.json lists arrays"):
        _train_here(planted, out, CFG)
    state_file.write_text(json.dumps({**state, "arrays": ["input", "output", "input_velocity"]}))
    np.save(folder / "input_velocity.npy", np.zeros((3, CFG.vector_size), dtype=np.float32))
    with pytest.raises(ValueError, match=r"input_velocity\.npy is float32 \(3, 16\)"):
        _train_here(planted, out, CFG)


def _stop_two_ranks_after(planted: Planted, out: str, cfg: TrainConfig, pairs: int) -> None:
    """Run 2 torchrun ranks with ``--stop-after-pairs``: they stop at a sync point, unfinished."""
    command = torchrun_command(planted.pairs_uri, planted.vocab_uri, out, cfg, 0, free_port())
    stopped = subprocess.run(
        [*command, "--stop-after-pairs", str(pairs)],
        env=worker_env(cfg),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stopped.returncode == 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert not Path(out, "_manifest.json").exists()


@pytest.mark.slow
def test_merge_momentum_acts_where_the_merge_shrinks_and_resumes_bit_for_bit(
    planted: Planted, tmp_path: Path
) -> None:
    """2 ranks at factor 1 (max_local_alpha = alpha) and reach 1: a row both ranks touched moves by
    their mean change, so the merge momentum acts (as beyond 16 ranks at the defaults); a run
    stopped and resumed must carry it in its checkpoint and end bit for bit where an unbroken one does."""
    cfg = replace(CFG, max_local_alpha=CFG.alpha, capped_merge_reach=1.0)
    whole, halted, still = (str(tmp_path / n) for n in ("whole", "halted", "still"))
    launch_training(planted.pairs_uri, planted.vocab_uri, whole, cfg)
    _stop_two_ranks_after(planted, halted, cfg, 400_000)
    (folder,) = Path(halted, "checkpoints").glob("ckpt-*")
    state = json.loads((folder / "state.json").read_text())
    assert state["arrays"] == ["input", "input_velocity", "output", "output_velocity"]
    assert np.load(folder / "input_velocity.npy").any()
    launch_training(planted.pairs_uri, planted.vocab_uri, halted, cfg)
    assert np.array_equal(_vectors(halted), _vectors(whole))
    launch_training(planted.pairs_uri, planted.vocab_uri, still, replace(cfg, capped_merge_momentum=False))
    assert not np.allclose(_vectors(still), _vectors(whole))  # the momentum changed the merge
    # with the momentum, rows both ranks touch learn as one process's would, not at half its rate
    one = _train_here(planted, str(tmp_path / "one"), CFG)
    assert one is not None
    assert group_separation(_vectors(whole), planted.groups) == pytest.approx(
        group_separation(_vectors(str(tmp_path / "one")), planted.groups), abs=0.05
    )


def test_training_refuses_pairs_from_another_vocabulary(planted: Planted, tmp_path: Path) -> None:
    vocab = str(tmp_path / "vocab")
    write_vocab(vocab, ["a", "b", "c"], np.array([3, 2, 1]))
    args = parse_args(["--pairs", planted.pairs_uri, "--vocab", vocab, "--out", str(tmp_path / "o")])
    with pytest.raises(VocabMismatchError):
        train(args, CFG, DistEnv())


@pytest.fixture(scope="module")
def two_process_run(planted: Planted, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Train, list]:
    """An uninterrupted 2-rank gloo run through launch_training, shared by the comparisons below."""
    out = str(tmp_path_factory.mktemp("two") / "out")
    progress: list[dict] = []
    manifest = launch_training(
        planted.pairs_uri, planted.vocab_uri, out, CFG, on_progress=progress.append, key="two-ranks"
    )
    return out, manifest, progress


@pytest.mark.slow
def test_two_gloo_processes_train_through_launch_training(
    two_process_run: tuple[str, Train, list], planted: Planted
) -> None:
    out, manifest, progress = two_process_run
    assert isinstance(manifest, Train) and manifest == Train.read(out)
    assert manifest.key == "two-ranks"  # torchrun passes --key to the ranks
    assert manifest.world_size == 2 and manifest.backend == "gloo"
    assert manifest.pairs_trained == 3 * planted.total_pairs
    metrics = json.loads(Path(out, "metrics.json").read_text())
    # per full sync and rank: both tables (float32) plus 3 float64 stats and one float64 slot
    # per rank (its sync time); per partial sync the first 1024·2^k rows of both tables, here
    # all 500 (partial syncs run from 2 ranks on)
    assert metrics["hot_syncs"] > metrics["syncs"] and metrics["sync_hot_rows"] == 1024
    assert metrics["partial_syncs_overlapped"] is True  # 2 ranks step at a local 2 x 0.05
    tables = 2 * 500 * CFG.vector_size * 4
    stats = 8 * (3 + 2)
    assert (
        metrics["bytes_communicated"] == metrics["syncs"] * (tables + stats) + metrics["hot_syncs"] * tables
    )
    # each rank's sync time reaches rank 0's report (up to the last full sync's own wait)
    per_rank = metrics["sync_seconds_per_rank"]
    assert len(per_rank) == 2 and all(0 < s <= metrics["seconds"] for s in per_rank)
    assert per_rank[0] <= metrics["sync_seconds"]
    assert metrics["sync_share_max"] == pytest.approx(max(per_rank) / metrics["seconds"])
    assert metrics["pairs_per_s_per_rank"] == pytest.approx(metrics["pairs_per_s"] / 2)
    assert len(progress) >= CFG.epochs and {"pairs", "loss", "lr", "eta_s", "pairs_per_s"} <= set(
        progress[-1]
    )
    assert progress[-1]["pairs"] == 3 * planted.total_pairs
    assert group_separation(_vectors(out), planted.groups) > 0.4
    assert Path(out, "train.log").exists()
    # launching again finds the manifest and returns it without training
    again = launch_training(planted.pairs_uri, planted.vocab_uri, out, CFG)
    assert again.created_at == manifest.created_at and again.digest == manifest.digest


@pytest.mark.slow
def test_a_failing_rank_is_reported_with_the_log_tail(planted: Planted, tmp_path: Path) -> None:
    bad = replace(CFG, device="cuda")  # no GPU here: every rank fails at start
    with pytest.raises(RuntimeError, match=r"(?s)rank \d.*failed.*no CUDA device"):
        launch_training(planted.pairs_uri, planted.vocab_uri, str(tmp_path / "out"), bad, max_restarts=0)


def _worker_pids(out: str) -> list[int]:
    """Training ranks for ``out``, found by scanning /proc (their command line names the out dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"corpus2vec.model.train" in cmd and out.encode() in cmd and b"torch.distributed.run" not in cmd:
            pids.append(int(entry))
    return sorted(pids)


def _kill_a_rank_after_first_checkpoint(out: str, killed: list[int]) -> None:
    latest = Path(out, "checkpoints", "latest.json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not latest.exists():
        time.sleep(0.01)
    pids = _worker_pids(out)
    if latest.exists() and len(pids) == 2:
        os.kill(pids[-1], signal.SIGKILL)
        killed.append(pids[-1])


@pytest.mark.slow
def test_killed_rank_is_restarted_and_resumes_from_checkpoint(
    planted: Planted, two_process_run: tuple[str, Train, list], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_rank_after_first_checkpoint, args=(out, killed))
    killer.start()
    every_sync = replace(CFG, checkpoint_every_s=0.0)  # results do not depend on the cadence
    manifest = launch_training(planted.pairs_uri, planted.vocab_uri, out, every_sync, max_restarts=1)
    killer.join()
    assert killed, "no rank was killed: the run finished before its first checkpoint"
    log = Path(out, "train.log").read_text()
    assert "resumed at epoch" in log
    assert manifest.pairs_trained == 3 * planted.total_pairs
    reference_out, reference, _ = two_process_run
    assert manifest.final_loss == pytest.approx(reference.final_loss, rel=0.02)
    sep, ref_sep = (
        group_separation(_vectors(out), planted.groups),
        group_separation(_vectors(reference_out), planted.groups),
    )
    assert sep == pytest.approx(ref_sep, abs=0.03)


@pytest.mark.slow
def test_overlapped_partial_syncs_are_deterministic_resumable_and_keep_quality(
    planted: Planted, two_process_run: tuple[str, Train, list], tmp_path: Path
) -> None:
    """The default 2 ranks send each partial sync without waiting and land it one segment later.
    Where it lands must not depend on timing: a run stopped at a sync point and resumed ends bit for
    bit where the unbroken run did; blocking partial syncs give other vectors of the same quality."""
    reference_out, _, _ = two_process_run
    assert json.loads(Path(reference_out, "metrics.json").read_text())["hot_syncs"] > 0
    halted, blocking = str(tmp_path / "halted"), str(tmp_path / "blocking")
    _stop_two_ranks_after(planted, halted, CFG, 400_000)
    _, state = checkpoint.load_latest(halted)
    at_stop = state["counters"]["rank_sync_seconds"]
    launch_training(planted.pairs_uri, planted.vocab_uri, halted, CFG)
    assert np.array_equal(_vectors(halted), _vectors(reference_out))
    # every rank's sync time is in the checkpoint and goes on from there after the resume
    resumed = json.loads(Path(halted, "metrics.json").read_text())["sync_seconds_per_rank"]
    assert len(at_stop) == 2 and all(
        after >= before > 0 for after, before in zip(resumed, at_stop, strict=True)
    )
    launch_training(planted.pairs_uri, planted.vocab_uri, blocking, replace(CFG, overlap_partial_syncs=False))
    assert not np.array_equal(_vectors(blocking), _vectors(reference_out))  # the overlap is what ran
    assert json.loads(Path(blocking, "metrics.json").read_text())["partial_syncs_overlapped"] is False
    assert group_separation(_vectors(reference_out), planted.groups) == pytest.approx(
        group_separation(_vectors(blocking), planted.groups), abs=0.03
    )


@pytest.mark.slow
def test_resume_with_a_different_world_size(
    planted: Planted, two_process_run: tuple[str, Train, list], tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    assert _train_here(planted, out, CFG, stop_after=450_000) is None  # 1 rank, half the work
    manifest = launch_training(planted.pairs_uri, planted.vocab_uri, out, CFG)  # 2 ranks finish it
    metrics = json.loads(Path(out, "metrics.json").read_text())
    assert metrics["resumed_from"]["world_size"] == 1 and metrics["world_size"] == 2
    # the epoch in progress is redistributed by fraction: the total stays within one sync of exact
    assert abs(manifest.pairs_trained - 3 * planted.total_pairs) <= 2 * CFG.sync_every
    reference_out, reference, _ = two_process_run
    assert manifest.final_loss == pytest.approx(reference.final_loss, rel=0.03)
    assert group_separation(_vectors(out), planted.groups) == pytest.approx(
        group_separation(_vectors(reference_out), planted.groups), abs=0.05
    )


def test_reads_and_writes_object_storage(s3_bucket: str) -> None:
    planted = planted_corpus(storage.join(s3_bucket, "run"), pairs=20_000, shards=2, row_group_rows=5_000)
    out = storage.join(s3_bucket, "run", "train")
    cfg = replace(CFG, epochs=2)
    assert _train_here(planted, out, cfg, stop_after=20_000) is None  # leaves a checkpoint on S3
    assert storage.exists(storage.join(out, "checkpoints", "latest.json"))
    manifest = _train_here(planted, out, cfg)
    assert manifest.pairs_trained == 40_000
    assert Train.read(out) == manifest and Train.read(out).digest == manifest.digest
    assert not storage.exists(storage.join(out, "checkpoints"))
    for entry in manifest.files:
        assert storage.sha256_of(storage.join(out, entry.path)) == entry.sha256
    assert manifest.vectors().shape == (manifest.vocab_size, cfg.vector_size)


def _neighbour_accuracy(vectors: np.ndarray, groups: np.ndarray) -> float:
    """Share of words whose nearest neighbour (cosine) is in their own planted group."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return float((groups[sims.argmax(axis=1)] == groups).mean())


@pytest.fixture(scope="module")
def one_rank_reference(planted: Planted, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = str(tmp_path_factory.mktemp("one") / "out")
    _train_here(planted, out, replace(CFG, nproc=1))
    return _vectors(out)


@pytest.mark.slow
def test_four_gloo_ranks_keep_single_process_quality(
    planted: Planted, one_rank_reference: np.ndarray, tmp_path: Path
) -> None:
    # the default merge ("scaled": replicas trained at world x lr, then averaged) at 4 ranks
    # three syncs per epoch: the regime in which summing collapsed on real corpora; between
    # them, 15 partial syncs of the 64·2^k most frequent rows (V=500, so the 8th is whole)
    four_ranks = replace(CFG, nproc=4, sync_every=25_000, sync_hot_rows=64)
    out = str(tmp_path / "four")
    manifest = launch_training(planted.pairs_uri, planted.vocab_uri, out, four_ranks)
    assert manifest.world_size == 4 and manifest.pairs_trained == 3 * planted.total_pairs
    metrics = json.loads(Path(out, "metrics.json").read_text())
    assert metrics["sync_average"] == "scaled" and metrics["epoch_loss"][-1] < metrics["epoch_loss"][0]
    four, one = _vectors(out), one_rank_reference
    assert group_separation(four, planted.groups) == pytest.approx(
        group_separation(one, planted.groups), abs=0.05
    )
    assert _neighbour_accuracy(four, planted.groups) >= _neighbour_accuracy(one, planted.groups) - 0.05
    # what was sent: per full sync both tables, 3 float64 counters and 4 ranks' sync times, per
    # interval the prefixes
    vocab, row_bytes = 500, 2 * CFG.vector_size * 4
    hot_rows = sum(min(vocab, 64 << ((n & -n).bit_length() - 1)) for n in range(1, 16))
    assert metrics["hot_syncs"] == 15 * metrics["syncs"]
    assert metrics["bytes_communicated"] == metrics["syncs"] * ((vocab + hot_rows) * row_bytes + 8 * (3 + 4))
    assert len(metrics["sync_seconds_per_rank"]) == 4
    # capped (4 x 0.05 > 0.1), reach 1: each row's summed change is divided by max(factor, ranks
    # that touched it), so rows one rank trained still move as one process moves them; past
    # reach x factor = 2 ranks the merge momentum acts on the rows more ranks touched (it sends nothing)
    capped = str(tmp_path / "capped")
    launch_training(
        planted.pairs_uri,
        planted.vocab_uri,
        capped,
        replace(four_ranks, max_local_alpha=0.1, capped_merge_reach=1.0),
    )
    assert group_separation(_vectors(capped), planted.groups) == pytest.approx(
        group_separation(one, planted.groups), abs=0.05
    )
    capped_metrics = json.loads(Path(capped, "metrics.json").read_text())
    touched_bytes = 2 * 4 * (vocab + hot_rows)  # one float32 count per row and table
    assert (
        capped_metrics["bytes_communicated"]
        == metrics["bytes_communicated"] + metrics["syncs"] * touched_bytes
    )
    # the default reach 2 (= world / factor here): every row's summed change over the factor, up
    # to twice the touchers' mean; what held 16 ranks on 2M and 10M (docs/bench/sixteen_ranks.md)
    reach = str(tmp_path / "reach")
    launch_training(
        planted.pairs_uri,
        planted.vocab_uri,
        reach,
        replace(four_ranks, max_local_alpha=0.1),
    )
    reached = _vectors(reach)
    assert not np.allclose(reached, _vectors(capped))  # the rule changed the merge
    assert group_separation(reached, planted.groups) == pytest.approx(
        group_separation(one, planted.groups), abs=0.05
    )
    # the statistic tells a collapse apart: summing the 4 replicas' updates overshoots hot rows
    summed = str(tmp_path / "sum")
    launch_training(planted.pairs_uri, planted.vocab_uri, summed, replace(four_ranks, sync_average="sum"))
    # measured: 1 rank 0.595, 4 ranks scaled 0.600, 4 ranks sum 0.433
    assert group_separation(_vectors(summed), planted.groups) < group_separation(one, planted.groups) - 0.1


@pytest.fixture(scope="module")
def planted_large(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = str(tmp_path_factory.mktemp("large"))
    return planted_corpus(root, groups=20, per_group=50, pairs=1_000_000, shards=4, row_group_rows=100_000)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_batched_kernel_at_the_web_batch_size_keeps_numba_quality(
    planted_large: Planted, tmp_path: Path
) -> None:
    from corpus2vec.model.config import load_config

    batch = load_config("web").train.batch_size
    assert batch >= 65_536
    single = replace(CFG, nproc=1, sync_every=10**9)  # sync points would cut the batches
    results = {}
    for name, cfg in (
        ("numba", single),
        ("torch", replace(single, kernel="torch", batch_size=batch)),
        ("unlimited", replace(single, kernel="torch", batch_size=batch, row_step_limit=None)),
    ):
        out = str(tmp_path / name)
        _train_here(planted_large, out, cfg)
        results[name] = _vectors(out)
    numba_sep = group_separation(results["numba"], planted_large.groups)
    # measured at alpha 0.05: numba 0.581, torch at 65,536 0.638 (at 0.025: 0.587 and 0.604);
    # without the row limit the run diverges (NaN)
    assert group_separation(results["torch"], planted_large.groups) >= numba_sep - 0.05
    assert not np.isfinite(results["unlimited"]).all()


def _merge_parts(rank: int, rows: int) -> list[torch.Tensor]:
    """What one rank sends in a merge of ``rows`` rows: both tables' rows and their touched counts."""
    gen = torch.Generator().manual_seed(rank)
    return [torch.randn(rows, 100, generator=gen) for _ in range(2)] + [
        torch.randint(0, 3, (rows,), generator=gen).float() for _ in range(2)
    ]


def _all_reduce_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for rows in (64, 16_000):  # 51 kB (one flat buffer) and 12.9 MB (in place, one by one)
            sent = _merge_parts(rank, rows)
            before = [t.clone() for t in sent]
            summed = all_reduce_together(sent)
            in_place = all(s is t for s, t in zip(summed, sent, strict=True))
            untouched = all(torch.equal(t, b) for t, b in zip(sent, before, strict=True))
            np.savez(
                os.path.join(out, f"{rank}-{rows}.npz"),
                *[t.numpy() for t in summed],
                in_place=in_place,
                untouched=untouched,
            )
    finally:
        dist.destroy_process_group()


def test_merges_sum_the_same_in_one_buffer_or_in_place(tmp_path: Path) -> None:
    """Both paths of ``all_reduce_together`` on two real gloo ranks: small merges (every partial
    sync) go as one flat buffer and leave the inputs alone; a full sync's tables (over
    ``COALESCE_BYTES``) are summed in place. Either way every rank gets the sums, in the inputs' shapes."""
    assert 2 * 64 * 101 * 4 < COALESCE_BYTES < 2 * 16_000 * 101 * 4
    mp.spawn(_all_reduce_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rows, in_place in ((64, False), (16_000, True)):
        expected = [a + b for a, b in zip(_merge_parts(0, rows), _merge_parts(1, rows), strict=True)]
        for rank in (0, 1):
            got = np.load(tmp_path / f"{rank}-{rows}.npz")
            assert bool(got["in_place"]) is in_place
            assert bool(got["untouched"]) is not in_place
            for i, want in enumerate(expected):
                assert got[f"arr_{i}"].shape == tuple(want.shape)
                np.testing.assert_allclose(got[f"arr_{i}"], want.numpy(), rtol=1e-6)


def _tables_and_training(rank: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A rank's two tables (20 x 4) at a partial sync, and what it learns before the sum lands."""
    gen = torch.Generator().manual_seed(10 + rank)
    return [torch.randn(20, 4, generator=gen) for _ in range(2)], [
        torch.randn(20, 4, generator=gen) for _ in range(2)
    ]


def _mean_merge_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tables, learnt = _tables_and_training(rank)
        pending = start_mean_merge(tables, rows=8)
        for table, change in zip(tables, learnt, strict=True):
            table.add_(change)  # training goes on while the sum travels
        land_mean_merge(pending, tables, world)
        np.savez(os.path.join(out, f"{rank}.npz"), *[t.numpy() for t in tables])
    finally:
        dist.destroy_process_group()


def test_an_overlapped_partial_sync_lands_the_mean_at_the_send_plus_what_each_rank_learnt_since(
    tmp_path: Path,
) -> None:
    mp.spawn(_mean_merge_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    sent = [(a + b) / 2 for a, b in zip(_tables_and_training(0)[0], _tables_and_training(1)[0], strict=True)]
    for rank in (0, 1):
        got = np.load(tmp_path / f"{rank}.npz")
        start, learnt = _tables_and_training(rank)
        for i in range(2):
            np.testing.assert_allclose(
                got[f"arr_{i}"][:8], (sent[i] + learnt[i])[:8].numpy(), rtol=1e-5, atol=1e-6
            )
            np.testing.assert_array_equal(got[f"arr_{i}"][8:], (start[i] + learnt[i])[8:].numpy())


def test_partial_syncs_of_the_hot_rows_run_from_two_ranks() -> None:
    default = TrainConfig()
    assert [hot_row_count(default, w) for w in (1, 2, 3, 8)] == [0, 1024, 1024, 1024]
    assert hot_row_count(replace(default, sync_hot_rows=64), 2) == 64
    assert hot_row_count(replace(default, sync_hot_rows=0), 8) == 0
    with pytest.raises(ValueError, match="sync_hot_splits must be a power of two"):
        load_config("tiny", ["sync_hot_splits=12"])


def test_partial_syncs_overlap_training_only_at_the_local_rates_where_that_held() -> None:
    """Up to a local rate of 0.1 (2 ranks at alpha 0.05); 4 ranks at 0.2 lost 1.4 analogy points
    on 10M words overlapped, 8 at 0.4 diverged."""
    default = TrainConfig()
    assert [overlaps_partial_syncs(default, w) for w in (1, 2, 3, 4, 8, 16, 32)] == [
        False, True, False, False, False, False, False,
    ]  # fmt: skip
    assert overlaps_partial_syncs(replace(default, alpha=0.025), 4)
    assert not overlaps_partial_syncs(replace(default, alpha=0.025), 8)
    assert not overlaps_partial_syncs(replace(default, overlap_partial_syncs=False), 2)
    assert not overlaps_partial_syncs(replace(default, sync_hot_rows=0), 2)
    for other in ("sum", "mean", "touched"):
        assert not overlaps_partial_syncs(replace(default, sync_average=other), 2)


def test_fast_local_rates_with_full_syncs_only_are_warned_about() -> None:
    """0.4 holds with the hot-row syncs; without them 8 ranks at 0.4 failed (3.1% / 0.7% analogy)."""
    default = TrainConfig()
    assert full_sync_rate_warning(default, 8) is None  # partial syncs on from 2 ranks
    assert full_sync_rate_warning(replace(default, sync_hot_rows=0), 2) is None  # 0.1 at 2 ranks
    warned = full_sync_rate_warning(replace(default, sync_hot_rows=0), 8)
    assert warned is not None and "0.40" in warned and "train.max_local_alpha=0.3" in warned
    assert full_sync_rate_warning(replace(default, sync_hot_splits=1), 8) is not None
    assert full_sync_rate_warning(replace(default, sync_hot_rows=0, max_local_alpha=0.3), 8) is None
    assert full_sync_rate_warning(replace(default, sync_hot_rows=0), 6) is None  # 6 x 0.05 = 0.3
    assert full_sync_rate_warning(replace(default, sync_hot_rows=0, sync_average="sum"), 8) is None


def test_capped_merges_outside_what_held_are_warned_about() -> None:
    """Reach above 2 diverged at 32 ranks; reach 2 beyond 16 ranks starves the hottest rows
    unless the merge momentum is on, which was measured up to 32 ranks."""
    default = TrainConfig()
    assert all(capped_merge_warning(default, w) is None for w in (1, 2, 8, 16, 32))
    beyond = capped_merge_warning(default, 64)
    assert beyond is not None and "the 32 whose quality was measured" in beyond and "0.75" in beyond
    still = replace(default, capped_merge_momentum=False)
    assert capped_merge_warning(still, 16) is None
    starved = capped_merge_warning(still, 32)
    assert starved is not None and "50% of one process's rate" in starved and "at most 16 ranks" in starved
    assert capped_merge_warning(replace(still, capped_merge_reach=1.0), 16) is not None  # 8 / 16
    wild = capped_merge_warning(replace(default, capped_merge_reach=4.0), 32)
    assert wild is not None and "4.0x" in wild and "diverged" in wild
    assert capped_merge_warning(replace(default, capped_merge_reach=4.0), 8) is None  # not capped
    assert capped_merge_warning(replace(default, max_local_alpha=None), 32) is None  # never capped
    assert capped_merge_warning(replace(default, sync_average="mean"), 32) is None


def test_the_scaled_local_rate_is_capped_where_a_step_stops_being_stable() -> None:
    """world x alpha up to max_local_alpha (0.4: held at 8 ranks with the hot-row syncs; 0.6 diverged)."""
    default = TrainConfig()
    assert default.alpha == 0.05
    assert [scaled_lr_factor(default, w) for w in (1, 2, 4, 8)] == [1.0, 2.0, 4.0, 8.0]  # uncapped to 8
    assert scaled_lr_factor(default, 16) * default.alpha == pytest.approx(0.4)
    assert scaled_lr_factor(replace(default, max_local_alpha=0.3), 8) * default.alpha == pytest.approx(0.3)
    assert scaled_lr_factor(replace(default, max_local_alpha=None), 16) == 16.0
    slow = replace(default, alpha=0.025)
    assert scaled_lr_factor(slow, 8) == 8.0 and scaled_lr_factor(slow, 32) * slow.alpha == pytest.approx(0.4)
    assert scaled_lr_factor(replace(default, alpha=0.5, max_local_alpha=0.5), 8) == 1.0  # never below alpha
    assert load_config("tiny", ["alpha=0.5"]).train.alpha == 0.5  # one process: the cap never slows a rank
    with pytest.raises(ValueError, match="max_local_alpha must be > 0"):
        load_config("tiny", ["max_local_alpha=0"])
    assert default.capped_merge_reach == 2.0 and default.capped_merge_momentum
    with pytest.raises(ValueError, match="capped_merge_reach must be >= 1"):
        load_config("tiny", ["capped_merge_reach=0.5"])
