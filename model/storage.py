"""The store: fsspec URLs, atomic writes and stage manifests.

Every stage reads and writes through these helpers so that one code path serves
a laptop folder (``/tmp/store`` or ``file://...``) and object storage
(``s3://bucket/prefix``; s3fs takes credentials and ``AWS_ENDPOINT_URL`` from the
environment, never from code or manifests).

A stage directory is finished when its ``_manifest.json`` exists. The manifest
is written last and lists every file it covers with rows, bytes and sha256, so a
reader that follows the manifest never sees a half-written output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

MANIFEST = "_manifest.json"
_CHUNK = 1 << 20


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it (local paths become absolute)."""
    if "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    return url_to_fs(url)


def join(url: str, *parts: str) -> str:
    """Join path parts onto a store URL with ``/`` whatever the OS."""
    base = url.rstrip("/")
    return posixpath.join(base, *[p.strip("/") for p in parts if p])


def is_local(url: str) -> bool:
    """True for plain paths and ``file://`` URLs."""
    return "://" not in url or url.startswith("file://")


def exists(url: str) -> bool:
    """Whether a file or directory exists at ``url``."""
    fs, path = get_fs(url)
    return bool(fs.exists(path))


@contextlib.contextmanager
def open_atomic(url: str) -> Iterator[BinaryIO]:
    """A binary handle whose bytes appear at ``url`` only if the ``with`` block finishes.

    Local: a hidden temp file in the same folder, fsync, then ``os.replace``.
    Object stores: a local temp file uploaded in one ``put`` after the block
    succeeds (an fsspec write handle would commit a partial upload on error).
    Either way a reader sees nothing or the whole file, never a torn one.
    """
    fs, path = get_fs(url)
    local = _is_local_fs(fs)
    folder = os.path.dirname(path) if local else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{posixpath.basename(path)}", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if local:
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write ``data`` so that readers see either nothing or the whole file."""
    with open_atomic(url) as handle:
        handle.write(data)


def _is_local_fs(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def write_json_atomic(url: str, obj: Any) -> None:
    """Atomically write ``obj`` as pretty, key-sorted JSON (stable bytes for checksums)."""
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(url: str) -> Any:
    """Parse the JSON document at ``url``; a clear error when it is missing or corrupt."""
    fs, path = get_fs(url)
    try:
        with fs.open(path, "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{url} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{url} is not valid JSON ({exc}); delete it and rerun the stage that wrote it"
        ) from exc


def sha256_of(url: str) -> str:
    """Hex sha256 of the file at ``url``, streamed."""
    fs, path = get_fs(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(dir_url: str, name: str, rows: int | None = None) -> dict[str, Any]:
    """A manifest entry for ``dir_url/name``: path relative to the stage dir, bytes, sha256, rows."""
    url = join(dir_url, name)
    fs, path = get_fs(url)
    entry: dict[str, Any] = {"path": name, "bytes": int(fs.size(path)), "sha256": sha256_of(url)}
    if rows is not None:
        entry["rows"] = int(rows)
    return entry


def write_manifest(dir_url: str, kind: str, files: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    """Write ``dir_url/_manifest.json`` last, marking the stage finished, and return it.

    ``files`` are :func:`file_entry` dicts; ``meta`` holds stage facts (counts, config,
    parameters). ``created_at`` is kept out of the checksummed file list on purpose.
    """
    manifest = {
        "kind": kind,
        "files": sorted(files, key=lambda f: f["path"]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
    }
    write_json_atomic(join(dir_url, MANIFEST), manifest)
    return manifest


def read_manifest(dir_url: str, kind: str | None = None) -> dict[str, Any] | None:
    """The stage manifest, or None when the stage has not finished."""
    url = join(dir_url, MANIFEST)
    if not exists(url):
        return None
    manifest = read_json(url)
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{url} is a {manifest.get('kind')!r} manifest, expected {kind!r}")
    return manifest


def require_manifest(dir_url: str, kind: str) -> dict[str, Any]:
    """The manifest of a stage that must already have finished, or a clear error."""
    manifest = read_manifest(dir_url, kind)
    if manifest is None:
        raise FileNotFoundError(
            f"{dir_url} has no {MANIFEST}: the {kind} stage has not finished there; run it first"
        )
    return manifest


def remove(url: str) -> None:
    """Delete a file or directory tree if present (used to clear unfinished stage output)."""
    fs, path = get_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


# What an unfinished stage may have left: its own outputs, temp files and manifest. Nothing else
# in an output folder is ever deleted (a mistyped --out must not cost anyone their files).
STAGE_LEFTOVERS = re.compile(r"(part-\d{5}\.parquet|vocab\.parquet|_manifest\.json|\.tmp-.*)")
_DRAW_DIR = re.compile(r"draw-\d{2,}")


def clear_unfinished(dir_url: str, own: re.Pattern[str] = STAGE_LEFTOVERS) -> None:
    """Delete what an unfinished run of a stage left in ``dir_url``, and only that.

    Only the stage's own known children are removed (names matching ``own`` and
    ``draw-NN/`` folders holding nothing else). Anything else found there means
    the folder is not this stage's: ValueError naming it, and nothing is deleted.
    """
    fs, path = get_fs(dir_url)
    try:
        children = fs.ls(path, detail=True)
    except FileNotFoundError:
        return
    if fs.isfile(path):
        raise ValueError(f"output {dir_url} is a file, not a stage folder; choose another --out")
    mine, foreign = [], []
    for child in children:
        name = posixpath.basename(child["name"].rstrip("/"))
        if child["type"] == "directory":
            ok = bool(_DRAW_DIR.fullmatch(name)) and all(
                own.fullmatch(posixpath.basename(p)) for p in fs.find(child["name"])
            )
        else:
            ok = bool(own.fullmatch(name))
        (mine if ok else foreign).append(child["name"])
    if foreign:
        shown = ", ".join(posixpath.basename(p.rstrip("/")) for p in sorted(foreign)[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ValueError(
            f"output {dir_url} holds files this stage did not write ({shown}{more}) and has no "
            f"{MANIFEST}; nothing was deleted. Choose an empty or new folder for the output, "
            "or move those files away yourself"
        )
    for child in mine:
        fs.rm(child, recursive=True)


# Query parameters that carry a credential or a signature (S3/GCS presigned URLs, Azure SAS, CloudFront).
_SECRET_PARAMS = re.compile(
    r"(x-amz-.*|x-goog-.*|signature|sig|se|sp|sv|sr|st|spr|skoid|sktid|skt|ske|sks|skv|sip|"
    r"awsaccesskeyid|expires|key-pair-id|policy|token|access_token|auth|apikey|api_key|key|password)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` without credentials: ``user:secret@`` and signed query parameters removed.

    The one place that decides what of a URL may be recorded: lineage, stage
    manifests, published manifests, flow logs and reject lists all store URLs
    through it. Plain paths and URLs without secrets come back unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not parseable as a URL: keep only the scheme, never the rest
        return url.split("://", 1)[0] + "://<unparseable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        kept = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
            if not _SECRET_PARAMS.fullmatch(k)
        ]
        query = urllib.parse.urlencode(kept)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (for exception messages)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
