"""Issue 13, stages: an output folder without a manifest loses only what the stage itself
writes, inputs are checked before the output is touched, and a foreign folder is refused whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from corpus2vec.model import storage
from corpus2vec.model.config import CorpusConfig, VocabConfig
from corpus2vec.model.contracts import Tokens


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _someones_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    (folder / "figures").mkdir(parents=True)
    (folder / "draft.tex").write_text("chapter one\n")
    (folder / "figures" / "plot.png").write_bytes(b"\x89PNG")
    (folder / "part-00000.parquet").write_bytes(b"looks like ours")
    return folder


def _empty_tokens_stage(uri: str) -> Tokens:
    """A finished tokens stage that lists no parts (enough for count to get to its output)."""
    return Tokens(
        files=(),
        key="",
        input_files=0,
        inputs=[],
        inputs_sha256=hashlib.sha256(b"").hexdigest(),
        documents=0,
        sentences=0,
        tokens=0,
        duplicates_removed=0,
        short_documents=0,
        records_skipped=0,
        decode_errors=0,
        filtered_language=0,
        rejected_files=0,
        rejects=[],
        bad_fraction=0.0,
        num_parts=0,
        config={},
    ).write(uri)


def test_a_mistyped_corpus_path_deletes_nothing(spark, tmp_path: Path) -> None:
    from corpus2vec.jobs.tokenize import run_tokenize

    out = _someones_folder(tmp_path)
    before = _snapshot(out)
    with pytest.raises(ValueError, match="does not exist"):
        run_tokenize(spark, [str(tmp_path / "corpsu.jsonl")], str(out), CorpusConfig())
    assert _snapshot(out) == before


def test_tokenize_refuses_an_output_folder_it_did_not_write(
    spark, small_corpus: Path, tmp_path: Path
) -> None:
    from corpus2vec.jobs.tokenize import run_tokenize

    out = _someones_folder(tmp_path)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"holds files this stage did not write \(draft\.tex, figures\)"):
        run_tokenize(spark, [str(small_corpus)], str(out), CorpusConfig(num_parts=1))
    assert _snapshot(out) == before


def test_count_refuses_an_output_folder_it_did_not_write(spark, tmp_path: Path) -> None:
    from corpus2vec.jobs.count import run_count

    tokens = tmp_path / "tokens"
    tokens.mkdir()
    _empty_tokens_stage(str(tokens))
    out = _someones_folder(tmp_path)
    before = _snapshot(out)
    with pytest.raises(ValueError, match="nothing was deleted"):
        run_count(spark, str(tokens), str(out), VocabConfig())
    assert _snapshot(out) == before


def test_leftovers_of_a_killed_run_are_cleared_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    (out / "draw-01").mkdir(parents=True)
    for name in ("part-00000.parquet", ".tmp-abc-part-00001.parquet", "draw-01/part-00000.parquet"):
        (out / name).write_bytes(b"partial")
    storage.clear_unfinished(str(out))
    assert out.is_dir() and not any(out.iterdir())
    (out / "draw-01").mkdir()
    (out / "draw-01" / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"did not write \(draw-01\)"):
        storage.clear_unfinished(str(out))
    assert (out / "draw-01" / "notes.txt").read_text() == "mine\n"
    storage.clear_unfinished(str(tmp_path / "absent"))  # nothing there: nothing to do


def test_clearing_on_s3_follows_the_same_rule(s3_bucket: str) -> None:
    out = f"{s3_bucket}/runs/r/tokens"
    fs, _ = storage.get_fs(out)
    fs.pipe_file(f"{out}/part-00000.parquet".removeprefix("s3://"), b"partial")
    storage.clear_unfinished(out)
    assert not fs.exists(f"{out}/part-00000.parquet".removeprefix("s3://"))
    fs.pipe_file(f"{out}/report.pdf".removeprefix("s3://"), b"someone's")
    with pytest.raises(ValueError, match=r"report\.pdf"):
        storage.clear_unfinished(out)
    assert fs.cat(f"{out}/report.pdf".removeprefix("s3://")) == b"someone's"


@pytest.mark.parametrize("job", ["tokenize", "count", "pairs"])
def test_a_bad_set_on_a_job_cli_is_one_line_and_exit_2(
    job: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    module = importlib.import_module(f"corpus2vec.jobs.{job}")
    inputs = {
        "tokenize": ["corpus.txt"],
        "count": ["--tokens", "t"],
        "pairs": ["--tokens", "t", "--vocab", "v"],
    }
    code = module.main([*inputs[job], "--out", str(tmp_path / "o"), "--set", "epochs=abc"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: config.train.epochs must be int, got 'abc'", err
