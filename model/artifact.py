"""The published artifact's on-disk contract, and the one reader that checks it.

A version folder holds a fixed set of plain file names plus ``manifest.json``.
Everything that reads a version from a store or a cache (pull, load, diff,
alignment during publish) goes through these checks, because a store is written
by many jobs and people and a manifest must not be able to vouch for itself:

* :func:`check_manifest` (the one reader; returns a typed :class:`Version`): the
  manifest is a JSON object of the right kind, format and field types, its
  ``name``/``version`` equal the reference asked for, and its ``files`` list only
  names from :data:`ARTIFACT_FILES` (no ``/``, no ``..``, no absolute paths),
  each once, including every file that loading reads (:data:`REQUIRED_FILES`);
* :func:`manifest_digest`: ``sha256:<hex>`` of the manifest's bytes, which pins
  the whole version (the manifest holds every file's sha256), so
  ``name@sha256:<hex>`` asks for exact content;
* :func:`parse_vocab_tsv` and :func:`load_vectors`: strict parsers for
  ``vocab.tsv`` and ``vectors.npy``.

Needs only numpy: the pull client uses this module.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VERSION_MANIFEST = "manifest.json"
# Every file a version may hold besides its manifest; pull writes nothing else.
ARTIFACT_FILES = frozenset(
    {
        "vectors.npy",
        "vectors.bin",
        "vocab.tsv",
        "report.json",
        "output_vectors.npy",
        "rotation.npy",
        "drift.json",
    }
)
# What Embeddings and diff read: a manifest that does not vouch for these is refused.
REQUIRED_FILES = frozenset({"vectors.npy", "vocab.tsv"})
DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_COUNT_RE = re.compile(rb"[0-9]{1,19}")
FORMAT_VERSION = 1
# The fields readers use besides name/version/files, and their JSON types (checked on every read).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "created_at": (str,),
    "parent": (str, type(None)),
    "aligned_to": (str, type(None)),
    "metrics": (dict,),
    "lineage": (dict,),
    "config": (dict,),
    "gate": (dict,),
    "vocab_size": (int,),
    "vector_size": (int,),
}
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few KB; a bigger one is not ours


class ArtifactError(ValueError):
    """A version's manifest or files break the artifact contract; the message names the file."""


def manifest_digest(data: bytes) -> str:
    """``sha256:<hex>`` of the manifest bytes exactly as stored: the content id of a version."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """Whether ``value`` is a content digest selector (``sha256:`` and 64 lower-case hex digits)."""
    return isinstance(value, str) and bool(_DIGEST_RE.fullmatch(value))


@dataclass(frozen=True)
class VersionFile:
    """One file of a published version: a plain name from :data:`ARTIFACT_FILES`, size, sha256."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Version:
    """A published version's ``manifest.json``, typed; made only by :func:`check_manifest`.

    ``raw`` is the manifest exactly as published (what ``corpus2vec show`` prints and
    downstream lineage records); readers use the typed fields.
    """

    name: str
    version: str
    created_at: str
    parent: str | None
    aligned_to: str | None
    files: tuple[VersionFile, ...]
    metrics: dict[str, float]
    lineage: dict[str, Any]
    config: dict[str, Any]
    gate: dict[str, Any]
    vocab_size: int
    vector_size: int
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def file(self, path: str) -> VersionFile:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise ArtifactError(f"{self.ref} does not list {path}")


def check_manifest(manifest: Any, where: str, name: str | None = None, version: str | None = None) -> Version:
    """``manifest`` as a :class:`Version` when it satisfies the artifact contract, else :class:`ArtifactError`.

    ``where`` names the manifest in messages; ``name``/``version`` (when given)
    must equal the manifest's own, so a manifest copied under another version's
    folder is refused instead of served as that version.
    """
    fix = "the published version is damaged or was not written by corpus2vec; tell the publisher"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} is not a JSON object but {type(manifest).__name__}; {fix}")
    for key, wanted in (("name", name), ("version", version)):
        value = manifest.get(key)
        if not isinstance(value, str):
            raise ArtifactError(f"{where}: {key!r} is {value!r}, not a string; {fix}")
        if wanted is not None and value != wanted:
            raise ArtifactError(
                f"{where} says {key} {value!r} but was fetched as {wanted!r}: refusing a manifest "
                f"that belongs to another version; {fix}"
            )
    if manifest.get("kind") != "embedding" or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{where}: kind {manifest.get('kind')!r}, format_version {manifest.get('format_version')!r}; "
            f"this corpus2vec reads kind 'embedding', format_version {FORMAT_VERSION}; {fix}"
        )
    for key, kinds in _FIELD_TYPES.items():
        value = manifest.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            shown = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ArtifactError(f"{where}: {key!r} is {value!r}, not {shown}; {fix}")
    for key in ("vocab_size", "vector_size"):
        if manifest[key] < 0:
            raise ArtifactError(f"{where}: {key!r} is {manifest[key]}, not a non-negative integer; {fix}")
    for key, value in manifest["metrics"].items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArtifactError(f"{where}: metric {key!r} is {value!r}, not a number; {fix}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ArtifactError(f"{where}: 'files' is {type(files).__name__}, not a list; {fix}")
    seen: set[str] = set()
    for i, entry in enumerate(files):
        check_file_entry(entry, f"{where} files[{i}]")
        if entry["path"] in seen:
            raise ArtifactError(f"{where} lists {entry['path']!r} twice; {fix}")
        seen.add(entry["path"])
    missing = sorted(REQUIRED_FILES - seen)
    if missing:
        raise ArtifactError(
            f"{where} does not list {', '.join(missing)}: loading reads them, so they must be "
            f"covered by a sha256; {fix}"
        )
    return Version(
        name=manifest["name"],
        version=manifest["version"],
        created_at=manifest["created_at"],
        parent=manifest["parent"],
        aligned_to=manifest["aligned_to"],
        files=tuple(VersionFile(e["path"], e["bytes"], e["sha256"]) for e in files),
        metrics={k: float(v) for k, v in manifest["metrics"].items()},
        lineage=manifest["lineage"],
        config=manifest["config"],
        gate=manifest["gate"],
        vocab_size=manifest["vocab_size"],
        vector_size=manifest["vector_size"],
        raw=manifest,
    )


def check_file_entry(entry: Any, where: str) -> None:
    """One ``files[]`` entry: a plain name from :data:`ARTIFACT_FILES`, an int size, a sha256 hex."""
    if not isinstance(entry, dict):
        raise ArtifactError(f"{where} is not an object")
    path = entry.get("path")
    if not isinstance(path, str) or path not in ARTIFACT_FILES:
        raise ArtifactError(
            f"{where}: file name {path!r} is not one of {', '.join(sorted(ARTIFACT_FILES))}; "
            "a version holds only these plain names (no folders, no '..'), so nothing was written"
        )
    size = entry.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArtifactError(f"{where}: 'bytes' of {path} is {size!r}, not a non-negative integer")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
        raise ArtifactError(f"{where}: 'sha256' of {path} is {sha!r}, not 64 lower-case hex digits")


def inside(folder: Path, name: str) -> Path:
    """``folder/name``, checked to resolve inside ``folder`` (a planted symlink cannot redirect a write)."""
    if name not in ARTIFACT_FILES and name != VERSION_MANIFEST:
        raise ArtifactError(f"refusing to write {name!r}: not a file of the artifact")
    target = folder / name
    root = folder.resolve()
    if target.resolve().parent != root:
        raise ArtifactError(
            f"{target} resolves to {target.resolve()}, outside {root} (a symlink?); "
            "nothing was written; remove it and pull again"
        )
    return target


def parse_vocab_tsv(data: bytes, where: str = "vocab.tsv") -> tuple[list[str], list[int]]:
    """``word<TAB>count`` lines (no header) into words and counts, strictly.

    Words are non-empty UTF-8 without whitespace, each once; counts are plain
    ASCII decimal non-negative integers (no sign, ``_``, spaces or non-ASCII
    digits such as ``٣``, all of which ``int()`` would accept). Lines end with
    ``\\n`` only: ``str.splitlines`` would also split at U+2028 and friends.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    words: list[str] = []
    counts: list[int] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        raw_word, sep, raw_count = line.partition(b"\t")
        if not sep or not _COUNT_RE.fullmatch(raw_count):
            raise ArtifactError(
                f"{where} line {number} is not word<TAB>count with a plain decimal count: {line[:80]!r}"
            )
        try:
            word = raw_word.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(
                f"{where} line {number}: the word is not valid UTF-8 ({exc.reason})"
            ) from None
        if not word or any(ch.isspace() for ch in word):
            raise ArtifactError(f"{where} line {number}: word {word!r} is empty or contains whitespace")
        if word in seen:
            raise ArtifactError(f"{where} line {number}: word {word!r} appears twice; one row per word")
        seen.add(word)
        words.append(word)
        counts.append(int(raw_count))
    return words, counts


def check_vectors(vectors: np.ndarray, rows: int | None, where: str) -> np.ndarray:
    """``vectors`` when it is a 2-D float32 table with ``rows`` rows, else :class:`ArtifactError`."""
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise ArtifactError(
            f"{where} holds a {vectors.ndim}-D {vectors.dtype} array; a version's vectors are 2-D float32"
        )
    if rows is not None and vectors.shape[0] != rows:
        raise ArtifactError(
            f"{where} has {vectors.shape[0]} rows but vocab.tsv has {rows} words; delete it and pull again"
        )
    return vectors


def load_vectors(source: Path | bytes, rows: int | None, where: str) -> np.ndarray:
    """``vectors.npy`` (a local path, memory-mapped, or bytes) checked by :func:`check_vectors`.

    ``allow_pickle=False`` so a file from a store cannot run code; a file numpy
    cannot parse becomes an :class:`ArtifactError` naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy's ast-based header parser on junk
            warnings.simplefilter("ignore", SyntaxWarning)
            if isinstance(source, bytes):
                _check_npy_size(source, where)
                array = np.load(io.BytesIO(source), allow_pickle=False)
            else:
                array = np.load(source, mmap_mode="r", allow_pickle=False)
    except ArtifactError:
        raise
    except Exception as exc:  # numpy's header parser also raises SyntaxError/TokenError on junk
        raise ArtifactError(f"{where} is not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray):
        raise ArtifactError(f"{where} is not a single .npy array")
    return check_vectors(array, rows, where)


def _check_npy_size(data: bytes, where: str) -> None:
    """Refuse a ``.npy`` header that claims more bytes than the file has.

    ``np.load`` on a byte stream allocates the whole array before reading, so a
    forged 40-byte header could ask for terabytes.
    """
    handle = io.BytesIO(data)
    major, _ = np.lib.format.read_magic(handle)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(handle)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if needed > len(data) - handle.tell():
        raise ArtifactError(
            f"{where}: its header declares shape {shape} ({needed} bytes) but the file has "
            f"{len(data) - handle.tell()} bytes of data (truncated or forged)"
        )
