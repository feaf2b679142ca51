"""Training checkpoints without pickles: two ``.npy`` tables plus a JSON state.

Layout under ``{out}/checkpoints/``::

    ckpt-000000012345678/input.npy     float32 V x d, the input table v
    ckpt-000000012345678/output.npy    float32 V x d, the output table u
    ckpt-000000012345678/state.json    position, counters, config (see train.py)
    latest.json                        {"name": "ckpt-000000012345678"}, written last

``latest.json`` is replaced atomically only after the three files are complete,
so a crash mid-save leaves the previous checkpoint in charge. After the pointer
moves, every other checkpoint folder except the previous one is deleted (also
half-written ones from a crash). Arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from corpus2vec.model import storage

LATEST = "latest.json"


def save_npy(url: str, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``url`` atomically (no pickles)."""
    with storage.open_atomic(url) as handle:
        np.save(handle, array, allow_pickle=False)


def save_checkpoint(out_uri: str, name: str, v: np.ndarray, u: np.ndarray, state: dict[str, Any]) -> str:
    """Write checkpoint ``name`` under ``{out}/checkpoints``, point ``latest.json`` at it, prune; returns its URL."""
    root = storage.join(out_uri, "checkpoints")
    folder = storage.join(root, name)
    previous = _latest_name(root)
    save_npy(storage.join(folder, "input.npy"), v)
    save_npy(storage.join(folder, "output.npy"), u)
    storage.write_json_atomic(storage.join(folder, "state.json"), state)
    storage.write_json_atomic(storage.join(root, LATEST), {"name": name})
    _prune(root, keep={name, previous})
    return folder


def checkpoint_name(pairs_done: int) -> str:
    """Folder name for a checkpoint taken after ``pairs_done`` pairs (sorts by progress)."""
    return f"ckpt-{pairs_done:015d}"


def _latest_name(root: str) -> str | None:
    pointer = storage.join(root, LATEST)
    return str(storage.read_json(pointer)["name"]) if storage.exists(pointer) else None


def load_latest(out_uri: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """The newest complete checkpoint as ``(v, u, state)``, or None when training never checkpointed."""
    root = storage.join(out_uri, "checkpoints")
    name = _latest_name(root)
    if name is None:
        return None
    folder = storage.join(root, name)
    state = storage.read_json(storage.join(folder, "state.json"))
    v = storage.load_npy(storage.join(folder, "input.npy"))
    u = storage.load_npy(storage.join(folder, "output.npy"))
    if v.shape != u.shape or v.dtype != np.float32:
        raise ValueError(
            f"checkpoint {folder} holds tables {v.shape}/{u.shape} {v.dtype}; delete it to restart"
        )
    return v, u, state


def _prune(root: str, keep: set[str | None]) -> None:
    """Delete every checkpoint folder not in ``keep`` (older ones and crash leftovers)."""
    fs, path = storage.get_fs(root)
    for entry in fs.ls(path, detail=False):
        name = os.path.basename(entry.rstrip("/"))
        if name.startswith("ckpt-") and name not in keep:
            storage.remove(storage.join(root, name))
