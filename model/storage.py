"""The store: fsspec URLs, atomic writes and stage manifests.

Every stage reads and writes through these helpers so that one code path serves
a laptop folder (``/tmp/store`` or ``file://...``) and object storage
(``s3://bucket/prefix``; s3fs takes credentials and ``AWS_ENDPOINT_URL`` from the
environment, never from code or manifests).

A stage directory is finished when its ``_manifest.json`` exists; what the
manifests hold and the one reader of each is :mod:`corpus2vec.model.contracts`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

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


class HashingWriter:
    """A write-only file wrapper that counts and sha256-hashes the bytes on the way through.

    Parquet writers and ``np.save`` stream into it, so a file's manifest entry
    costs no second read.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.bytes += len(memoryview(data))
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def tell(self) -> int:
        return self.bytes

    def writable(self) -> bool:
        return True

    def close(self) -> None:  # the atomic handle is closed (and committed) by its owner
        self.closed = True


def load_npy(url: str, *, mmap: bool = False) -> Any:
    """A ``.npy`` array from any store URL, never unpickling.

    ``mmap``: memory-map a local file read-only instead of reading it (large vector tables).
    """
    import io

    import numpy as np

    fs, path = get_fs(url)
    if mmap and is_local(url):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with fs.open(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)


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
            "_manifest.json; nothing was deleted. Choose an empty or new folder for the output, "
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
