"""The embedding registry: publish versions behind a quality gate, list, resolve, promote, diff.

Layout under one store root (stage folders are in :mod:`corpus2vec.flows.stages`)::

    {store}/embeddings/{name}/{version}/       vectors.bin vectors.npy vocab.tsv report.json
                                               [output_vectors.npy rotation.npy drift.json] manifest.json
    {store}/embeddings/{name}/aliases/{alias}.json      {"version": ...}; "latest" moves on publish
    {store}/embeddings/{name}/_candidates/{version}/    a version that failed the gate, for inspection

Guarantees, and how they hold on a folder and on S3:

* A version is visible only once its ``manifest.json`` exists, and the manifest
  is written last and create-if-absent (``os.link`` locally, ``If-None-Match: *``
  on S3), so a crash midway leaves nothing a reader lists or resolves.
* Before writing any file a publisher claims the version folder with a
  create-if-absent ``.claim`` object, so two publishers can never interleave
  files in one folder; the loser gets an error instead of corrupting it.
* An alias is one small JSON object replaced in a single atomic write after the
  version it names is complete. ``latest`` only moves forward in time (``created_at``);
  the read-check-write is serialised with ``flock`` locally and with
  ``If-Match``/``If-None-Match`` on S3. Other fsspec backends fall back to
  check-then-write (documented race: last writer wins, never a torn file).

The read side (list, resolve, manifests) needs only numpy, pyarrow and fsspec.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from corpus2vec.model import health, storage
from corpus2vec.model.artifact import (
    DIGEST_PREFIX,
    FORMAT_VERSION,
    MAX_MANIFEST_BYTES,
    VERSION_MANIFEST,
    ArtifactError,
    Version,
    VersionFile,
    check_manifest,
    is_digest,
    load_vectors,
    manifest_digest,
    parse_vocab_tsv,
)
from corpus2vec.model.config import EvalConfig, PublishConfig

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)
_VERSION_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
LATEST = "latest"
_CLAIM = ".claim"
_ALIAS_RETRIES = 20


class QualityGateFailed(ValueError):
    """The candidate did not pass the gate; it was written to ``candidate_uri`` for inspection."""

    def __init__(self, name: str, version: str, reasons: list[str], candidate_uri: str) -> None:
        self.name, self.version, self.reasons, self.candidate_uri = name, version, reasons, candidate_uri
        super().__init__(
            f"{name}@{version} failed the quality gate: {'; '.join(reasons)}. "
            f"Nothing was published; inspect the candidate at {candidate_uri}"
        )


# ---------------------------------------------------------------- names and refs


def validate_name(value: str, what: str = "name") -> str:
    """``value`` when it is a safe single path segment, else ValueError (no traversal, no absolute paths)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit (no '/', no '..', no '@')"
        )
    return value


def is_version(value: str) -> bool:
    """Whether ``value`` has the shape of a version id (``20261121T053000Z-1a2b3c4d``)."""
    return bool(_VERSION_RE.fullmatch(value))


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME``, ``NAME@VERSION``, ``NAME@ALIAS`` or ``NAME@sha256:<hex>`` into (name, selector).

    NAME alone means ``latest``. A ``sha256:`` selector is the content digest of a
    version's manifest (:func:`corpus2vec.model.artifact.manifest_digest`): it pins exact content.
    """
    if not isinstance(ref, str) or ref.count("@") > 1:
        raise ValueError(
            f"invalid reference {ref!r}: expected NAME, NAME@VERSION, NAME@ALIAS or NAME@sha256:<digest>"
        )
    name, at, selector = ref.partition("@")
    validate_name(name)
    if at and selector.startswith(DIGEST_PREFIX):
        if not is_digest(selector):
            raise ValueError(
                f"invalid reference {ref!r}: a digest is 'sha256:' and 64 lower-case hex digits "
                "(as printed by `corpus2vec list`/`show`/`publish`)"
            )
        return name, selector
    return name, validate_name(selector if at else LATEST, "version or alias")


def name_uri(store: str, name: str) -> str:
    """``{store}/embeddings/{name}``."""
    return storage.join(store, "embeddings", validate_name(name))


def version_uri(store: str, name: str, version: str) -> str:
    """``{store}/embeddings/{name}/{version}``."""
    return storage.join(name_uri(store, name), validate_name(version, "version"))


def alias_uri(store: str, name: str, alias: str) -> str:
    """``{store}/embeddings/{name}/aliases/{alias}.json``."""
    return storage.join(name_uri(store, name), "aliases", validate_name(alias, "alias") + ".json")


# ---------------------------------------------------------------- read side


def fresh_fs(url: str) -> tuple[Any, str]:
    """``storage.get_fs`` with the listing cache dropped: s3fs caches directory listings per
    process, and a registry read must see versions and aliases written a moment ago."""
    fs, path = storage.get_fs(url)
    if not storage.is_local(url):
        fs.invalidate_cache()
    return fs, path


def resolve(store: str, ref: str) -> tuple[str, str]:
    """(name, version) for a reference; an exact version must have a manifest, an alias must exist."""
    name, selector = parse_ref(ref)
    if is_digest(selector):
        return name, find_digest(store, name, selector)
    if is_version(selector):
        fs, path = fresh_fs(storage.join(version_uri(store, name, selector), VERSION_MANIFEST))
        if not fs.exists(path):
            raise FileNotFoundError(
                f"{name}@{selector} is not published in {store} (no manifest); "
                f"see `corpus2vec list {name}` for the versions there"
            )
        return name, selector
    record = read_alias(store, name, selector)
    if record is None:
        raise FileNotFoundError(
            f"{name}@{selector}: no alias {selector!r} for {name!r} in {store}; publish a version first"
        )
    return name, str(record["version"])


def read_alias(store: str, name: str, alias: str) -> dict[str, Any] | None:
    """The alias record ``{"version", "updated_at", "previous"}``, or None when it does not exist."""
    url = alias_uri(store, name, alias)
    fs, path = fresh_fs(url)
    try:
        with fs.open(path, "rb") as handle:
            record = json.loads(handle.read())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"alias file {url} is not valid JSON ({exc}); fix it with `corpus2vec promote`"
        ) from None
    return check_alias(record, url)


def check_alias(record: Any, url: str) -> dict[str, Any]:
    """An alias record checked by type: a JSON object whose ``version`` is a version id.

    Anything else (a list, a number, ``"../x"``) is refused with the file named,
    so a damaged alias never turns into a path or a silent fallback.
    """
    if not isinstance(record, dict):
        raise ValueError(
            f"alias file {url} is not a JSON object but {type(record).__name__}; "
            "fix it with `corpus2vec promote NAME@VERSION --alias ALIAS`"
        )
    version = record.get("version")
    if not isinstance(version, str) or not is_version(version):
        raise ValueError(
            f"alias file {url} names version {version!r}, which is not a version id; "
            "fix it with `corpus2vec promote NAME@VERSION --alias ALIAS`"
        )
    created = record.get("version_created_at")
    if created is not None and not isinstance(created, str):
        raise ValueError(f"alias file {url}: version_created_at is {created!r}, not a string")
    return record


def read_manifest_bytes(store: str, name: str, version: str) -> bytes:
    """The raw bytes of a version's ``manifest.json`` (read at most the size cap, so a huge
    object cannot exhaust memory); FileNotFoundError when the version is not published."""
    url = storage.join(version_uri(store, name, version), VERSION_MANIFEST)
    fs, path = fresh_fs(url)
    try:
        with fs.open(path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{name}@{version} is not published in {store} (no manifest); "
            f"see `corpus2vec list {name}` for the versions there"
        ) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{url} is larger than {MAX_MANIFEST_BYTES} bytes: not a corpus2vec manifest")
    return data


def load_manifest(store: str, name: str, version: str) -> tuple[Version, str]:
    """A version's manifest, checked against the artifact contract and the ref, and its digest."""
    data = read_manifest_bytes(store, name, version)
    where = storage.join(version_uri(store, name, version), VERSION_MANIFEST)
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where} is not valid JSON ({exc}); tell the publisher") from None
    return check_manifest(manifest, where, name, version), manifest_digest(data)


def find_digest(store: str, name: str, digest: str) -> str:
    """The version of ``name`` whose manifest bytes hash to ``digest``; FileNotFoundError if none."""
    for row in list_versions(store, name):
        if row["digest"] == digest:
            return str(row["version"])
    raise FileNotFoundError(
        f"{name}@{digest}: no published version of {name!r} in {store} has this content digest; "
        f"see `corpus2vec list {name}` for the digests there"
    )


def read_manifest(store: str, ref: str) -> Version:
    """The manifest of the version ``ref`` resolves to."""
    name, version = resolve(store, ref)
    return load_manifest(store, name, version)[0]


def list_versions(store: str, name: str) -> list[dict[str, Any]]:
    """Published versions of ``name``, oldest first (by ``created_at``), with metrics, parent and aliases.

    Only folders holding a ``manifest.json`` count: unfinished publishes are invisible.
    """
    root = name_uri(store, name)
    fs, path = fresh_fs(root)
    aliases = _aliases_by_version(store, name)
    out = []
    for manifest_path in sorted(fs.glob(f"{path}/*/{VERSION_MANIFEST}")):
        version = manifest_path.rstrip("/").split("/")[-2]
        if not is_version(version):
            continue
        with fs.open(manifest_path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
        try:
            manifest = check_manifest(json.loads(data), manifest_path, name, version)
        except (ValueError, UnicodeDecodeError) as exc:  # one damaged version must not hide the others
            out.append({"name": name, "version": version, "created_at": None, "error": str(exc),
                        "metrics": {}, "aliases": sorted(aliases.get(version, [])),
                        "uri": storage.join(root, version), "digest": None})  # fmt: skip
            continue
        out.append(
            {
                "name": name,
                "version": version,
                "digest": manifest_digest(data),
                "created_at": manifest.created_at,
                "parent": manifest.parent,
                "metrics": manifest.metrics,
                "vocab_size": manifest.vocab_size,
                "vector_size": manifest.vector_size,
                "aliases": sorted(aliases.get(version, [])),
                "uri": storage.join(root, version),
            }
        )
    return sorted(out, key=lambda v: (str(v["created_at"] or ""), v["version"]))


def _aliases_by_version(store: str, name: str) -> dict[str, list[str]]:
    fs, path = fresh_fs(storage.join(name_uri(store, name), "aliases"))
    found: dict[str, list[str]] = {}
    for alias_path in fs.glob(f"{path}/*.json"):
        alias = alias_path.rstrip("/").split("/")[-1][: -len(".json")]
        if _NAME_RE.fullmatch(alias) and (record := read_alias(store, name, alias)):
            found.setdefault(str(record["version"]), []).append(alias)
    return found


def list_names(store: str) -> list[str]:
    """Names with at least one published version."""
    fs, path = fresh_fs(storage.join(store, "embeddings"))
    names = set()
    for manifest_path in fs.glob(f"{path}/*/*/{VERSION_MANIFEST}"):
        name, version = manifest_path.rstrip("/").split("/")[-3:-1]
        if _NAME_RE.fullmatch(name) and is_version(version):
            names.add(name)
    return sorted(names)


def load_arrays(store: str, name: str, version: str) -> tuple[list[str], list[int], np.ndarray]:
    """Words, counts and vectors of a published version, read straight from the store (no cache).

    Each file is checked against the sha256 in the version's manifest before it
    is parsed: diff and the alignment of a new version onto its parent must not
    compute on bytes nobody vouched for.
    """
    manifest, _ = load_manifest(store, name, version)
    root = version_uri(store, name, version)
    vocab = read_verified(storage.join(root, "vocab.tsv"), manifest.file("vocab.tsv"))
    words, counts = parse_vocab_tsv(vocab, storage.join(root, "vocab.tsv"))
    npy_url = storage.join(root, "vectors.npy")
    vectors = load_vectors(read_verified(npy_url, manifest.file("vectors.npy")), len(words), npy_url)
    return words, counts, vectors


def read_verified(url: str, entry: VersionFile) -> bytes:
    """The bytes at ``url`` when they match the manifest ``entry`` (size and sha256), else ArtifactError.

    Reads at most ``bytes + 1``: an object larger than declared is refused without
    being read whole.
    """
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as handle:
        data = handle.read(entry.bytes + 1)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry.bytes or digest != entry.sha256:
        size = f"more than {entry.bytes}" if len(data) > entry.bytes else str(len(data))
        raise ArtifactError(
            f"{url} does not match its manifest ({size} bytes, sha256 {digest[:12]}; expected "
            f"{entry.bytes} bytes, sha256 {entry.sha256[:12]}): the store copy is corrupt or "
            "was modified; tell the publisher"
        )
    return data


def diff(store: str, ref_a: str, ref_b: str) -> dict[str, Any]:
    """Drift from version ``ref_a`` to ``ref_b``: aligned/unaligned cosines, neighbour overlap, vocab change."""
    from corpus2vec.model.align import drift_report

    name_a, version_a = resolve(store, ref_a)
    name_b, version_b = resolve(store, ref_b)
    words_a, _, vecs_a = load_arrays(store, name_a, version_a)
    words_b, _, vecs_b = load_arrays(store, name_b, version_b)
    report = drift_report(words_b, vecs_b, words_a, vecs_a)
    return {"from": f"{name_a}@{version_a}", "to": f"{name_b}@{version_b}", **report}


# ---------------------------------------------------------------- aliases


def promote(store: str, name: str, version: str, alias: str) -> dict[str, Any]:
    """Point ``alias`` at ``version`` (an exact version or another alias); returns the alias record.

    Unlike publish, promote may move ``latest`` backwards: it is the rollback tool.
    """
    validate_name(alias, "alias")
    if is_version(alias):
        raise ValueError(f"alias {alias!r} looks like a version id; choose a name such as 'stable'")
    require_conditional_writes(name_uri(store, name))
    _, target = resolve(store, f"{name}@{version}")
    created_at = read_manifest(store, f"{name}@{target}").created_at
    return _update_alias(store, name, alias, target, created_at, only_forward=False)


def _update_alias(
    store: str, name: str, alias: str, version: str, created_at: str, only_forward: bool
) -> dict[str, Any]:
    """Compare-and-swap the alias file; with ``only_forward`` an older version never replaces a newer one.

    "Older" compares the versions' ``created_at`` (milliseconds), then the id:
    two publishes within one second must still order by time.
    """
    url = alias_uri(store, name, alias)
    for _ in range(_ALIAS_RETRIES):
        with _alias_lock(url):
            current, tag = _read_with_tag(url)
            if only_forward and current and _age_key(store, name, current) >= (created_at, version):
                return current
            record = {
                "name": name,
                "alias": alias,
                "version": version,
                "version_created_at": created_at,
                "previous": current.get("version") if current else None,
                "updated_at": _now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if _swap(url, _json_bytes(record), tag):
                return record
    raise RuntimeError(f"could not update {url}: too many concurrent writers; retry the publish")


def _age_key(store: str, name: str, record: dict[str, Any]) -> tuple[str, str]:
    """(created_at, version) of an alias target; old records without the time read the manifest."""
    version = str(record["version"])
    created = record.get("version_created_at")
    if created is None:
        try:
            created = read_manifest(store, f"{name}@{version}").created_at
        except (FileNotFoundError, ValueError):
            created = ""
    return (created if isinstance(created, str) else ""), version


def _read_with_tag(url: str) -> tuple[dict[str, Any] | None, str | None]:
    """The alias JSON and its ETag (read tag first, so a change in between makes the swap fail)."""
    fs, path = fresh_fs(url)
    try:
        tag = None if storage.is_local(url) else fs.info(path).get("ETag")
        with fs.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, None
    try:
        record = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"alias file {url} is not valid JSON ({exc}); fix it with `corpus2vec promote`"
        ) from None
    return check_alias(record, url), tag


def _swap(url: str, data: bytes, tag: str | None) -> bool:
    """Write ``data`` if the object is still the one tagged ``tag`` (absent when None); False if it moved."""
    fs, path = storage.get_fs(url)
    if storage.is_local(url):  # serialised by _alias_lock
        storage.write_bytes_atomic(url, data)
        return True
    if tag is None:
        return create_exclusive(url, data)
    try:
        fs.pipe_file(path, data, IfMatch=tag)
    except TypeError as exc:  # fail closed: a silent last-writer-wins could move latest backwards
        raise RuntimeError(_NO_CAS.format(url=url, protocol=fs.protocol)) from exc
    except OSError as exc:
        message = str(exc).lower()
        if any(m in message for m in ("pre-condition", "precondition", "conflict")):
            return False  # 412: the alias moved since we read it; 409: a concurrent conditional write
        raise
    fs.invalidate_cache(path)
    return True


@contextlib.contextmanager
def _alias_lock(url: str) -> Iterator[None]:
    """An exclusive ``flock`` on a sibling lock file for local stores; object stores use conditional puts."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; alias writes stay atomic, last writer wins
        fcntl = None  # type: ignore[assignment]
    if not storage.is_local(url) or fcntl is None:
        yield
        return

    _, path = storage.get_fs(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------- low-level writes


def create_exclusive(url: str, data: bytes) -> bool:
    """Create ``url`` with ``data`` only if it does not exist; False when it already did.

    Local: write a temp file then ``os.link`` it (atomic, fails if the name exists).
    S3: ``If-None-Match: *`` through s3fs's ``mode="create"``. Other backends:
    check-then-write, which is racy; the claim file makes a collision unlikely.
    """
    fs, path = storage.get_fs(url)
    if storage.is_local(url):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    require_conditional_writes(url)
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except TypeError as exc:  # fail closed: check-then-write lets two publishers both "win"
        raise RuntimeError(_NO_CAS.format(url=url, protocol=fs.protocol)) from exc
    return True


_NO_CAS = (
    "{url}: the {protocol} filesystem offers no conditional writes corpus2vec can rely on, so two "
    "publishers could overwrite each other's version or alias; nothing was written. Publish to a "
    "local folder or s3:// (If-None-Match / If-Match)"
)
_CAS_PROTOCOLS = frozenset({"file", "local", "s3", "s3a"})


def require_conditional_writes(url: str) -> None:
    """RuntimeError unless ``url`` lives on a backend whose create-if-absent and compare-and-swap
    corpus2vec has verified (local folders: ``os.link``/``flock``; S3: ``If-None-Match``/``If-Match``).

    Other fsspec backends may accept the keyword and ignore it (fsspec's memory
    filesystem ignores ``IfMatch``), which would turn every guarantee into
    last-writer-wins without a word: refused instead.
    """
    fs, _ = storage.get_fs(url)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if not _CAS_PROTOCOLS.intersection(protocols):
        raise RuntimeError(_NO_CAS.format(url=url, protocol="/".join(protocols)))


def write_file(dir_url: str, name: str, produce: Callable[[storage.HashingWriter], Any]) -> dict[str, Any]:
    """Stream one file into ``dir_url`` and return its manifest entry (path, bytes, sha256).

    The file appears atomically (:func:`corpus2vec.model.storage.open_atomic`), so a failed
    write leaves nothing behind that a reader could take for a finished file.
    """
    with storage.open_atomic(storage.join(dir_url, name)) as handle:
        writer = storage.HashingWriter(handle)
        produce(writer)
    return {"path": name, "bytes": writer.bytes, "sha256": writer.digest.hexdigest()}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- gate


def check_gate(
    metrics: dict[str, float],
    parent_metrics: dict[str, float] | None,
    cfg: EvalConfig,
    health_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Absolute floors, the largest allowed drop of any metric against the parent, and health.

    ``health`` is the evaluation report's collapse check (model/health.py); its
    failed checks fail the gate whatever the floors say. Returns ``{"passed",
    "reasons", "checks"}``; every check is recorded, passed or not, so the
    manifest shows what the gate looked at.
    """
    checks = [
        *(health_report or {}).get("checks", []),
        _floor("analogy", metrics.get("analogy"), cfg.min_analogy),
        _floor("wordsim353", metrics.get("wordsim353"), cfg.min_wordsim, skip_at=-1.0),
    ]
    for key, old in sorted((parent_metrics or {}).items()):
        new = metrics.get(key)
        if new is None or old is None:
            continue
        ok = old - new <= cfg.max_regression + 1e-12
        checks.append(
            {"check": f"regression:{key}", "value": new, "parent": old, "limit": cfg.max_regression, "ok": ok}
        )
    reasons = [_reason(c) for c in checks if not c["ok"]]
    return {"passed": not reasons, "reasons": reasons, "checks": checks}


def _floor(key: str, value: float | None, floor: float, skip_at: float | None = None) -> dict[str, Any]:
    ok = (skip_at is not None and floor <= skip_at) or (value is not None and value >= floor)
    return {"check": f"floor:{key}", "value": value, "limit": floor, "ok": ok}


def _reason(check: dict[str, Any]) -> str:
    kind, key = check["check"].split(":", 1)
    if kind == "health":
        return f"{check['message']} ({health.ADVICE})"
    if kind == "floor":
        value = "not measurable" if check["value"] is None else f"{check['value']:.4f}"
        return f"{key} {value} is below the floor {check['limit']}"
    return (
        f"{key} dropped from {check['parent']:.4f} to {check['value']:.4f} "
        f"(more than max_regression={check['limit']})"
    )


# ---------------------------------------------------------------- publish


def make_version(vectors: np.ndarray, words: list[str], counts: list[int], when: dt.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sorts by time; the hash tells different content apart."""
    digest = hashlib.sha256()
    digest.update("\n".join(words).encode())
    digest.update(np.asarray(counts, dtype=np.int64).tobytes())
    table = np.ascontiguousarray(vectors, dtype=np.float32)
    for start in range(0, len(table), 65536):
        digest.update(table[start : start + 65536].tobytes())
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{digest.hexdigest()[:8]}"


def code_version() -> dict[str, Any]:
    """The corpus2vec package version and, when run from a checkout, its git commit."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("corpus2vec")
    except PackageNotFoundError:
        package = "unknown"
    commit = os.environ.get("C2V_GIT_COMMIT")
    if not commit:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
    return {"package": "corpus2vec", "version": package, "git_commit": commit or None}


def publish(
    store: str,
    name: str,
    *,
    vectors: np.ndarray,
    words: list[str],
    counts: list[int],
    report: dict[str, Any],
    config: dict[str, Any],
    lineage: dict[str, Any],
    cfg: PublishConfig,
    eval_cfg: EvalConfig,
    output_vectors: np.ndarray | None = None,
) -> dict[str, Any]:
    """Gate, align and publish ``vectors`` as a new immutable version of ``name``; move ``latest``.

    Returns ``{name, version, uri, parent, gate, metrics, aligned}``. Raises
    :class:`QualityGateFailed` (after writing the candidate under
    ``_candidates/``) when the gate fails; nothing is published then.
    """
    from corpus2vec.model.word2vec_format import check_words

    validate_name(name)
    require_conditional_writes(name_uri(store, name))  # before anything is written
    _check_inputs(vectors, words, counts, output_vectors)
    check_words(words)
    created = _now()
    version = make_version(vectors, words, counts, created)
    parent, parent_metrics = _latest_with_metrics(store, name)
    metrics = dict(report.get("metrics", {}))
    gate = check_gate(metrics, parent_metrics, eval_cfg, report.get("health"))
    payload = _align(store, name, parent, vectors, words, output_vectors, cfg)
    payload.update(words=words, counts=counts, report=report)
    meta = {
        "kind": "embedding",
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "status": "published" if gate["passed"] else "candidate",
        "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "config": config,
        "lineage": lineage,
        "code": code_version(),
        "metrics": metrics,
        "gate": gate,
        "parent": parent,
        "aligned_to": parent if payload["rotation"] is not None else None,
        "vocab_size": len(words),
        "vector_size": int(vectors.shape[1]),
    }
    if not gate["passed"]:
        candidate = _write_candidate(store, name, meta, payload)
        raise QualityGateFailed(name, version, gate["reasons"], candidate)
    target = version_uri(store, name, version)
    digest = _write_version(target, meta, payload)
    alias = _update_alias(store, name, LATEST, version, meta["created_at"], only_forward=True)
    summary = {k: meta[k] for k in ("name", "version", "parent", "gate", "metrics")}
    result = {**summary, "uri": target, "aligned": meta["aligned_to"] is not None}
    result.update(digest=digest, ref=f"{name}@{digest}", latest=str(alias["version"]))
    result["latest_moved"] = alias["version"] == version
    if not result["latest_moved"]:
        # Said in the result (and by the CLI's exit code): a silent success here would
        # leave everyone pulling `latest` on the old version without knowing.
        result["warning"] = (
            f"{name}@{version} was published but {name}@latest still points at {alias['version']} "
            f"(created_at {alias.get('version_created_at')!r} is not older than {meta['created_at']}; "
            "a clock in the future?). Move it deliberately with "
            f"`corpus2vec promote {name}@{version} --alias latest`"
        )
    return result


def _latest_with_metrics(store: str, name: str) -> tuple[str | None, dict[str, float] | None]:
    """The version ``latest`` names now (the new version's parent) and its metrics, or (None, None)."""
    record = read_alias(store, name, LATEST)
    if record is None:
        return None, None
    parent = str(record["version"])
    manifest, _ = load_manifest(store, name, parent)
    return parent, dict(manifest.metrics)


def _check_inputs(
    vectors: np.ndarray, words: list[str], counts: list[int], output_vectors: np.ndarray | None
) -> None:
    if vectors.ndim != 2 or len(vectors) != len(words) or len(words) != len(counts):
        raise ValueError(
            f"vectors {vectors.shape}, {len(words)} words and {len(counts)} counts do not line up"
        )
    if len(set(words)) != len(words):
        raise ValueError("words are not unique; the vocabulary must have one row per word")
    if output_vectors is not None and output_vectors.shape != vectors.shape:
        raise ValueError(f"output_vectors {output_vectors.shape} do not match vectors {vectors.shape}")


def _align(
    store: str,
    name: str,
    parent: str | None,
    vectors: np.ndarray,
    words: list[str],
    output_vectors: np.ndarray | None,
    cfg: PublishConfig,
) -> dict[str, Any]:
    """Rotate onto the parent when asked and possible; returns vectors, rotation and the drift report."""
    from corpus2vec.model.align import drift_report, fit_rotation

    result: dict[str, Any] = {
        "vectors": vectors,
        "output_vectors": output_vectors,
        "rotation": None,
        "drift": None,
    }
    if parent is None:
        return result
    old_words, _, old_vecs = load_arrays(store, name, parent)
    note = None
    if cfg.align_to_parent:
        try:
            rotation = fit_rotation(words, vectors, old_words, old_vecs)
        except ValueError as exc:  # other dimension, or too few shared words
            note = f"not aligned: {exc}"
        else:
            result["rotation"] = rotation
            result["vectors"] = np.asarray(vectors, dtype=np.float32) @ rotation
            if output_vectors is not None:  # the same rotation keeps input . output dot products
                result["output_vectors"] = np.asarray(output_vectors, dtype=np.float32) @ rotation
    drift = drift_report(words, vectors, old_words, old_vecs, rotation=result["rotation"])
    result["drift"] = {"parent": parent, "aligned": result["rotation"] is not None, "note": note, **drift}
    return result


def _write_candidate(store: str, name: str, meta: dict[str, Any], payload: dict[str, Any]) -> str:
    """Write a gate-failed version under ``_candidates/``; a retry of the same content gets a suffix."""
    base = storage.join(name_uri(store, name), "_candidates", meta["version"])
    for attempt in range(100):
        target = base if attempt == 0 else f"{base}-{attempt}"
        try:
            _write_version(target, meta, payload)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"{base}: too many candidates with this id; clean up _candidates/")


def _write_version(target: str, meta: dict[str, Any], payload: dict[str, Any]) -> str:
    """Claim ``target``, stream every file into it, then create the manifest last; returns its digest."""
    claim = {"version": meta["version"], "by": f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"}
    if not create_exclusive(storage.join(target, _CLAIM), _json_bytes(claim)):
        raise FileExistsError(
            f"{target} already exists or is being published by someone else; "
            "versions are never overwritten, publish again to get a new version"
        )
    files = [write_file(target, name, produce) for name, produce in _producers(payload)]
    manifest = {**meta, "files": sorted(files, key=lambda f: f["path"])}
    data = _json_bytes(manifest)
    if not create_exclusive(storage.join(target, VERSION_MANIFEST), data):
        raise FileExistsError(
            f"{target}/{VERSION_MANIFEST} appeared while publishing; the version was not overwritten"
        )
    return manifest_digest(data)


def _producers(payload: dict[str, Any]) -> list[tuple[str, Callable[[storage.HashingWriter], Any]]]:
    """(file name, writer) for every file of a version; optional files only when there is content."""
    from corpus2vec.model.word2vec_format import write_word2vec_binary

    words, counts = payload["words"], payload["counts"]
    vectors = np.ascontiguousarray(payload["vectors"], dtype=np.float32)
    vocab = "".join(f"{w}\t{c}\n" for w, c in zip(words, counts, strict=True)).encode()
    out: list[tuple[str, Callable[[storage.HashingWriter], Any]]] = [
        ("vectors.npy", lambda h: np.save(h, vectors, allow_pickle=False)),
        ("vectors.bin", lambda h: write_word2vec_binary(h, words, vectors)),
        ("vocab.tsv", lambda h: h.write(vocab)),
        ("report.json", lambda h: h.write(_json_bytes(payload["report"]))),
    ]
    for key in ("output_vectors", "rotation"):
        if payload[key] is not None:
            array = np.ascontiguousarray(payload[key], dtype=np.float32)
            out.append((f"{key}.npy", lambda h, a=array: np.save(h, a, allow_pickle=False)))
    if payload["drift"] is not None:
        out.append(("drift.json", lambda h: h.write(_json_bytes(payload["drift"]))))
    return out
