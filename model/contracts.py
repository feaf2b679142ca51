"""The on-disk contracts between stages: one typed definition and one reader per stage output.

A stage writes its files into its own folder and, last, ``_manifest.json``: the
folder is finished exactly when that file exists (:func:`finished` is the only
place that asks). Each kind below is a frozen dataclass whose fields are the
manifest's fields; :meth:`StageManifest.read` checks the kind, every field's type
and the manifest's own sha256 recorded by the stage that consumed it, so a
consumer reads attributes, never dict keys, and a hand-edited or truncated
manifest fails with the file and the field named.

Stages are keyed by their own inputs (``key``), and each records the manifest
digest of the stage it was built from (``tokens_digest``, ``vocab_digest``, ...):
lineage that cannot silently point at a rebuilt upstream folder.

The published version's ``manifest.json`` (another audience: downstream pulls
from untrusted stores) has its own typed contract, :class:`corpus2vec.model.artifact.Version`,
read only by :func:`corpus2vec.model.artifact.check_manifest`.

Light on purpose: the Spark executors and the pull client import it, so it
needs only the standard library and :mod:`corpus2vec.model.storage` (numpy and
pyarrow are imported inside the few methods that read payload files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from corpus2vec.model import storage

STAGE_MANIFEST = "_manifest.json"
FORMAT = 2  # bumped when a field changes meaning; older manifests are refused with what to do
MAX_MANIFEST_BYTES = 64 << 20  # a tokens manifest lists at most 1,000 inputs and its rejects

M = TypeVar("M", bound="StageManifest")
SIGNED = {"signed": True}  # field metadata: an integer that may be negative (a seed), not a count


class ContractError(ValueError):
    """A stage manifest that is not what its kind promises (names the file and the field)."""


@dataclass(frozen=True)
class FileEntry:
    """One file a manifest covers: path relative to the stage folder, size and sha256."""

    path: str
    bytes: int
    sha256: str
    rows: int | None = None
    row_groups: int | None = None
    draw: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class StageManifest:
    """Fields every stage manifest has. ``uri`` and ``digest`` are where and what was read (not stored)."""

    KIND: ClassVar[str] = ""

    files: tuple[FileEntry, ...]
    key: str  # the stage key: what shaped this output (corpus2vec.flows.stages.stage_keys)
    seconds: float = 0.0
    created_at: str = ""
    uri: str = field(default="", compare=False)
    digest: str = field(default="", compare=False)  # sha256 of the _manifest.json bytes

    # -- reading --------------------------------------------------------------------------

    @classmethod
    def read(cls: type[M], uri: str) -> M:
        """The finished stage at ``uri``; FileNotFoundError when it has not finished there."""
        found = cls.finished(uri)
        if found is None:
            raise FileNotFoundError(
                f"{uri} has no {STAGE_MANIFEST}: the {cls.KIND} stage has not finished there; run it first"
            )
        return found

    @classmethod
    def finished(cls: type[M], uri: str) -> M | None:
        """The stage at ``uri`` if it has finished (its manifest exists), else None.

        The one "is this stage finished" check of the pipeline: the Spark jobs,
        the trainer, evaluation and the flow all ask here.
        """
        url = storage.join(uri, STAGE_MANIFEST)
        fs, path = storage.get_fs(url)
        try:
            size = int(fs.size(path))
        except FileNotFoundError:
            return None
        if size > MAX_MANIFEST_BYTES:
            raise ContractError(f"{url} is {size:,} bytes, more than any manifest; it is not one")
        with fs.open(path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
        return cls.parse(data, url, uri)

    @classmethod
    def parse(cls: type[M], data: bytes, url: str, uri: str = "") -> M:
        """Check and type the manifest bytes read from ``url``."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ContractError(f"{url} is not JSON ({exc}); delete the folder and rerun the stage") from None
        if not isinstance(raw, dict):
            raise ContractError(f"{url} holds a JSON {type(raw).__name__}, not a manifest object")
        if raw.get("kind") != cls.KIND:
            raise ContractError(f"{url} is a {raw.get('kind')!r} manifest, expected {cls.KIND!r}")
        if raw.get("format") != FORMAT:
            raise ContractError(
                f"{url} has manifest format {raw.get('format')!r}, this corpus2vec reads {FORMAT}; "
                "rerun the stage into a new store (stage folders are keyed by their inputs, so a "
                "fresh `corpus2vec run` does this)"
            )
        values: dict[str, Any] = {"uri": uri, "digest": hashlib.sha256(data).hexdigest()}
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in ("uri", "digest"):
                continue
            if f.name not in raw:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ContractError(f"{url} has no {f.name!r}: not a {cls.KIND} manifest this code wrote")
                continue
            where = f"{url}: field {f.name!r}"
            values[f.name] = _typed(raw[f.name], hints[f.name], where, signed=f.metadata.get("signed", False))
        return cls(**values)

    # -- writing --------------------------------------------------------------------------

    def write(self: M, uri: str) -> M:
        """Write ``uri/_manifest.json`` last, marking the stage finished; returns it as the reader sees it."""
        data = self.to_json()
        url = storage.join(uri, STAGE_MANIFEST)
        checked = type(self).parse(data, url, uri)  # before writing: a refused manifest never lands
        storage.write_bytes_atomic(url, data)
        return checked

    def to_dict(self) -> dict[str, Any]:
        """The stored fields (``kind`` and ``format`` first), files as plain dicts."""
        out: dict[str, Any] = {"kind": self.KIND, "format": FORMAT}
        for f in dataclasses.fields(self):
            if f.name in ("uri", "digest"):
                continue
            value = getattr(self, f.name)
            if f.name == "files":
                value = [e.to_dict() for e in sorted(value, key=lambda e: (e.draw or 0, e.path))]
            out[f.name] = value
        out["created_at"] = self.created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False).encode()

    # -- helpers --------------------------------------------------------------------------

    def file(self, path: str) -> FileEntry:
        """The entry of ``path``; ContractError when the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise ContractError(f"{self.uri}/{STAGE_MANIFEST} does not list {path}; rerun the {self.KIND} stage")

    def read_file(self, path: str) -> bytes:
        """The bytes of a listed small file, checked against the manifest's size and sha256."""
        entry = self.file(path)
        url = storage.join(self.uri, path)
        fs, fpath = storage.get_fs(url)
        with fs.open(fpath, "rb") as handle:
            data = handle.read(entry.bytes + 1)
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ContractError(
                f"{url} does not match the size/sha256 in its manifest; the {self.KIND} stage output "
                "is corrupt or was changed: delete the folder and rerun the stage"
            )
        return data


@dataclass(frozen=True, kw_only=True)
class Tokens(StageManifest):
    """``tokens/``: ``part-NNNNN.parquet`` shards of token id-free sentences (TOKENS_SCHEMA)."""

    KIND: ClassVar[str] = "tokens"

    input_files: int
    inputs: list[str]  # redacted URLs, the first 1,000
    inputs_sha256: str
    documents: int
    sentences: int
    tokens: int
    duplicates_removed: int
    short_documents: int
    records_skipped: int
    decode_errors: int
    filtered_language: int
    rejected_files: int
    rejects: list[dict[str, Any]]
    bad_fraction: float
    num_parts: int
    config: dict[str, Any]


VOCAB_FILE = "vocab.parquet"


@dataclass(frozen=True, kw_only=True)
class Vocab(StageManifest):
    """``vocab/``: one ``vocab.parquet`` (VOCAB_SCHEMA), ids 0..V-1 by descending count."""

    KIND: ClassVar[str] = "vocab"

    tokens_digest: str  # the tokens manifest it counted
    vocab_size: int
    total_tokens: int
    retained_tokens: int
    coverage: float
    types: int
    min_count: int
    max_vocab_size: int | None

    @property
    def vocab_sha256(self) -> str:
        """The sha256 of ``vocab.parquet``: what pairs and training record and check."""
        return self.file(VOCAB_FILE).sha256

    def table(self) -> Any:
        """The vocabulary as a pyarrow Table, checked: sha256, schema and ids 0..V-1 in order."""
        import pyarrow.parquet as pq

        from corpus2vec.model.schemas import VOCAB_SCHEMA, check_schema

        url = storage.join(self.uri, VOCAB_FILE)
        table = pq.read_table(io.BytesIO(self.read_file(VOCAB_FILE)))
        check_schema(table.schema, VOCAB_SCHEMA, url)
        ids = table.column("id").to_numpy()
        if len(ids) != self.vocab_size or (len(ids) and (ids[0] != 0 or (ids[1:] - ids[:-1] != 1).any())):
            raise ContractError(
                f"{url}: ids are not 0..{self.vocab_size - 1} in order; rerun the count stage"
            )
        return table


@dataclass(frozen=True, kw_only=True)
class Pairs(StageManifest):
    """``pairs/``: (center, context, negatives) shards, ``draw-NN/part-NNNNN.parquet`` per draw."""

    KIND: ClassVar[str] = "pairs"

    tokens_digest: str
    vocab_digest: str
    vocab_sha256: str  # of vocab.parquet: training refuses another vocabulary
    vocab_size: int
    negative: int
    window: int
    sample: float
    ns_exponent: float
    seed: int = field(metadata=SIGNED)
    num_shards: int
    # the word whose input vector each row trains, in the ``center`` column: "context" (the word
    # in the centre's window, word2vec.c's roles) or "centre"; manifests without it are "centre"
    input_word: str = "centre"
    draws: int
    draw_pairs: list[int]
    total_pairs: int
    tokens_in: int
    tokens_kept: int
    bytes_per_pair: float
    adjacent_same_center: float
    adjacent_same_center_baseline: float
    config: dict[str, Any]

    def draw_of(self, epoch: int) -> int:
        """The draw that epoch ``epoch`` reads (word2vec redraws every epoch: epoch % draws)."""
        return epoch % self.draws

    def epoch_pairs(self, epoch: int) -> int:
        """Pairs in epoch ``epoch`` (all ranks): the size of the draw it reads."""
        return int(self.draw_pairs[self.draw_of(epoch)])

    def shards(self, draw: int) -> list[FileEntry]:
        return [f for f in self.files if (f.draw or 0) == draw]


@dataclass(frozen=True, kw_only=True)
class Train(StageManifest):
    """``train/``: ``vectors.npy``, ``output_vectors.npy`` and ``metrics.json``."""

    KIND: ClassVar[str] = "train"

    pairs_digest: str
    vocab_digest: str
    vocab_sha256: str
    vocab_size: int
    vector_size: int
    pairs_uri: str
    vocab_uri: str
    total_pairs: int  # all draws of the pairs stage (its settings are there, by pairs_digest)
    config: dict[str, Any]
    world_size: int
    backend: str
    kernel: str
    pairs_per_s: float
    pairs_trained: int
    bytes_communicated: int
    final_loss: float | None

    def vectors(self, which: str = "vectors.npy") -> Any:
        """``vectors.npy`` (or ``output_vectors.npy``) as numpy, shape checked against the manifest."""
        array = storage.load_npy(storage.join(self.uri, self.file(which).path), mmap=True)
        if array.ndim != 2 or array.shape != (self.vocab_size, self.vector_size):
            raise ContractError(
                f"{self.uri}/{which} has shape {array.shape}, the manifest says "
                f"({self.vocab_size}, {self.vector_size}); delete the train folder and retrain"
            )
        return array

    def metrics(self) -> dict[str, Any]:
        """The trainer's ``metrics.json`` (loss per epoch, curve, syncs), checked against the manifest."""
        value = json.loads(self.read_file("metrics.json"))
        if not isinstance(value, dict):
            raise ContractError(f"{self.uri}/metrics.json is not a JSON object")
        return value


@dataclass(frozen=True, kw_only=True)
class Eval(StageManifest):
    """``eval/``: ``report.json`` (metrics, test sets, neighbours, health) and ``report.md``."""

    KIND: ClassVar[str] = "eval"

    train_digest: str
    vocab_digest: str
    metrics: dict[str, float]
    health_passed: bool | None

    def report(self) -> dict[str, Any]:
        value = json.loads(self.read_file("report.json"))
        if not isinstance(value, dict) or not isinstance(value.get("metrics"), dict):
            raise ContractError(f"{self.uri}/report.json is not an evaluation report")
        return value


KINDS: dict[str, type[StageManifest]] = {k.KIND: k for k in (Tokens, Vocab, Pairs, Train, Eval)}


def entry_for(uri: str, path: str, rows: int | None = None) -> FileEntry:
    """The entry of a file a stage wrote into ``uri`` (size and sha256 read back from the store)."""
    url = storage.join(uri, path)
    fs, fpath = storage.get_fs(url)
    return FileEntry(path=path, bytes=int(fs.size(fpath)), sha256=storage.sha256_of(url), rows=rows)


def files_from(entries: list[dict[str, Any]]) -> tuple[FileEntry, ...]:
    """File entries as written by the jobs (extra per-shard counters are dropped)."""
    names = {f.name for f in dataclasses.fields(FileEntry)}
    return tuple(FileEntry(**{k: v for k, v in e.items() if k in names}) for e in entries)


# a stage's own file names: ``name.ext`` or ``draw-NN/name.ext``; never absolute, hidden or ``..``
_ENTRY_PATH = re.compile(r"(draw-\d{2,}/)?[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _typed(value: Any, hint: Any, where: str, signed: bool = False) -> Any:
    """``value`` checked against the annotation ``hint`` (the few shapes manifests use).

    Integers are counts, so non-negative, unless the field is ``signed`` (seeds).
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _typed(value, inner[0], where, signed)
    if hint is FileEntry:
        if not isinstance(value, dict):
            raise ContractError(f"{where} must be a file entry object")
        hints = typing.get_type_hints(FileEntry)
        names = {f.name for f in dataclasses.fields(FileEntry)}
        missing = {"path", "bytes", "sha256"} - set(value)
        if missing:
            raise ContractError(f"{where}: a file entry lacks {sorted(missing)}")
        entry = FileEntry(**{k: _typed(v, hints[k], f"{where}.{k}") for k, v in value.items() if k in names})
        if not _ENTRY_PATH.fullmatch(entry.path):
            raise ContractError(f"{where}: {entry.path!r} is not a file name inside the stage folder")
        return entry
    if origin is tuple:
        if not isinstance(value, list):
            raise ContractError(f"{where} must be a list")
        return tuple(_typed(v, typing.get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        if not isinstance(value, list):
            raise ContractError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_typed(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ContractError(f"{where} must be an object, got {type(value).__name__}")
        args = typing.get_args(hint)
        if args and args[1] is float:
            return {k: _typed(v, float, f"{where}.{k}") for k, v in value.items()}
        return value
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and not signed):
            raise ContractError(
                f"{where} must be a {'' if signed else 'non-negative '}integer, got {value!r}"
            )
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ContractError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ContractError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"no check for {hint!r} ({where})")  # a field type this module forgot
