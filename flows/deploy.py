"""Scheduled retraining: ``pretrain`` as a Prefect deployment on a ``process`` work pool.

``corpus2vec deploy`` calls :func:`deploy`: it creates the work pool if it is
missing (with the process worker's default job template) and creates or updates
the deployment ``pretrain/{deployment}`` with a cron schedule and default
parameters (corpus paths list, store, name, preset, overrides). A worker started
with ``prefect worker start --pool POOL --type process`` on a machine that has
this project installed picks the runs up and runs them as subprocesses.

The code source is this checkout (``flow.from_source`` with a local directory,
so the deployment's pull step is "cd into the project"); there is no image to
build. ``infra/prefect.yaml`` declares the same deployment for ``prefect deploy``.
Deployment config lives here and in the YAML, apart from the flow's logic
(as PrefectHQ/examples keep it).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus2vec.flows.defaults import DEFAULT_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/pretrain.py:pretrain"
DEFAULT_POOL = "corpus2vec"
DEFAULT_DEPLOYMENT = "weekly-retrain"
DEFAULT_CRON = "0 3 * * 0"  # Sundays 03:00: the crawl of the week has landed, the cluster is quiet


@dataclass(frozen=True)
class DeploySpec:
    """Everything ``corpus2vec deploy`` decides: where runs go, when, and with which parameters."""

    pool: str = DEFAULT_POOL
    deployment: str = DEFAULT_DEPLOYMENT
    cron: str | None = DEFAULT_CRON  # None: no schedule, runs only when triggered
    timezone: str = "UTC"
    corpus: list[str] = field(default_factory=list)  # empty: the worker's default (the sample)
    store: str | None = None  # None: the worker's $C2V_STORE or its default folder
    name: str = DEFAULT_NAME
    preset: str = "tiny"
    overrides: list[str] = field(default_factory=list)
    store_credentials: str | None = None  # name of a Prefect Secret block with object-store keys
    source: str = str(PROJECT_ROOT)

    def parameters(self) -> dict[str, Any]:
        """Default flow parameters; unset ones are left out so the worker's environment decides."""
        params: dict[str, Any] = {"name": self.name, "preset": self.preset, "overrides": list(self.overrides)}
        if self.corpus:
            params["corpus"] = [_absolute(c) for c in self.corpus]
        if self.store:
            params["store"] = _absolute(self.store)
        if self.store_credentials:
            params["store_credentials"] = self.store_credentials
        return params

    def tags(self) -> list[str]:
        """Deployment tags; every run it creates carries them too."""
        return ["corpus2vec", "scheduled", f"name:{self.name}", f"preset:{self.preset}"]


def _absolute(location: str) -> str:
    """Local paths become absolute (the worker runs elsewhere in the tree); URLs stay as given."""
    if "://" in location:
        return location
    return str(Path(location).expanduser().resolve())


def require_api_url() -> str:
    """The Prefect API the deployment goes to; a deployment on a throwaway server would be lost."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ValueError(
            "PREFECT_API_URL is not set: a deployment needs a long-running Prefect server. "
            "Start one (infra/stack.sh start prefect prints the export line) or point at Prefect Cloud."
        )
    try:
        import httpx

        httpx.get(f"{str(url).rstrip('/')}/health", timeout=10).raise_for_status()
    except Exception as exc:
        raise ValueError(f"cannot reach the Prefect API at {url} ({exc!r}); is the server running?") from exc
    return str(url)


def validate(spec: DeploySpec) -> None:
    """Fail before touching the server: settings, names and the cron expression must be valid."""
    from prefect.schedules import Cron

    from corpus2vec.model.config import load_config
    from corpus2vec.model.registry import validate_name

    load_config(spec.preset, spec.overrides)
    validate_name(spec.name)
    if spec.cron is not None:
        try:
            Cron(spec.cron, timezone=spec.timezone)
        except ValueError as exc:
            raise ValueError(f"invalid --cron {spec.cron!r} / --timezone {spec.timezone!r}: {exc}") from exc


def ensure_pool(pool: str) -> bool:
    """Create the ``process`` work pool ``pool`` unless it exists; True when it was created.

    An existing pool of another type is an error: a process worker would never
    pick its runs up.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type=ProcessWorker.type,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="corpus2vec: runs `pretrain` as a local subprocess of a process worker",
                )
            )
            return True
    if existing.type != ProcessWorker.type:
        raise ValueError(
            f"work pool {pool!r} exists with type {existing.type!r}, not 'process'; pick another --pool"
        )
    return False


def deploy(spec: DeploySpec) -> dict[str, Any]:
    """Create the pool if missing and create or update the deployment; returns what was done."""
    from prefect import flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from corpus2vec.model.registry import code_version

    validate(spec)
    api_url = require_api_url()
    pool_created = ensure_pool(spec.pool)
    code = code_version()
    version = code["version"] + (f"+{code['git_commit'][:12]}" if code.get("git_commit") else "")
    pretrain = flow.from_source(source=spec.source, entrypoint=ENTRYPOINT)
    with contextlib.redirect_stdout(sys.stderr):  # Prefect prints a table; stdout stays for --json
        deployment_id = pretrain.deploy(
            name=spec.deployment,
            work_pool_name=spec.pool,
            schedules=[Cron(spec.cron, timezone=spec.timezone)] if spec.cron else [],
            parameters=spec.parameters(),
            tags=spec.tags(),
            version=version,
            # two runs of the same inputs would write the same run folder: queue, never overlap
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
            description=f"Retrain and publish {spec.name} ({spec.preset}) from {spec.corpus or 'the sample'}",
            print_next_steps=False,
            ignore_warnings=True,  # a process pool is the point here, not a mistake
        )
    return {
        "deployment": f"pretrain/{spec.deployment}",
        "deployment_id": str(deployment_id),
        "pool": spec.pool,
        "pool_created": pool_created,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "parameters": spec.parameters(),
        "api_url": api_url,
        "worker": f"prefect worker start --pool {spec.pool} --type process",
        "run_now": f"prefect deployment run pretrain/{spec.deployment}",
        "source": spec.source,
    }
