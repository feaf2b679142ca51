"""A throwaway Prefect server on 127.0.0.1 for integration tests and the UI screenshot script.

The server gets its own ``PREFECT_HOME`` (SQLite there), analytics off, and its
own process group, so stopping it also stops uvicorn's children. The UI is told
which API URL to call (the server's own port), otherwise a UI on any port but
4200 shows "can't connect".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_env(api_url: str, home: Path) -> dict[str, str]:
    """Environment for any process that talks to the server (CLI, worker, flow runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    return env


def stop_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with a new session), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Block until ``{url}/health`` answers; a dead or slow server fails with its log's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def prefect_server(home: Path, *, ui: bool = False, scheduler: bool = False) -> Iterator[dict[str, str]]:
    """Run ``prefect server start`` on a free loopback port; yields the client environment.

    ``scheduler=False`` keeps the server from creating runs of cron schedules by
    itself, so a test sees exactly the runs it triggers.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = client_env(api_url, home)
    del env["PREFECT_API_URL"]  # the server must not try to reach itself as a client
    env.update(
        {
            "PREFECT_UI_ENABLED": str(ui).lower(),
            "PREFECT_UI_API_URL": api_url,
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": str(scheduler).lower(),
        }
    )
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, proc, log)
        yield client_env(api_url, home)
    finally:
        stop_group(proc)
