"""Intrinsic evaluation of a vector table: analogies, word similarity, probe neighbours.

The numbers must be comparable with what users get from gensim, so the
semantics copy ``KeyedVectors.evaluate_word_analogies`` / ``evaluate_word_pairs``
(case-insensitive, restricted to the ``restrict_vocab`` most frequent rows,
questions with an out-of-vocabulary word skipped and counted), but the work is
done as blocked matrix products instead of one ``most_similar`` call per
question: a 70k x 100 table evaluates in seconds instead of minutes.

``report["metrics"]`` holds only higher-is-better numbers; the quality gate in
:mod:`corpus2vec.model.registry` compares every one of them against the parent version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corpus2vec.model import storage
from corpus2vec.model.config import EvalConfig
from corpus2vec.model.contracts import Eval, Train, Vocab, entry_for
from corpus2vec.model.health import health_checks

# word2vec's compute-accuracy counts the first five sections of questions-words as semantic.
SEMANTIC_SECTIONS = 5
_BLOCK = 512  # questions per matmul block: 512 x 30k float32 scores = 60 MB


@dataclass
class AnalogySection:
    """Counts for one ``: section`` of an analogy file."""

    name: str
    correct: int = 0
    total: int = 0  # in-vocabulary questions answered
    oov: int = 0  # questions skipped because a word is outside the restricted vocabulary

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass
class AnalogyResult:
    """Per-section counts of one analogy file plus the semantic/syntactic split."""

    sections: list[AnalogySection] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-safe totals; ``accuracy`` is over answered questions, as gensim's score."""
        sem, syn = self.sections[:SEMANTIC_SECTIONS], self.sections[SEMANTIC_SECTIONS:]
        correct, total, oov = (sum(getattr(s, k) for s in self.sections) for k in ("correct", "total", "oov"))
        return {
            "accuracy": correct / total if total else 0.0,
            "semantic": _accuracy(sem),
            "syntactic": _accuracy(syn),
            "correct": correct,
            "total": total,
            "oov": oov,
            "oov_rate": oov / (total + oov) if total + oov else 0.0,
            "sections": [{**asdict(s), "accuracy": s.accuracy} for s in self.sections],
        }


def _accuracy(sections: list[AnalogySection]) -> float | None:
    total = sum(s.total for s in sections)
    return sum(s.correct for s in sections) / total if total else None


def gensim_datapath(name: str) -> str:
    """Path of an evaluation file shipped inside gensim's wheel (imported lazily)."""
    from gensim.test.utils import datapath

    return str(datapath(name))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32; all-zero rows stay zero instead of NaN."""
    table = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return table / norms


def upper_index(words: Sequence[str], restrict_vocab: int) -> dict[str, int]:
    """Upper-cased word -> row among the first ``restrict_vocab`` rows; the most frequent variant wins."""
    index: dict[str, int] = {}
    for row in range(min(restrict_vocab, len(words)) - 1, -1, -1):
        index[words[row].upper()] = row
    return index


def read_analogies(path: str) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of a questions-words file: ``[(section, [(A, B, C, D), ...])]``, upper-cased.

    Lines that do not hold exactly four words are skipped, as gensim does.
    """
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for line_no, line in enumerate(_read_text(path).splitlines()):
        if line.startswith(": "):
            sections.append((line.lstrip(": ").strip(), []))
            continue
        parts = line.upper().split()
        if not parts:
            continue
        if not sections:
            raise ValueError(f"{path}: line {line_no + 1} comes before any ': section' header")
        if len(parts) == 4:
            sections[-1][1].append((parts[0], parts[1], parts[2], parts[3]))
    return sections


def read_pairs(path: str) -> list[tuple[str, str, float]]:
    """``(A, B, score)`` triples of a tab-separated similarity file; ``#`` lines are comments."""
    pairs = []
    for line in _read_text(path).splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            pairs.append((parts[0].upper(), parts[1].upper(), float(parts[2])))
        except ValueError:
            continue
    return pairs


def _read_text(path: str) -> str:
    fs, local = storage.get_fs(path)
    with fs.open(local, "rb") as handle:
        return handle.read().decode("utf-8")


def analogy_accuracy(unit: np.ndarray, words: Sequence[str], path: str, restrict_vocab: int) -> AnalogyResult:
    """3CosAdd accuracy on one analogy file, as ``KeyedVectors.evaluate_word_analogies``.

    The answer is the row (among the first ``restrict_vocab``) closest to
    ``b - a + c`` on unit vectors, excluding the three query words and their
    case variants.
    """
    index = upper_index(words, restrict_vocab)
    candidates = unit[: min(restrict_vocab, len(words))]
    canon = np.array([index[w.upper()] for w in words[: len(candidates)]], dtype=np.int64)
    result = AnalogyResult()
    rows: list[tuple[int, int, int, int]] = []
    owner: list[AnalogySection] = []
    for name, questions in read_analogies(path):
        section = AnalogySection(name)
        result.sections.append(section)
        for question in questions:
            if all(w in index for w in question):
                rows.append(tuple(index[w] for w in question))  # type: ignore[arg-type]
                owner.append(section)
            else:
                section.oov += 1
    if rows:
        hits = _solve_analogies(candidates, canon, np.array(rows, dtype=np.int64))
        for section, hit in zip(owner, hits, strict=True):
            section.total += 1
            section.correct += int(hit)
    return result


def _solve_analogies(candidates: np.ndarray, canon: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Whether the best 3CosAdd answer of each ``(a, b, c, d)`` row is ``d`` (block by block)."""
    hits = np.zeros(len(quads), dtype=bool)
    variants = _case_variants(canon)
    for start in range(0, len(quads), _BLOCK):
        block = quads[start : start + _BLOCK]
        a, b, c, d = block.T
        query = candidates[b] - candidates[a] + candidates[c]
        scores = query @ candidates.T
        local = np.arange(len(block))
        for col in (a, b, c):
            scores[local, col] = -np.inf
        if variants:  # rare: "Paris" and "paris" both in the vocabulary
            for i, query_rows in enumerate(block[:, :3].tolist()):
                for q in query_rows:
                    scores[i, variants.get(q, [])] = -np.inf
        hits[start : start + len(block)] = canon[np.argmax(scores, axis=1)] == d
    return hits


def _case_variants(canon: np.ndarray) -> dict[int, list[int]]:
    """Canonical row -> all rows that upper-case to the same word, only where there are several."""
    duplicate = np.flatnonzero(canon != np.arange(len(canon)))
    groups: dict[int, list[int]] = {}
    for row in duplicate:
        groups.setdefault(int(canon[row]), [int(canon[row])]).append(int(row))
    return groups


def similarity_correlation(
    unit: np.ndarray, words: Sequence[str], path: str, restrict_vocab: int
) -> dict[str, Any]:
    """Spearman (and Pearson) of cosine vs human scores, as ``KeyedVectors.evaluate_word_pairs``."""
    from scipy import stats

    index = upper_index(words, restrict_vocab)
    gold, left, right, oov = [], [], [], 0
    for a, b, score in read_pairs(path):
        if a in index and b in index:
            gold.append(score)
            left.append(index[a])
            right.append(index[b])
        else:
            oov += 1
    total = len(gold) + oov
    out: dict[str, Any] = {"pairs": len(gold), "oov": oov, "oov_rate": oov / total if total else 0.0}
    if len(gold) < 2:
        return {**out, "spearman": None, "pearson": None}
    model = np.einsum("ij,ij->i", unit[left], unit[right])
    spearman = stats.spearmanr(gold, model).statistic
    pearson = stats.pearsonr(gold, model).statistic
    return {**out, "spearman": _finite(spearman), "pearson": _finite(pearson)}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def nearest_neighbours(
    unit: np.ndarray, words: Sequence[str], probes: Sequence[str], topn: int
) -> dict[str, list[tuple[str, float]]]:
    """Cosine top-``topn`` neighbours of each probe word found in the vocabulary (exact, then lower case)."""
    lookup = {w: i for i, w in enumerate(words)}
    result: dict[str, list[tuple[str, float]]] = {}
    for probe in probes:
        row = lookup.get(probe, lookup.get(probe.lower()))
        if row is None:
            continue
        scores = unit @ unit[row]
        scores[row] = -np.inf
        best = _top(scores, topn)
        result[probe] = [(words[i], round(float(scores[i]), 4)) for i in best]
    return result


def _top(scores: np.ndarray, topn: int) -> np.ndarray:
    """Indices of the ``topn`` largest scores, best first (argpartition, then a small sort)."""
    topn = min(topn, len(scores))
    if topn <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, topn - 1)[:topn]
    return part[np.argsort(-scores[part], kind="stable")]


def evaluate_vectors(vectors: np.ndarray, words: list[str], cfg: EvalConfig) -> dict[str, Any]:
    """The evaluation report of a V x d table whose rows are in descending frequency order.

    Returns ``{"metrics": {...}, "analogy": {...}, "similarity": {...},
    "neighbours": {...}, ...}``; ``metrics`` are the higher-is-better headline
    numbers (``analogy``, ``analogy_semantic``, ``analogy_syntactic``,
    ``wordsim353``, ``simlex999`` and one per user file) that the gate compares.
    """
    if vectors.ndim != 2 or len(vectors) != len(words):
        raise ValueError(f"vectors have shape {vectors.shape} but there are {len(words)} words")
    started = time.monotonic()
    unit = unit_rows(vectors)
    restrict = cfg.restrict_vocab or len(words)
    analogy_sets = {"questions_words": gensim_datapath("questions-words.txt")}
    analogy_sets.update({_metric_name(p): p for p in cfg.analogy_files})
    similarity_sets = {
        "wordsim353": gensim_datapath("wordsim353.tsv"),
        "simlex999": gensim_datapath("simlex999.txt"),
    }
    similarity_sets.update({_metric_name(p): p for p in cfg.similarity_files})
    analogy = {k: analogy_accuracy(unit, words, p, restrict).summary() for k, p in analogy_sets.items()}
    similarity = {k: similarity_correlation(unit, words, p, restrict) for k, p in similarity_sets.items()}
    return {
        "metrics": _headline(analogy, similarity),
        "analogy": analogy,
        "similarity": similarity,
        "neighbours": nearest_neighbours(unit, words, cfg.probes, cfg.topn),
        "vocab_size": len(words),
        "vector_size": int(vectors.shape[1]),
        "restrict_vocab": min(restrict, len(words)),
        "seconds": round(time.monotonic() - started, 2),
    }


def _metric_name(path: str) -> str:
    stem = Path(path.rstrip("/")).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_]", "_", stem).lower() or "custom"


def _headline(analogy: dict[str, Any], similarity: dict[str, Any]) -> dict[str, float]:
    """Flat higher-is-better metrics; a correlation that could not be measured is left out."""
    main = analogy["questions_words"]
    metrics: dict[str, float] = {"analogy": round(main["accuracy"], 6)}
    for part in ("semantic", "syntactic"):
        if main[part] is not None:
            metrics[f"analogy_{part}"] = round(main[part], 6)
    for name, result in analogy.items():
        if name != "questions_words":
            metrics[f"analogy_{name}"] = round(result["accuracy"], 6)
    for name, result in similarity.items():
        if result["spearman"] is not None:
            metrics[name] = round(result["spearman"], 6)
    return metrics


def evaluate_run(
    train_uri: str, vocab_uri: str, cfg: EvalConfig, out_uri: str, *, key: str = ""
) -> dict[str, Any]:
    """Evaluate a finished training run into ``out_uri`` and return the report.

    Writes ``report.json``, ``report.md`` and, last, the eval ``_manifest.json``
    (:class:`~corpus2vec.model.contracts.Eval`); a finished ``out_uri`` is read back,
    not recomputed. Refuses a run whose vectors do not match the vocabulary (row
    count or the vocab sha256 recorded by training), since every metric would be garbage.
    """
    done = Eval.finished(out_uri)
    if done is not None:
        return done.report()
    started = time.time()
    train, vocab = Train.read(train_uri), Vocab.read(vocab_uri)
    table = vocab.table()
    if train.vocab_sha256 != vocab.vocab_sha256:
        raise ValueError(
            f"{train_uri} was trained on vocabulary {train.vocab_sha256[:12]} but {vocab_uri} is "
            f"{vocab.vocab_sha256[:12]}; retrain it"
        )
    words = table.column("word").to_pylist()
    vectors = train.vectors()
    if len(vectors) != len(words):
        raise ValueError(
            f"{train_uri}/vectors.npy has {len(vectors)} rows but {vocab_uri}/vocab.parquet has "
            f"{len(words)} words; the run was trained on another vocabulary, retrain it"
        )
    report = evaluate_vectors(vectors, words, cfg)
    if cfg.health_gate:
        report["health"] = health_checks(vectors, train.metrics(), vocab.total_tokens, report)
    report["run"] = {
        "train_uri": train_uri,
        "vocab_uri": vocab_uri,
        "training": {
            k: v for k, v in train.to_dict().items() if k != "key" and isinstance(v, (str, int, float, bool))
        },
    }
    storage.write_bytes_atomic(storage.join(out_uri, "report.md"), render_markdown(report).encode())
    storage.write_json_atomic(storage.join(out_uri, "report.json"), report)
    Eval(
        files=tuple(entry_for(out_uri, n) for n in ("report.json", "report.md")),
        key=key,
        train_digest=train.digest,
        vocab_digest=vocab.digest,
        metrics=report["metrics"],
        health_passed=report["health"]["passed"] if "health" in report else None,
        seconds=round(time.time() - started, 3),
    ).write(out_uri)
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable table of the report (also used as the Prefect markdown artifact)."""
    lines = ["# Evaluation", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in report["metrics"].items()]
    lines += ["", "| test set | kind | answered | OOV rate |", "| --- | --- | --- | --- |"]
    for name, res in report["analogy"].items():
        lines.append(f"| {name} | analogy | {res['total']} | {res['oov_rate']:.1%} |")
    for name, res in report["similarity"].items():
        lines.append(f"| {name} | similarity | {res['pairs']} | {res['oov_rate']:.1%} |")
    health = report.get("health")
    if health:
        lines += ["", f"Health: {'passed' if health['passed'] else 'FAILED'}"]
        lines += [f"- {reason}" for reason in health["reasons"]]
    lines += ["", "## Nearest neighbours", ""]
    for probe, neighbours in report["neighbours"].items():
        lines.append(f"- **{probe}**: " + ", ".join(f"{w} ({s:.2f})" for w, s in neighbours))
    return "\n".join(lines) + "\n"
