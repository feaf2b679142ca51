"""The pull client: fetch a published version into a local cache, verify it, load it.

Cache layout: ``{cache}/{store-key}/{name}/{version}/`` with the version's files
and its ``manifest.json`` (written last, so a folder without it is an
interrupted pull), plus ``{cache}/{store-key}/{name}/aliases/{alias}.json``
remembering what each alias pointed to at the last successful pull. ``{cache}``
is ``cache_dir``, else ``$C2V_CACHE``, else ``~/.cache/corpus2vec``;
``{store-key}`` is a hash of the store URL, so two stores never mix.

Trust (docs/trust.md): the store is written by many jobs and people, so a
version's manifest is checked before anything is written (:mod:`corpus2vec.model.artifact`:
only the artifact's fixed plain file names, name/version equal to the ref, every
file that loading reads listed), each file is written only inside its destination
and only after its size and sha256 match (reading at most the declared size + 1),
and a cached copy is re-hashed on every load, so an edit is caught whatever its
mtime. ``NAME@sha256:<digest>`` pins exact content. An exact ``name@version``
that is cached and verifies needs no store access: pinned versions keep working
offline. Needs only numpy, pyarrow and fsspec.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

from corpus2vec.model import storage
from corpus2vec.model.artifact import (
    VERSION_MANIFEST,
    ArtifactError,
    Version,
    VersionFile,
    check_manifest,
    inside,
    is_digest,
    manifest_digest,
)
from corpus2vec.model.embeddings import Embeddings
from corpus2vec.model.registry import find_digest, is_version, parse_ref, read_manifest_bytes, resolve

_CHUNK = 1 << 20
# Written into every folder pull creates; `pull --to` refuses a non-empty folder without it.
PULL_MARKER = ".corpus2vec-pull"


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
    ref: str, store: str, to: str | None = None, cache_dir: str | None = None, verify: bool = True
) -> Path:
    """Download ``ref`` (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``, ``NAME@sha256:<digest>``);
    returns the local folder.

    ``to`` puts the files in that folder instead of the cache; it must be empty,
    absent, or a folder an earlier pull created. Raises ValueError naming the file
    when a manifest, a download or a cached copy does not match. ``verify`` is
    kept for compatibility: cached files are always re-hashed.
    """
    del verify  # always verified: a size/mtime shortcut let an in-place edit through
    name, selector = parse_ref(ref)
    base = cache_root(cache_dir) / store_key(store) / name
    digest = selector if is_digest(selector) else None
    if is_version(selector):
        version = selector
    elif digest is not None:
        version = _resolve_digest(store, name, digest, base)
    else:
        version = _resolve_alias(store, name, selector, base)
    dest = Path(to) if to else base / version
    if to:
        _claim_folder(dest)
    if _holds(dest, name, version):
        check_cached(dest, name=name, version=version, digest=digest)
        return dest
    _download(store, name, version, dest, digest)
    return dest


def _resolve_digest(store: str, name: str, digest: str, base: Path) -> str:
    """The version holding ``digest``: from the store, or from a verified cached copy when it is down."""
    try:
        return find_digest(store, name, digest)
    except Exception as exc:
        if not (is_unreachable(exc) or (isinstance(exc, FileNotFoundError) and _store_missing(store))):
            raise
        for manifest in sorted(base.glob(f"*/{VERSION_MANIFEST}")):
            version = manifest.parent.name
            if is_version(version):
                try:
                    check_cached(manifest.parent, name=name, version=version, digest=digest)
                except (OSError, ValueError):
                    continue
                return version
        raise


def _claim_folder(dest: Path) -> None:
    """Make ``dest`` a folder pull may write into: absent, empty, or carrying pull's marker.

    A non-empty folder pull did not create may hold someone's work; replacing a
    ``manifest.json`` there (or leaving our files beside theirs) is refused.
    """
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"--to {dest} exists and is not a folder; choose an empty or new folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / PULL_MARKER).is_file():
        raise ValueError(
            f"--to {dest} is not empty and was not created by `corpus2vec pull`; "
            "nothing was written there: choose an empty or new folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PULL_MARKER).touch()


def _holds(dest: Path, name: str, version: str) -> bool:
    """Whether ``dest`` has a finished copy of exactly ``name@version`` (a reused ``--to`` may not)."""
    try:
        manifest = json.loads((dest / VERSION_MANIFEST).read_bytes())
    except FileNotFoundError:
        return False
    except ValueError:  # unreadable: replaced below like another version's copy
        return False
    try:
        check_manifest(manifest, str(dest / VERSION_MANIFEST), name, version)
    except ArtifactError:  # another version's copy, or a damaged one: replaced like it
        return False
    return True


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached (so a remembered alias target may serve).

    Connection failures only: a missing file on a store that answered
    (FileNotFoundError, PermissionError) means the alias is really gone or
    forbidden, and serving a stale version then would hide that.
    """
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:
        return False
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


def _store_missing(store: str) -> bool:
    """A local store whose root folder is gone (an unmounted drive) counts as unreachable."""
    if not storage.is_local(store):
        return False
    _, path = storage.get_fs(store)
    return not os.path.isdir(path)


def _resolve_alias(store: str, name: str, alias: str, base: Path) -> str:
    """The alias target from the store, remembered locally; the remembered one when the store is down."""
    remembered = base / "aliases" / f"{alias}.json"
    try:
        _, version = resolve(store, f"{name}@{alias}")
    except Exception as exc:  # botocore's connection errors are not OSErrors
        if not (is_unreachable(exc) or (isinstance(exc, FileNotFoundError) and _store_missing(store))):
            raise
        version = _remembered(remembered, name, alias, base)
        if version is None:
            raise
        warnings.warn(
            f"could not resolve {name}@{alias} in {store} ({exc}); using the cached target "
            f"{name}@{version} from the last successful pull",
            RuntimeWarning,
            stacklevel=3,
        )
        return version
    _write_atomic(remembered, json.dumps({"name": name, "alias": alias, "version": version}).encode())
    return version


def _remembered(path: Path, name: str, alias: str, base: Path) -> str | None:
    """The remembered alias target when the record is well-formed and its cached copy verifies."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or (record.get("name"), record.get("alias")) != (name, alias):
        return None
    version = record.get("version")
    if not isinstance(version, str) or not is_version(version):
        return None
    try:
        check_cached(base / version, name=name, version=version)
    except (OSError, ValueError):
        return None
    return version


def _download(store: str, name: str, version: str, dest: Path, digest: str | None) -> None:
    """Check the manifest, fetch its files with size and sha256 checks, then write the manifest last."""
    data = read_manifest_bytes(store, name, version)
    remote = storage.join(store, "embeddings", name, version)
    where = storage.join(remote, VERSION_MANIFEST)
    if digest is not None and manifest_digest(data) != digest:
        raise ArtifactError(f"{where} has digest {manifest_digest(data)}, not {digest}; nothing was written")
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where} is not valid JSON ({exc}); tell the publisher") from None
    checked = check_manifest(manifest, where, name, version)  # before any byte is written
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PULL_MARKER).touch()
    _clear_copy(dest)
    for entry in checked.files:
        _fetch(storage.join(remote, entry.path), inside(dest, entry.path), entry)
    _write_atomic(inside(dest, VERSION_MANIFEST), data)  # the exact bytes: their digest is the content id


def _clear_copy(dest: Path) -> None:
    """Remove the manifest and artifact files of an earlier copy (ours: only the fixed names)."""
    from corpus2vec.model.artifact import ARTIFACT_FILES

    for fname in (VERSION_MANIFEST, *sorted(ARTIFACT_FILES)):
        target = dest / fname
        if target.is_symlink() or target.is_file():
            target.unlink()


def _fetch(url: str, target: Path, entry: VersionFile) -> None:
    """Stream one file to a temp name while hashing; rename into place only when it matches.

    Reads at most the declared size + 1 bytes: an object larger than its manifest
    says is refused without downloading it whole.
    """
    fs, path = storage.get_fs(url)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    digest, size, limit = hashlib.sha256(), 0, entry.bytes + 1
    try:
        with fs.open(path, "rb", block_size=_CHUNK) as src, open(tmp, "xb") as dst:
            while size < limit and (chunk := src.read(min(_CHUNK, limit - size))):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        if size != entry.bytes or digest.hexdigest() != entry.sha256:
            shown = f"more than {entry.bytes}" if size > entry.bytes else str(size)
            raise ArtifactError(
                f"{url} does not match its manifest ({shown} bytes, sha256 {digest.hexdigest()[:12]}; "
                f"expected {entry.bytes} bytes, sha256 {entry.sha256[:12]}): the store copy is "
                "corrupt or was modified; nothing was cached, tell the publisher"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_cached(
    dest: Path,
    verify: bool = True,
    *,
    name: str | None = None,
    version: str | None = None,
    digest: str | None = None,
) -> Version:
    """Check a local copy against its manifest by sha256; returns the manifest.

    Every file is re-hashed (``verify`` is kept for compatibility): a size/mtime
    shortcut let an in-place edit with the mtime put back through. The manifest
    itself must pass :func:`corpus2vec.model.artifact.check_manifest` (and equal ``name``,
    ``version`` and ``digest`` when given), so a copy cannot vouch for files it
    does not list.
    """
    del verify
    fix = f"delete {dest} (model.pull.clear_cache) and pull again"
    try:
        data = (dest / VERSION_MANIFEST).read_bytes()
        manifest = json.loads(data)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{dest} has no {VERSION_MANIFEST}: not a finished copy; pull it again"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{dest / VERSION_MANIFEST} is not valid JSON ({exc}); {fix}") from None
    if digest is not None and manifest_digest(data) != digest:
        raise ArtifactError(
            f"{dest / VERSION_MANIFEST} has digest {manifest_digest(data)}, not {digest}; {fix}"
        )
    checked = check_manifest(manifest, str(dest / VERSION_MANIFEST), name, version)
    for entry in checked.files:
        path = inside(dest, entry.path)
        if not path.is_file():
            raise ArtifactError(f"cached file {path} is missing; {fix}")
        size = path.stat().st_size
        if size != entry.bytes:
            raise ArtifactError(
                f"cached file {path} has {size} bytes, expected {entry.bytes} (truncated?); {fix}"
            )
        if _sha256(path) != entry.sha256:
            raise ArtifactError(
                f"cached file {path} does not match the sha256 in its manifest (modified?); {fix}"
            )
    return checked


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    if ("/" in ref or ref.startswith(".")) and (local / VERSION_MANIFEST).exists():
        check_cached(local)
        return Embeddings(local)
    store = store or os.environ.get("C2V_STORE")
    if store:
        return Embeddings(pull(ref, store, cache_dir=cache_dir))
    return Embeddings(_find_cached(ref, cache_dir))


def _find_cached(ref: str, cache_dir: str | None) -> Path:
    """The one cached copy of an exact version (or digest) in any store's cache that verifies."""
    name, selector = parse_ref(ref)
    if not (is_version(selector) or is_digest(selector)):
        raise ValueError(f"{ref}: resolving an alias needs a store; pass store= or set C2V_STORE")
    pattern = (
        f"*/{name}/{selector}/{VERSION_MANIFEST}"
        if is_version(selector)
        else f"*/{name}/*/{VERSION_MANIFEST}"
    )
    hits, errors = [], []
    for manifest in sorted(cache_root(cache_dir).glob(pattern)):
        folder = manifest.parent
        if not is_version(folder.name):
            continue
        try:
            check_cached(
                folder, name=name, version=folder.name, digest=selector if is_digest(selector) else None
            )
        except (OSError, ValueError) as exc:
            errors.append(str(exc))
            continue
        hits.append(folder)
    if len({_sha256(h / VERSION_MANIFEST) for h in hits}) != 1:
        where = "no store's cache" if not hits else f"{len(hits)} stores' caches"
        why = f" ({errors[0]})" if errors and not hits else ""
        raise ValueError(f"{ref} is in {where}{why}; pass store= or set C2V_STORE")
    return hits[0]


def clear_cache(ref: str, store: str, cache_dir: str | None = None) -> None:
    """Delete the cached copy of an exact version (what a checksum error tells users to do)."""
    name, version = parse_ref(ref)
    if not is_version(version):
        raise ValueError(f"clear_cache needs an exact NAME@VERSION, got {ref!r}")
    shutil.rmtree(cache_root(cache_dir) / store_key(store) / name / version, ignore_errors=True)
