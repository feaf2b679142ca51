"""Training checkpoints without pickles: ``.npy`` tables plus a JSON state.

Layout under ``{out}/checkpoints/``::

    ckpt-000000012345678/input.npy     float32 V x d, the input table v
    ckpt-000000012345678/output.npy    float32 V x d, the output table u
    ckpt-000000012345678/input_velocity.npy, output_velocity.npy
                                       the capped merge's momentum (only beyond 16 ranks)
    ckpt-000000012345678/state.json    position, counters, config (see train.py), "arrays"
    latest.json                        {"name": "ckpt-000000012345678"}, written last

``latest.json`` is replaced atomically only after the other files are complete,
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
TABLES = ("input", "output")  # always present
ARRAYS = (*TABLES, "input_velocity", "output_velocity")  # every name a checkpoint may list


def save_npy(url: str, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``url`` atomically (no pickles)."""
    with storage.open_atomic(url) as handle:
        np.save(handle, array, allow_pickle=False)


def save_checkpoint(out_uri: str, name: str, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> str:
    """Write checkpoint ``name`` (``arrays`` by name, from :data:`ARRAYS`, and the state) under
    ``{out}/checkpoints``, point ``latest.json`` at it, prune; returns its URL."""
    if not _known_names(arrays):
        raise ValueError(f"checkpoint arrays must be {ARRAYS} with {TABLES} present; got {sorted(arrays)}")
    root = storage.join(out_uri, "checkpoints")
    folder = storage.join(root, name)
    previous = _latest_name(root)
    for key, array in arrays.items():
        save_npy(storage.join(folder, f"{key}.npy"), array)
    storage.write_json_atomic(storage.join(folder, "state.json"), {**state, "arrays": sorted(arrays)})
    storage.write_json_atomic(storage.join(root, LATEST), {"name": name})
    _prune(root, keep={name, previous})
    return folder


def checkpoint_name(pairs_done: int) -> str:
    """Folder name for a checkpoint taken after ``pairs_done`` pairs (sorts by progress)."""
    return f"ckpt-{pairs_done:015d}"


def _latest_name(root: str) -> str | None:
    pointer = storage.join(root, LATEST)
    return str(storage.read_json(pointer)["name"]) if storage.exists(pointer) else None


def load_latest(out_uri: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The newest complete checkpoint as ``(arrays, state)``, or None when training never checkpointed.

    The array names come from the (untrusted) state file: only names in :data:`ARRAYS` are read,
    and every array must be a float32 table of the input table's shape.
    """
    root = storage.join(out_uri, "checkpoints")
    name = _latest_name(root)
    if name is None:
        return None
    folder = storage.join(root, name)
    state = storage.read_json(storage.join(folder, "state.json"))
    names = state.get("arrays", list(TABLES))  # checkpoints before the velocity tables list none
    if not isinstance(names, list) or not _known_names(names):
        raise ValueError(
            f"checkpoint {folder}: state.json lists arrays {names!r}, expected {TABLES} and at most "
            f"{ARRAYS}; delete {root} to restart training"
        )
    arrays = {key: storage.load_npy(storage.join(folder, f"{key}.npy")) for key in names}
    shape = arrays["input"].shape
    for key, array in arrays.items():
        if array.shape != shape or array.dtype != np.float32 or len(shape) != 2:
            raise ValueError(
                f"checkpoint {folder}: {key}.npy is {array.dtype} {array.shape}, expected float32 "
                f"{shape} like input.npy; delete {root} to restart training"
            )
    return arrays, state


def _known_names(names: Any) -> bool:
    """Both tables, and nothing outside :data:`ARRAYS` (the names become file names)."""
    return all(isinstance(n, str) for n in names) and set(TABLES) <= set(names) <= set(ARRAYS)


def _prune(root: str, keep: set[str | None]) -> None:
    """Delete every checkpoint folder not in ``keep`` (older ones and crash leftovers)."""
    fs, path = storage.get_fs(root)
    for entry in fs.ls(path, detail=False):
        name = os.path.basename(entry.rstrip("/"))
        if name.startswith("ckpt-") and name not in keep:
            storage.remove(storage.join(root, name))
