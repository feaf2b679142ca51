"""Evaluation: our blocked 3CosAdd and word-pair correlations give exactly gensim's numbers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model.config import EvalConfig
from corpus2vec.model.evaluate import (
    evaluate_run,
    evaluate_vectors,
    gensim_datapath,
    read_analogies,
    read_pairs,
)
from tests.model.pairs_fixtures import write_train, write_vocab


def _test_set_words() -> list[str]:
    """Every word of questions-words, WordSim353 and SimLex-999, lower-cased, first-seen order."""
    seen: dict[str, None] = {}
    for _, questions in read_analogies(gensim_datapath("questions-words.txt")):
        for question in questions:
            seen.update(dict.fromkeys(w.lower() for w in question))
    for name in ("wordsim353.tsv", "simlex999.txt"):
        for a, b, _ in read_pairs(gensim_datapath(name)):
            seen.update(dict.fromkeys((a.lower(), b.lower())))
    return list(seen)


@pytest.fixture(scope="module")
def planted() -> tuple[list[str], np.ndarray]:
    """Random vectors with two relations planted (capital->country, male->female) and case variants.

    Planting makes many answers right and many wrong, so a mismatch with gensim
    in either direction shows up; the upper-case duplicates exercise gensim's
    "most frequent case variant wins" rule.
    """
    rng = np.random.default_rng(7)
    words = _test_set_words()
    index = {w: i for i, w in enumerate(words)}
    vectors = rng.normal(size=(len(words), 24)).astype(np.float32)
    sections = dict(read_analogies(gensim_datapath("questions-words.txt")))
    for section, noise in (("capital-common-countries", 0.3), ("family", 0.8)):
        offset = rng.normal(size=24) * 1.5
        for a, b, _, _ in sections[section]:
            vectors[index[b.lower()]] = vectors[index[a.lower()]] + offset + rng.normal(size=24) * noise
    variants = ["Athens", "GREECE", "Boy"]  # rarer case variants appended at the end
    extra = rng.normal(size=(len(variants), 24)).astype(np.float32)
    return words + variants, np.vstack([vectors, extra])


def _gensim_kv(words: list[str], vectors: np.ndarray):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)
    return kv


@pytest.mark.parametrize("restrict_vocab", [30_000, 700])
def test_analogy_accuracy_matches_gensim_exactly(planted, restrict_vocab: int) -> None:
    words, vectors = planted
    if restrict_vocab > len(words):  # make the case variants fall inside the restricted vocabulary
        restrict_vocab = len(words)
    report = evaluate_vectors(vectors, words, EvalConfig(restrict_vocab=restrict_vocab, probes=()))
    ours = report["analogy"]["questions_words"]
    score, sections = _gensim_kv(words, vectors).evaluate_word_analogies(
        gensim_datapath("questions-words.txt"), restrict_vocab=restrict_vocab
    )
    assert [s["section"] for s in sections[:-1]] == [s["name"] for s in ours["sections"]]
    for theirs, mine in zip(sections[:-1], ours["sections"], strict=True):
        assert mine["correct"] == len(theirs["correct"]), theirs["section"]
        assert mine["total"] == len(theirs["correct"]) + len(theirs["incorrect"]), theirs["section"]
    assert ours["accuracy"] == pytest.approx(score, abs=1e-12)
    assert 0.02 < ours["accuracy"] < 0.98  # the planted relations make this a real comparison
    assert report["metrics"]["analogy"] == pytest.approx(score, abs=1e-6)


def test_semantic_syntactic_split_and_oov_rate(planted) -> None:
    words, vectors = planted
    ours = evaluate_vectors(vectors, words, EvalConfig(restrict_vocab=700, probes=()))["analogy"][
        "questions_words"
    ]
    sections = ours["sections"]
    semantic = sum(s["correct"] for s in sections[:5]) / sum(s["total"] for s in sections[:5])
    assert sections[0]["name"] == "capital-common-countries"
    assert sections[5]["name"].startswith("gram")
    assert ours["semantic"] == pytest.approx(semantic)
    questions = sum(len(q) for _, q in read_analogies(gensim_datapath("questions-words.txt")))
    assert ours["total"] + ours["oov"] == questions
    assert ours["oov"] > 0 and ours["oov_rate"] == pytest.approx(ours["oov"] / questions)


@pytest.mark.parametrize("dataset", ["wordsim353", "simlex999"])
def test_similarity_spearman_matches_gensim(planted, dataset: str) -> None:
    words, vectors = planted
    report = evaluate_vectors(vectors, words, EvalConfig(restrict_vocab=900, probes=()))
    ours = report["similarity"][dataset]
    filename = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}[dataset]
    pearson, spearman, oov_pct = _gensim_kv(words, vectors).evaluate_word_pairs(
        gensim_datapath(filename), restrict_vocab=900
    )
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-5)
    assert 100 * ours["oov_rate"] == pytest.approx(oov_pct)
    assert 0 < ours["oov"] < ours["oov"] + ours["pairs"]


def test_user_files_and_probe_neighbours(tmp_path: Path) -> None:
    """A planted, noise-free relation is solved perfectly; neighbours of a probe are its cluster."""
    rng = np.random.default_rng(3)
    words = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)] + [f"c{i}" for i in range(4)]
    vectors = rng.normal(size=(len(words), 32)).astype(np.float32)
    vectors[20:40] = vectors[:20] + 3 * rng.normal(size=32)
    centre = rng.normal(size=32) * 5
    vectors[40:44] = centre + 0.1 * rng.normal(size=(4, 32))
    analogies = tmp_path / "mine.txt"
    analogies.write_text(
        ": rel\n" + "".join(f"A{i} B{i} A{i + 1} B{i + 1}\n" for i in range(19)) + "a0 b0 zz yy\n"
    )
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# comment\na0\tb0\t9\na0\tc0\t1\nc0\tc1\t8\na1\tzz\t3\n")
    cfg = EvalConfig(
        analogy_files=(str(analogies),), similarity_files=(str(pairs),), probes=("c0", "nope"), topn=3
    )
    report = evaluate_vectors(vectors, words, cfg)
    assert report["metrics"]["analogy_mine"] == 1.0
    assert report["analogy"]["mine"]["oov"] == 1
    assert report["similarity"]["pairs"]["pairs"] == 3 and report["similarity"]["pairs"]["oov"] == 1
    assert "pairs" in report["metrics"]
    assert {w for w, _ in report["neighbours"]["c0"]} == {"c1", "c2", "c3"}
    assert "nope" not in report["neighbours"]


def test_metrics_are_only_measurable_numbers() -> None:
    """With no test-set word in the vocabulary, correlations are absent rather than NaN."""
    words = [f"x{i}" for i in range(50)]
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    report = evaluate_vectors(vectors, words, EvalConfig())
    assert report["metrics"] == {"analogy": 0.0}
    assert report["similarity"]["wordsim353"]["spearman"] is None
    assert report["analogy"]["questions_words"]["oov_rate"] == 1.0
    json.dumps(report, allow_nan=False)


def _write_run(
    root: Path, words: list[str], vectors: np.ndarray, vocab_sha: str | None = None
) -> tuple[str, str]:
    vocab_uri, train_uri = str(root / "vocab"), str(root / "train")
    vocab = write_vocab(vocab_uri, words, np.arange(len(words), 0, -1))
    if vocab_sha:  # a train stage that claims another vocabulary
        vocab = dataclasses.replace(vocab, files=(dataclasses.replace(vocab.files[0], sha256=vocab_sha),))
    write_train(train_uri, vectors, vocab)
    return train_uri, vocab_uri


def test_evaluate_run_writes_report_json_and_markdown(tmp_path: Path, planted) -> None:
    words, vectors = planted
    train_uri, vocab_uri = _write_run(tmp_path, words, vectors)
    out = tmp_path / "eval"
    report = evaluate_run(train_uri, vocab_uri, EvalConfig(probes=("king",)), str(out))
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    markdown = (out / "report.md").read_text()
    assert "| analogy |" in markdown and "king" in markdown
    assert report["run"]["training"]["pairs_trained"] == 123
    assert report["vocab_size"] == len(words)


def test_evaluate_run_refuses_vectors_of_another_vocabulary(tmp_path: Path, planted) -> None:
    words, vectors = planted
    train_uri, vocab_uri = _write_run(tmp_path / "a", words, vectors, vocab_sha="0" * 64)
    with pytest.raises(ValueError, match="trained on vocabulary"):
        evaluate_run(train_uri, vocab_uri, EvalConfig(), str(tmp_path / "eval"))
    train_uri, vocab_uri = _write_run(tmp_path / "b", words, vectors[:-1])
    with pytest.raises(ValueError, match="rows but"):
        evaluate_run(train_uri, vocab_uri, EvalConfig(), str(tmp_path / "eval"))
    assert not (tmp_path / "eval" / "report.json").exists()
