"""The loaded embedding version: words, counts, memory-mapped vectors and the usual queries.

Kept small and separate from the trainer (as gensim separates ``KeyedVectors``
from ``Word2Vec``): it is what downstream teams hold. Needs only numpy; gensim
and torch are imported inside :meth:`Embeddings.to_gensim` / :meth:`Embeddings.to_torch`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from corpus2vec.model.artifact import (
    VERSION_MANIFEST,
    ArtifactError,
    Version,
    check_manifest,
    load_vectors,
    parse_vocab_tsv,
)

if TYPE_CHECKING:
    from gensim.models import KeyedVectors
    from torch import nn


class Embeddings:
    """One published version read from a local folder (normally the pull cache).

    ``vectors`` is a read-only memory map of ``vectors.npy``: opening a
    multi-GB version costs nothing until rows are touched.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        where = self.path / VERSION_MANIFEST
        try:
            manifest = json.loads(where.read_bytes())
        except ValueError as exc:
            raise ArtifactError(
                f"{where} is not valid JSON ({exc}); delete this folder and pull again"
            ) from None
        # Type-checked here too: a folder opened directly (not through pull/load) has no other check.
        self.manifest: Version = check_manifest(manifest, str(where))
        self.words, self.counts = parse_vocab_tsv(
            (self.path / "vocab.tsv").read_bytes(), str(self.path / "vocab.tsv")
        )
        self.vectors: np.ndarray = load_vectors(
            self.path / "vectors.npy", len(self.words), str(self.path / "vectors.npy")
        )
        self._index = {w: i for i, w in enumerate(self.words)}

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def ref(self) -> str:
        """``name@version``: what to record in a downstream model's own lineage."""
        return f"{self.name}@{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.manifest.metrics)

    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __getitem__(self, word: str) -> np.ndarray:
        return np.asarray(self.vectors[self.index(word)])

    def __repr__(self) -> str:
        return f"Embeddings({self.ref}, {len(self)} words x {self.vector_size} dims)"

    def index(self, word: str) -> int:
        """Row of ``word``; KeyError naming the word when it is not in the vocabulary."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary of {self.ref} ({len(self)} words)") from None

    @cached_property
    def _unit(self) -> np.ndarray:
        """Unit-length rows, computed once on the first similarity query (V x d float32 in memory)."""
        from corpus2vec.model.evaluate import unit_rows

        return unit_rows(self.vectors)

    def most_similar(
        self, word_or_vec: str | np.ndarray, topn: int = 10, restrict_vocab: int | None = None
    ) -> list[tuple[str, float]]:
        """Cosine nearest neighbours of a word (excluding itself) or of a raw vector."""
        exclude: list[int] = []
        if isinstance(word_or_vec, str):
            exclude = [self.index(word_or_vec)]
            query = self._unit[exclude[0]]
        else:
            query = np.asarray(word_or_vec, dtype=np.float32)
        return self._nearest(query, exclude, topn, restrict_vocab)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """``a : b :: c : ?`` by 3CosAdd (``b - a + c`` on unit vectors), never answering a, b or c."""
        rows = [self.index(w) for w in (a, b, c)]
        query = self._unit[rows[1]] - self._unit[rows[0]] + self._unit[rows[2]]
        return self._nearest(query, rows, topn, None)

    def _nearest(
        self, query: np.ndarray, exclude: Sequence[int], topn: int, restrict_vocab: int | None
    ) -> list[tuple[str, float]]:
        norm = float(np.linalg.norm(query)) or 1.0
        table = self._unit[:restrict_vocab] if restrict_vocab else self._unit
        scores = table @ (query / norm)
        scores[[i for i in exclude if i < len(scores)]] = -np.inf
        topn = min(topn, len(scores) - len(exclude))
        if topn <= 0:
            return []
        best = np.argpartition(-scores, topn - 1)[:topn]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best]

    def to_gensim(self) -> KeyedVectors:
        """A gensim ``KeyedVectors`` with the same rows and a ``count`` attribute per word."""
        KeyedVectors = _optional("gensim.models", "to_gensim", "gensim").KeyedVectors

        kv = KeyedVectors(self.vector_size, count=0, dtype=np.float32)
        kv.add_vectors(self.words, np.asarray(self.vectors, dtype=np.float32))
        kv.allocate_vecattrs(attrs=["count"], types=[np.int64])
        kv.expandos["count"][:] = np.asarray(self.counts, dtype=np.int64)
        return kv

    def to_torch(
        self, freeze: bool = True, padding: bool = True, unknown: bool = True
    ) -> tuple[nn.Embedding, dict[str, int]]:
        """An ``nn.Embedding`` built with ``from_pretrained`` and the word -> row mapping.

        Row layout (the mapping only holds real words):

        * ``padding``: row 0 is all zeros and is the module's ``padding_idx``
          (its gradient stays zero even when not frozen);
        * ``unknown``: the next row (1 with padding, else 0) is the mean of all
          vectors; map out-of-vocabulary tokens to it, e.g.
          ``word_to_row.get(token, unk_row)`` with ``unk_row = int(padding)``;
        * then one row per word in vocabulary order: ``word_to_row[w] = offset + index(w)``
          with ``offset = int(padding) + int(unknown)``.
        """
        torch = _optional("torch", "to_torch", "torch")

        table = np.asarray(self.vectors, dtype=np.float32)
        extra = []
        if padding:
            extra.append(np.zeros((1, self.vector_size), dtype=np.float32))
        if unknown:
            extra.append(table.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32))
        weights = torch.from_numpy(np.concatenate([*extra, table]))
        module = torch.nn.Embedding.from_pretrained(
            weights, freeze=freeze, padding_idx=0 if padding else None
        )
        offset = len(extra)
        return module, {w: offset + i for i, w in enumerate(self.words)}


def _optional(module: str, method: str, extra: str) -> Any:
    """Import ``module`` for ``method``, or say which extra installs it (the base install has neither)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"Embeddings.{method}() needs {module.split('.')[0]}, which the base install leaves out: "
            f"pip install 'corpus2vec[{extra}]' (or any environment with it installed)"
        ) from exc
