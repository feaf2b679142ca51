"""Typed configuration for every stage, named presets and ``key=value`` overrides.

One frozen dataclass per stage; :class:`PipelineConfig` groups them. The same
object is the Prefect flow parameter (as a dict), is saved into checkpoints and
manifests, and fingerprints a run, so it must stay JSON-round-trippable and
import nothing heavy (the pull client and the Spark jobs both import it).

Parameter names follow gensim (``vector_size, window, negative, ns_exponent,
sample, min_count, max_vocab_size, epochs, alpha, min_alpha, seed``) because
that is what users already know.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class CorpusConfig:
    """How raw files become tokenized sentences (jobs/ingest, jobs/tokenize)."""

    format: Literal["auto", "text", "jsonl", "parquet", "wet"] = "auto"
    text_field: str = "text"  # JSON-lines field / Parquet column holding the text
    id_field: str = "id"  # optional document id field; a content hash is used when absent
    doc_per: Literal["line", "block"] = "line"  # plain text: one document per line or per blank-line block
    lowercase: bool = True
    max_sentence_tokens: int = 10_000  # gensim's limit; text8-style lines are cut into pieces this long
    dedup: bool = True  # drop exact-duplicate documents (web crawl boilerplate)
    language: str | None = None  # WET: keep records whose WARC-Identified-Content-Language starts with this
    sample_files: int | None = None  # take a deterministic subset of this many input files
    max_bad_fraction: float = 0.01  # share of input files that may be skipped as unreadable
    min_doc_tokens: int = 1
    # tokens output files; default from input bytes (never from the cluster size)
    num_parts: int | None = None
    # *.paths lists: prefix for relative entries (Common Crawl: "s3://commoncrawl/"); default the list's folder.
    # When set, every entry must also lie under it (absolute entries included).
    paths_prefix: str | None = None
    # Largest record held whole in memory (a JSON line, a WET record, a Parquet text value); a bigger one
    # is skipped and reported by name. Plain-text lines are streamed in pieces and are not capped.
    max_record_bytes: int = 64 << 20


@dataclass(frozen=True)
class VocabConfig:
    """Vocabulary construction (jobs/count)."""

    min_count: int = 5
    max_vocab_size: int | None = None  # keep only the most frequent words when set


@dataclass(frozen=True)
class PairsConfig:
    """Subsampling, reduced window and negatives (jobs/pairs)."""

    window: int = 5
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    seed: int = 1
    num_shards: int = 4
    broadcast_vocab_max: int = 2_000_000  # above this many words the vocab is joined, not broadcast
    row_group_size: int = 1_000_000  # pairs per Parquet row group (streaming reads)
    # independent draws of subsampling, windows and negatives; training epoch e reads
    # draw e % draws. None = one per training epoch (word2vec redraws every epoch).
    draws: int | None = None
    # Which word of a window pair trains its input vector (the shards' ``center`` column):
    # "context" (default), each word in a kept centre's reduced window against the centre, as
    # word2vec.c's and gensim's skip-gram do; or "centre", the centre against each of them (the
    # default until 2026-12-07). Same pairs, roles swapped: "context" scored +0.3 to +1.1 analogy
    # points at 2M, 10M and 25M words and 1, 2 and 8 ranks, and narrowed the whole corpus's
    # WordSim353 gap to gensim at 2 ranks from -0.012 to -0.005 (docs/bench/input_word.md).
    input_word: str = "context"


INPUT_WORDS = ("centre", "context")  # PairsConfig.input_word

# rows in the smallest partial sync of the most frequent words (train.sync_hot_rows)
HOT_ROWS = 1024
SYNC_PAIRS_TOTAL = 2_000_000  # default pairs trained across all ranks between two syncs
# the highest local rate (world x alpha) measured to hold at 8 ranks with full syncs only (0.4 failed)
FULL_SYNC_LOCAL_ALPHA = 0.3
# the highest local rate at which partial syncs overlapped with training kept blocking's quality
# (2 ranks at alpha 0.05; 4 ranks at 0.2 lost 1.4 analogy points on 10M words, 8 at 0.4 diverged)
OVERLAP_LOCAL_ALPHA = 0.1
# Largest per-row score change (sum of lr·|g|·|x|² over a batch) the batched kernel applies
# unscaled; chosen by measurement, see model/sgns.py torch_sgd_step.
ROW_STEP_LIMIT = 4.0


@dataclass(frozen=True)
class TrainConfig:
    """SGNS training under torchrun (model/train)."""

    vector_size: int = 100
    epochs: int = 5
    # word2vec.c and gensim start skip-gram at 0.025; at 3 epochs on 2M-45M words that
    # under-trains: 0.05 scores +3 to +6 analogy points at every size (docs/bench/learning_rate.md)
    alpha: float = 0.05
    min_alpha: float = 0.0001
    seed: int = 1
    # input vectors start uniform(-init_range/d, init_range/d). 1.0 is gensim 4's; word2vec.c's 0.5
    # scored 0.4 analogy points less on 2M words (4 of 4 seeds), 0.3 on 10M, the same on 25M
    # (docs/bench/init_and_output.md)
    init_range: float = 1.0
    nproc: int = 2  # torchrun --nproc_per_node
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 4096  # pairs per optimisation step on the torch path
    # torch path: per-row bound on how far one batch may move the scores of a row (sgns.py)
    # before its summed update is scaled down; null = plain minibatch SGD (diverges at 64k+)
    row_step_limit: float | None = ROW_STEP_LIMIT
    # local SGD: pairs per rank between parameter averages; null = SYNC_PAIRS_TOTAL across all
    # ranks (2M: 1M per rank at 2 ranks, 250k at 8), the staleness that held quality at every world size
    sync_every: int | None = None
    output: Literal["input", "average"] = "input"  # published vectors: input table, or (input+output)/2
    checkpoint_every_s: float = 300.0
    # auto: numba on CPU, torch on cuda; cuda = the Hogwild numba.cuda kernel (opt-in, model/cuda_kernel.py)
    kernel: Literal["auto", "numba", "torch", "cuda"] = "auto"
    threads: int = 0  # numba Hogwild threads per rank; 0 = cores // local ranks; 1 = bitwise deterministic
    # local SGD merge rule, model/train.py
    sync_average: Literal["scaled", "sum", "touched", "mean"] = "scaled"
    # "scaled": the learning rate a rank steps at (world x alpha) is capped here. With the partial
    # syncs of the hot rows, 8 ranks at a local 0.4 (alpha 0.05) held on 2M-25M words, and 0.3 cost
    # 2M words 16% analogy; a local 0.6 diverged, and 0.4 failed with full syncs only (use 0.3 with
    # sync_hot_rows=0) (docs/bench/learning_rate.md); null = no cap
    max_local_alpha: float | None = 0.4
    # once capped (world x alpha > max_local_alpha), a row's merged change is the touchers' summed
    # change over max(factor, touchers / capped_merge_reach). 1 (never beyond their mean) lost 23%
    # analogy at 16 ranks on 2M words; 2 (= 16 / 8) held 16 ranks on 2M and 10M
    # (docs/bench/sixteen_ranks.md). 3 and 4 diverged at 32 ranks, where 2 lost 25% on 2M words
    # (docs/bench/thirty_two_ranks.md; training warns above 2, and beyond 32 ranks with the momentum)
    capped_merge_reach: float = 2.0
    # past reach x factor ranks (16) the capped merge shrinks the change of rows many ranks touched
    # (divisor d = touchers / reach > factor k); momentum keeps 1 - k/d of a row's last merged step
    # (heavy ball, DiLoCo-style outer momentum), which gives those rows back one process's rate where
    # their changes add up and stays stable where they saturate. At 32 ranks it took 2M words from
    # -15% to +2% analogy against one process (two seeds) and 10M words level (+1.3 points, one seed;
    # docs/bench/merge_momentum.md). Up to 16 ranks d <= k, so it is a no-op there (bit for bit);
    # false = the shrunk change alone
    capped_merge_momentum: bool = True
    # between two full syncs, ``sync_hot_splits - 1`` partial ones average only the most frequent
    # rows (vocab ids are by descending count): sub-sync n averages the first
    # ``sync_hot_rows * 2**trailing_zeros(n)`` rows (IntelLabs pWord2Vec's schedule); 0 = off;
    # null = HOT_ROWS at 2+ ranks (2 ranks, whole dev corpus: -1.1 -> -0.1 analogy points vs one
    # process for 3% pairs/s, 6-11% on 2M/10M words; docs/bench/hot_rows_two_ranks.md)
    sync_hot_rows: int | None = None
    sync_hot_splits: int = 16
    # a partial sync of the "scaled" mean is sent without waiting and lands at the next sync point,
    # as mean + what the rank learnt meanwhile, so the wait for the slowest rank overlaps training
    # (2 ranks: 20-25% -> 10-17% of the time in syncs, same quality); only up to a local rate of
    # OVERLAP_LOCAL_ALPHA (2 ranks at alpha 0.05): 4 ranks at 0.2 lost 1.4 analogy points on 10M
    # words, 8 at 0.4 diverged (model/train.py overlaps_partial_syncs); false = always blocking
    overlap_partial_syncs: bool = True
    verify_shards: bool = True  # sha256 of each shard against the pairs manifest before first read
    # threads decoding, checking and shuffling pair buffers per rank (model/reader.py); the stream
    # is the same at any count, so it keys no stage. 0 = 1 for the numba kernel (its Hogwild
    # threads own the cores) and cores // local ranks, at most 8, for a GPU kernel
    reader_threads: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation and the quality gate (model/evaluate)."""

    restrict_vocab: int = 30_000
    probes: tuple[str, ...] = ("king", "france", "computer", "music", "river", "good")
    topn: int = 10
    analogy_files: tuple[str, ...] = ()  # extra files in questions-words format
    similarity_files: tuple[str, ...] = ()  # extra files in wordsim353 format
    min_analogy: float = 0.0  # gate: absolute floor on analogy accuracy
    min_wordsim: float = -1.0  # gate: absolute floor on WordSim353 Spearman
    max_regression: float = 0.05  # gate: largest allowed drop of any metric against the parent
    # gate: fail non-finite vectors, a loss that did not fall, quality far below the corpus size
    # (model/health.py); on by default so collapsed vectors are never published
    health_gate: bool = True


@dataclass(frozen=True)
class PublishConfig:
    """Where and how a version is published (:mod:`corpus2vec.model.registry`)."""

    align_to_parent: bool = True  # orthogonal Procrustes onto the parent version


@dataclass(frozen=True)
class PipelineConfig:
    """All stages together; ``preset`` is recorded for lineage only."""

    preset: str = "tiny"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists) that :meth:`from_dict` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        return _build(cls, data, "config")

    def fingerprint(self, *sections: str) -> str:
        """sha256 of the named sections (all when none), to key stages by what affects them.

        Settings in :data:`NOT_IN_KEYS` are left out: they change how fast a stage runs, never
        what it writes, so changing them must not rerun it.
        """
        data = self.to_dict()
        for section, names in NOT_IN_KEYS.items():
            data[section] = {k: v for k, v in data[section].items() if k not in names}
        chosen = {k: data[k] for k in (sections or tuple(data)) if k != "preset"}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()


SECTIONS = ("corpus", "vocab", "pairs", "train", "eval", "publish")
# settings that cannot change a stage's output, by section: not part of the stage keys. (Older
# settings of that kind, such as train.verify_shards, stay in the keys, which would otherwise
# change under every existing store.)
NOT_IN_KEYS: dict[str, tuple[str, ...]] = {"train": ("reader_threads",)}

PRESETS: dict[str, dict[str, Any]] = {
    # The shipped sample corpus (~730k words): a few minutes on 2 cores.
    "tiny": {
        "vocab": {"min_count": 3},
        "pairs": {"window": 5, "negative": 5, "sample": 1e-3, "num_shards": 4},
        # ~1.5M pairs per rank per epoch, so 1M would be one sync per epoch; every 100k (chosen
        # when ranks summed their updates, which overshot at 1M) costs 7.4 MB per sync.
        "train": {"vector_size": 50, "epochs": 3, "nproc": 2, "sync_every": 100_000},
    },
    # The reference settings: gensim's skip-gram defaults (sample 1e-4) but alpha 0.05 (see
    # TrainConfig.alpha; the benchmark gives gensim the same), on the dev corpus.
    "bench": {
        "vocab": {"min_count": 5},
        "pairs": {"window": 5, "negative": 5, "sample": 1e-4, "num_shards": 16},
        "train": {"vector_size": 100, "epochs": 3, "alpha": 0.05, "min_alpha": 0.0001},
    },
    # Web crawls: boilerplate-heavy, many languages, large.
    "web": {
        "corpus": {"format": "wet", "language": "en", "dedup": True, "max_bad_fraction": 0.05},
        "vocab": {"min_count": 10, "max_vocab_size": 1_000_000},
        "pairs": {"window": 5, "negative": 5, "sample": 1e-4, "num_shards": 256},
        "train": {"vector_size": 300, "epochs": 1, "device": "cuda", "batch_size": 65536},
    },
}


def load_config(preset: str = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """The preset's config with ``key=value`` overrides applied, validated.

    A key is ``section.field`` (``train.epochs=3``) or a bare gensim name
    (``epochs=3``); a bare name present in several sections (``seed``) sets all.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    data: dict[str, Any] = {"preset": preset}
    for section, values in PRESETS[preset].items():
        data[section] = dict(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not key=value (e.g. --set epochs=3)")
        for section, name in _targets(key.strip()):
            data.setdefault(section, {})[name] = _parse_value(raw.strip())
    return validate(PipelineConfig.from_dict(data))


def validate(cfg: PipelineConfig) -> PipelineConfig:
    """Reject values no stage can honour, with a message saying which setting to change."""
    checks = [
        (cfg.vocab.min_count >= 1, "vocab.min_count must be >= 1"),
        (
            cfg.vocab.max_vocab_size is None or cfg.vocab.max_vocab_size >= 1,
            "vocab.max_vocab_size must be >= 1",
        ),
        (cfg.pairs.window >= 1, "pairs.window must be >= 1"),
        (cfg.pairs.negative >= 1, "pairs.negative must be >= 1"),
        (cfg.pairs.sample >= 0, "pairs.sample must be >= 0 (0 disables subsampling)"),
        (cfg.pairs.num_shards >= 1, "pairs.num_shards must be >= 1"),
        (
            cfg.pairs.input_word in INPUT_WORDS,
            f"pairs.input_word must be one of {', '.join(INPUT_WORDS)}, not {cfg.pairs.input_word!r}",
        ),
        (
            cfg.pairs.draws is None or cfg.pairs.draws >= 1,
            "pairs.draws must be >= 1 (or null: one per epoch)",
        ),
        (cfg.corpus.max_sentence_tokens >= 2, "corpus.max_sentence_tokens must be >= 2"),
        (0 <= cfg.corpus.max_bad_fraction <= 1, "corpus.max_bad_fraction must be in [0, 1]"),
        (cfg.corpus.max_record_bytes >= 1024, "corpus.max_record_bytes must be >= 1024"),
        (cfg.train.vector_size >= 1, "train.vector_size must be >= 1"),
        (cfg.train.epochs >= 1, "train.epochs must be >= 1"),
        (cfg.train.nproc >= 1, "train.nproc must be >= 1"),
        (
            cfg.train.alpha > 0 and 0 <= cfg.train.min_alpha <= cfg.train.alpha,
            "need 0 <= min_alpha <= alpha, alpha > 0",
        ),
        (cfg.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (cfg.train.reader_threads >= 0, "train.reader_threads must be >= 0 (0 = by kernel and cores)"),
        (0 < cfg.train.init_range <= 10, "train.init_range must be in (0, 10]"),
        (
            cfg.train.max_local_alpha is None or cfg.train.max_local_alpha > 0,
            "train.max_local_alpha must be > 0 (or null)",
        ),
        (cfg.train.capped_merge_reach >= 1.0, "train.capped_merge_reach must be >= 1"),
        (
            cfg.train.sync_every is None or cfg.train.sync_every >= 1,
            "train.sync_every must be >= 1 (or null)",
        ),
        (
            cfg.train.sync_hot_rows is None or cfg.train.sync_hot_rows >= 0,
            "train.sync_hot_rows must be >= 0 (0 = only full syncs) or null (by world size)",
        ),
        (
            cfg.train.sync_hot_splits >= 1
            and cfg.train.sync_hot_splits & (cfg.train.sync_hot_splits - 1) == 0,
            "train.sync_hot_splits must be a power of two (1 = only full syncs)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"invalid config: {message}")
    if cfg.pairs.draws is None:
        cfg = with_section(cfg, "pairs", draws=cfg.train.epochs)
    return cfg


def _targets(key: str) -> list[tuple[str, str]]:
    if "." in key:
        section, name = key.split(".", 1)
        if section not in SECTIONS:
            raise ValueError(
                f"unknown config section {section!r} in {key!r}; sections: {', '.join(SECTIONS)}"
            )
        if name not in _field_names(section):
            raise ValueError(
                f"unknown setting {key!r}; {section} has: {', '.join(sorted(_field_names(section)))}"
            )
        return [(section, name)]
    found = [(s, key) for s in SECTIONS if key in _field_names(s)]
    if not found:
        raise ValueError(f"unknown setting {key!r}; see `corpus2vec config --preset tiny` for all settings")
    return found


def _field_names(section: str) -> set[str]:
    section_type = get_type_hints(PipelineConfig)[section]
    return {f.name for f in fields(section_type)}


def _parse_value(raw: str) -> Any:
    """JSON when it parses (numbers, true/false, null, lists), else the raw string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _build(cls: Any, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a field's type; ints widen to floats, lists to tuples."""
    if is_dataclass(hint):
        return _build(hint, value, where)
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, where) for v in items if v != "")
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def with_section(cfg: PipelineConfig, section: str, **changes: Any) -> PipelineConfig:
    """A copy of ``cfg`` with fields of one section replaced (used by tests and benchmarks)."""
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
