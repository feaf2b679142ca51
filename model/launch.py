"""Run training under torchrun as a subprocess, for flows and tests.

:func:`launch_training` is the one way the rest of the project starts training:
it picks a free loopback port for the rendezvous, shares the cores out among
the ranks (so 2 processes on 2 cores do not oversubscribe through OpenMP or
numba threads), streams rank 0's ``progress {json}`` lines to a callback, keeps
the rest of the output in a log, and turns a failure into an error that says
which rank failed and shows the end of the log.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from corpus2vec.model import storage
from corpus2vec.model.config import TrainConfig
from corpus2vec.model.contracts import Train

_PROGRESS = "progress {"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_FAILED_RANK = re.compile(r"\brank\s*:\s*(\d+)\s*\(local_rank")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_command(
    pairs_uri: str,
    vocab_uri: str,
    out_uri: str,
    cfg: TrainConfig,
    max_restarts: int,
    port: int,
    key: str = "",
) -> list[str]:
    """The ``python -m torch.distributed.run ... -m corpus2vec.model.train ...`` command line."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={cfg.nproc}",
        f"--max-restarts={max_restarts}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--monitor-interval=0.5",
        "-m",
        "corpus2vec.model.train",
        "--pairs",
        pairs_uri,
        "--vocab",
        vocab_uri,
        "--out",
        out_uri,
        "--config",
        json.dumps(dataclasses.asdict(cfg)),
        "--key",
        key,
    ]


def worker_env(cfg: TrainConfig) -> dict[str, str]:
    """Environment for torchrun: one core share per rank for every thread pool, loopback for gloo."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = str(max(1, cores // cfg.nproc))
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": share,
            "MKL_NUM_THREADS": share,
            "NUMBA_NUM_THREADS": share,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # single node: keep gloo on loopback
    # torchrun reuses one TCPStore across restarts without a per-attempt key prefix, so
    # restarted gloo ranks can read a dead peer's address and fail to connect; a store
    # per attempt (hosted by rank 0) avoids that.
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    return env


def launch_training(
    pairs_uri: str,
    vocab_uri: str,
    out_uri: str,
    cfg: TrainConfig,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    max_restarts: int = 1,
    key: str = "",
) -> Train:
    """Train with ``cfg.nproc`` local ranks under torchrun and return the train manifest.

    Does nothing when ``{out}/_manifest.json`` already exists. torchrun restarts
    all ranks up to ``max_restarts`` times after a failure; training resumes from
    its last checkpoint. Raises RuntimeError with the failed rank and the last
    40 log lines when torchrun gives up.
    """
    existing = Train.finished(out_uri)
    if existing is not None:
        return existing
    command = torchrun_command(pairs_uri, vocab_uri, out_uri, cfg, max_restarts, free_port(), key)
    with _open_log(out_uri) as (log, log_name):
        code, tail = _run_streaming(command, worker_env(cfg), log, on_progress)
    if code != 0:
        raise RuntimeError(_failure_message(code, tail, log_name))
    return Train.read(out_uri)


@contextlib.contextmanager
def _open_log(out_uri: str) -> Any:
    """``{out}/train.log`` for a local output dir, otherwise a kept temp file."""
    if storage.is_local(out_uri):
        path = storage.get_fs(out_uri)[1]
        os.makedirs(path, exist_ok=True)
        name = os.path.join(path, "train.log")
        handle = open(name, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    else:
        handle = tempfile.NamedTemporaryFile("a", prefix="corpus2vec-train-", suffix=".log", delete=False)  # noqa: SIM115
        name = handle.name
    try:
        yield handle, name
    finally:
        handle.close()


def _run_streaming(
    command: list[str],
    env: dict[str, str],
    log: IO[str],
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> tuple[int, list[str]]:
    """Run ``command``; progress lines go to ``on_progress``, others to ``log``; returns (code, last lines)."""
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # our own process group, so a failure here can stop every rank
        preexec_fn=_die_with_parent,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            at = line.find(_PROGRESS)
            if at >= 0 and on_progress is not None:
                _deliver(on_progress, line[at + len("progress ") :], log)
                continue
            log.write(line)
            log.flush()
            tail.append(line.rstrip("\n"))
        return proc.wait(), list(tail)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM torchrun (which stops its ranks) if the launcher dies.

    Without it a SIGKILLed flow process leaves torchrun training on in its own session,
    beside the rerun that resumes the same stage. Linux only; elsewhere a no-op. The
    thread that starts torchrun is the one that waits for it, so it never exits first.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _deliver(on_progress: Callable[[dict[str, Any]], None], text: str, log: IO[str]) -> None:
    """Hand one progress record to the callback; a broken callback must not kill training."""
    try:
        on_progress(json.loads(text))
    except Exception as exc:  # the callback is user code (e.g. a Prefect artifact update)
        log.write(f"launch: progress callback failed: {exc!r}\n")


def _failure_message(code: int, tail: list[str], log_name: str) -> str:
    ranks = sorted({int(m.group(1)) for line in tail for m in _FAILED_RANK.finditer(line)})
    which = f"rank {', '.join(map(str, ranks))} failed" if ranks else "a rank failed"
    lines = "\n".join(tail)
    return f"training failed (torchrun exit code {code}; {which}); last {len(tail)} lines of {log_name}:\n{lines}"
