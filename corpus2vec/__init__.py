"""corpus2vec: corpus-scale word2vec pretraining and the client that loads its published vectors.

The public surface is small and needs only the base install (numpy, pyarrow, fsspec)::

    import corpus2vec
    emb = corpus2vec.load("wiki@latest", store="s3://bucket/c2v-store")
    emb.most_similar("king")
    kv = emb.to_gensim()                    # pip install 'corpus2vec[model]' for gensim/torch
    layer, word_to_row = emb.to_torch(freeze=True)

The stages live in subpackages, each imported only by what runs it:
``corpus2vec.jobs`` (the Spark jobs), ``corpus2vec.model`` (contracts, store, training,
evaluation, registry, pull) and ``corpus2vec.flows`` (the Prefect flow and the CLI).
``load`` and ``Embeddings`` are imported on first use, so ``import corpus2vec`` (which
every Spark executor does) stays as cheap as an empty package.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corpus2vec.model.artifact import ArtifactError
    from corpus2vec.model.embeddings import Embeddings
    from corpus2vec.model.pull import load

try:
    __version__ = version("corpus2vec")
except PackageNotFoundError:  # imported from a zip on Spark executors, without the installed metadata
    __version__ = "0+unknown"

_PUBLIC = {
    "load": "corpus2vec.model.pull",
    "Embeddings": "corpus2vec.model.embeddings",
    "ArtifactError": "corpus2vec.model.artifact",
}
__all__ = ["ArtifactError", "Embeddings", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corpus2vec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
