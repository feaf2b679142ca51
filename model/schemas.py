"""On-disk Parquet schemas, declared once (the manifests are in :mod:`corpus2vec.model.contracts`).

Writers cast to these before writing and readers check them, so no stage ever
infers a schema from data. Only pyarrow is imported: the Spark jobs, the trainer
and the pull client all use this module.
"""

from __future__ import annotations

import pyarrow as pa

# Tokenized corpus (stages/tokens/{key}/): one row per sentence, windows never cross rows.
TOKENS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # stable id: source URI + record, or content hash
        pa.field("sentence", pa.int32(), nullable=False),  # index of the sentence inside its document
        pa.field("tokens", pa.list_(pa.string()), nullable=False),
    ]
)

# Vocabulary (stages/vocab/{key}/vocab.parquet): ids 0..V-1 by descending count, ties by word.
VOCAB_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int32(), nullable=False),
        pa.field("word", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)


def pairs_schema(negative: int) -> pa.Schema:
    """Schema of a pair shard with ``negative`` noise words per (center, context) pair."""
    if negative < 1:
        raise ValueError(f"negative must be >= 1, got {negative}")
    return pa.schema(
        [
            pa.field("center", pa.int32(), nullable=False),
            pa.field("context", pa.int32(), nullable=False),
            pa.field("negatives", pa.list_(pa.int32(), negative), nullable=False),
        ]
    )


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    """Raise ValueError naming the file when ``actual`` differs from the declared schema."""
    got = [(f.name, f.type) for f in actual]
    want = [(f.name, f.type) for f in expected]
    if got != want:
        raise ValueError(
            f"{where}: schema {got} does not match the declared {want}; "
            "the file was not written by this version of corpus2vec, rerun the stage that made it"
        )
