"""The pull client: fetch a published version into a local cache, verify it, load it.

Cache layout: ``{cache}/{store-key}/{name}/{version}/`` with the version's files
and its ``manifest.json`` (written last, so a folder without it is an
interrupted pull), plus ``{cache}/{store-key}/{name}/aliases/{alias}.json``
remembering what each alias pointed to at the last successful pull. ``{cache}``
is ``cache_dir``, else ``$C2V_CACHE``, else ``~/.cache/corpus2vec``;
``{store-key}`` is a hash of the store URL, so two stores never mix.

Every file is checked against the manifest's sha256 on download. Re-use of a
cached copy checks sizes always and re-hashes any file whose size or mtime
changed since it was verified (``verify=True`` re-hashes everything). An exact
``name@version`` that is cached needs no store access at all: pinned versions
keep working offline. Needs only numpy, pyarrow and fsspec.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

from model import storage
from model.embeddings import Embeddings
from model.registry import MANIFEST, is_version, parse_ref, resolve, version_uri

_VERIFIED = ".verified.json"
_CHUNK = 1 << 20


def cache_root(cache_dir: str | None = None) -> Path:
    """The cache folder: the argument, else ``$C2V_CACHE``, else ``~/.cache/corpus2vec``."""
    return Path(
        cache_dir or os.environ.get("C2V_CACHE") or Path.home() / ".cache" / "corpus2vec"
    ).expanduser()


def store_key(store: str) -> str:
    """A short, stable folder name for a store URL (local paths made absolute first)."""
    url = (
        store
        if "://" in store and not store.startswith("file://")
        else os.path.abspath(store.removeprefix("file://"))
    )
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def pull(
    ref: str, store: str, to: str | None = None, cache_dir: str | None = None, verify: bool = False
) -> Path:
    """Download ``ref`` (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``) and return the local folder.

    ``to`` puts the files in that folder instead of the cache. Raises ValueError
    naming the file when a download or a cached copy does not match the manifest.
    """
    name, selector = parse_ref(ref)
    base = cache_root(cache_dir) / store_key(store) / name
    version = selector if is_version(selector) else _resolve_alias(store, name, selector, base)
    dest = Path(to) if to else base / version
    if _holds(dest, name, version):
        check_cached(dest, verify=verify)
        return dest
    _download(store, name, version, dest)
    return dest


def _holds(dest: Path, name: str, version: str) -> bool:
    """Whether ``dest`` has a finished copy of exactly ``name@version`` (a reused ``--to`` may not)."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except FileNotFoundError:
        return False
    if (manifest.get("name"), manifest.get("version")) == (name, version):
        return True
    (dest / MANIFEST).unlink()  # another version's files are replaced one by one below
    (dest / _VERIFIED).unlink(missing_ok=True)
    return False


def _resolve_alias(store: str, name: str, alias: str, base: Path) -> str:
    """The alias target from the store, remembered locally; the remembered one when the store is down."""
    remembered = base / "aliases" / f"{alias}.json"
    try:
        _, version = resolve(store, f"{name}@{alias}")
    except Exception as exc:  # botocore's connection errors are not OSErrors
        if isinstance(exc, ValueError) or not remembered.exists():
            raise
        version = json.loads(remembered.read_text())["version"]
        warnings.warn(
            f"could not resolve {name}@{alias} in {store} ({exc}); using the cached target "
            f"{name}@{version} from the last successful pull",
            RuntimeWarning,
            stacklevel=3,
        )
        return str(version)
    _write_atomic(remembered, json.dumps({"name": name, "alias": alias, "version": version}).encode())
    return version


def _download(store: str, name: str, version: str, dest: Path) -> None:
    """Fetch every manifest file with sha256 checks, then the manifest itself, then the verified marker."""
    remote = version_uri(store, name, version)
    manifest = storage.read_json(storage.join(remote, MANIFEST))
    dest.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        _fetch(storage.join(remote, entry["path"]), dest / entry["path"], entry)
    _write_atomic(dest / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    _write_marker(dest, manifest)


def _fetch(url: str, target: Path, entry: dict[str, Any]) -> None:
    """Stream one file to a temp name while hashing; rename into place only when it matches."""
    fs, path = storage.get_fs(url)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    digest, size = hashlib.sha256(), 0
    try:
        with fs.open(path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
            raise ValueError(
                f"{url} does not match its manifest ({size} bytes, sha256 {digest.hexdigest()[:12]}; "
                f"expected {entry['bytes']} bytes, sha256 {entry['sha256'][:12]}): the store copy is "
                "corrupt or was modified; nothing was cached, tell the publisher"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_cached(dest: Path, verify: bool = False) -> dict[str, Any]:
    """Check a cached version against its manifest; returns the manifest.

    Sizes are always checked; a file is re-hashed when its size or mtime
    differs from when it was last verified, or always with ``verify``.
    """
    manifest = json.loads((dest / MANIFEST).read_text())
    marker = _read_marker(dest)
    for entry in manifest["files"]:
        path = dest / entry["path"]
        fix = f"delete {dest} (model.pull.clear_cache) and pull again"
        if not path.exists():
            raise ValueError(f"cached file {path} is missing; {fix}")
        stat = path.stat()
        if stat.st_size != entry["bytes"]:
            raise ValueError(
                f"cached file {path} has {stat.st_size} bytes, expected {entry['bytes']} (truncated?); {fix}"
            )
        changed = verify or marker.get(entry["path"]) != [stat.st_size, stat.st_mtime_ns]
        if changed and _sha256(path) != entry["sha256"]:
            raise ValueError(
                f"cached file {path} does not match the sha256 in its manifest (modified?); {fix}"
            )
    _write_marker(dest, manifest)
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_marker(dest: Path) -> dict[str, list[int]]:
    try:
        return dict(json.loads((dest / _VERIFIED).read_text()))
    except (OSError, ValueError):
        return {}


def _write_marker(dest: Path, manifest: dict[str, Any]) -> None:
    """Remember size and mtime of each verified file so the next load need not re-hash it."""
    state = {}
    for entry in manifest["files"]:
        stat = (dest / entry["path"]).stat()
        state[entry["path"]] = [stat.st_size, stat.st_mtime_ns]
    _write_atomic(dest / _VERIFIED, json.dumps(state).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(ref: str, store: str | None = None, cache_dir: str | None = None) -> Embeddings:
    """Pull (or reuse the cached copy of) ``ref`` and open it as :class:`Embeddings`.

    ``store`` defaults to ``$C2V_STORE``. Without a store, an exact
    ``NAME@VERSION`` is looked up in the cache of every store; a local folder
    holding a ``manifest.json`` is opened directly.
    """
    local = Path(ref).expanduser()
    if ("/" in ref or ref.startswith(".")) and (local / MANIFEST).exists():
        check_cached(local)
        return Embeddings(local)
    store = store or os.environ.get("C2V_STORE")
    if store:
        return Embeddings(pull(ref, store, cache_dir=cache_dir))
    return Embeddings(_find_cached(ref, cache_dir))


def _find_cached(ref: str, cache_dir: str | None) -> Path:
    name, selector = parse_ref(ref)
    if not is_version(selector):
        raise ValueError(f"{ref}: resolving an alias needs a store; pass store= or set C2V_STORE")
    hits = [p.parent for p in cache_root(cache_dir).glob(f"*/{name}/{selector}/{MANIFEST}")]
    if len(hits) != 1:
        where = "no store's cache" if not hits else f"{len(hits)} stores' caches"
        raise ValueError(f"{ref} is in {where}; pass store= or set C2V_STORE")
    check_cached(hits[0])
    return hits[0]


def clear_cache(ref: str, store: str, cache_dir: str | None = None) -> None:
    """Delete the cached copy of an exact version (what a checksum error tells users to do)."""
    name, version = parse_ref(ref)
    if not is_version(version):
        raise ValueError(f"clear_cache needs an exact NAME@VERSION, got {ref!r}")
    shutil.rmtree(cache_root(cache_dir) / store_key(store) / name / version, ignore_errors=True)
