"""Progress events from the stages to whoever is watching (the CLI's progress display).

Prefect flow parameters must be serialisable, so a display callback cannot be
passed into the flow; the CLI registers a listener here instead and the tasks
emit plain dict events. With no listener, events go nowhere (Prefect's own
logs and artifacts still record everything).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Receive every event emitted from now on."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Stop receiving events (no error if it was not registered)."""
    if listener in _listeners:
        _listeners.remove(listener)


def emit(kind: str, stage: str, **fields: Any) -> None:
    """Send ``{"kind", "stage", ...}`` to every listener; a broken display never fails a stage."""
    event = {"kind": kind, "stage": stage, **fields}
    for listener in list(_listeners):
        with contextlib.suppress(Exception):  # a broken display must not kill a training run
            listener(event)
