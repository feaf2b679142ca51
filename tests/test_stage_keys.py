"""Stages keyed by their own inputs: what each setting re-runs, and the input fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus2vec.flows import stages
from corpus2vec.model.config import load_config

INPUTS = {"files": [], "sha256": "0" * 64}


def _changed(*overrides: str, inputs: dict = INPUTS) -> list[str]:
    base = stages.stage_keys(INPUTS, load_config("tiny", []))
    other = stages.stage_keys(inputs, load_config("tiny", list(overrides)))
    return [s for s in stages.STAGES if base[s] != other[s]]


@pytest.mark.parametrize(
    ("overrides", "rerun"),
    [
        ((), []),
        (("vector_size=60",), ["train", "eval"]),
        (("nproc=1",), ["train", "eval"]),
        (("min_count=4",), ["vocab", "pairs", "train", "eval"]),
        (("window=3",), ["pairs", "train", "eval"]),
        (("epochs=5",), ["pairs", "train", "eval"]),  # one draw per epoch by default
        (("epochs=5", "draws=3"), ["train", "eval"]),  # the draw count is what pairs depends on
        (("lowercase=false",), ["tokens", "vocab", "pairs", "train", "eval"]),
        (("min_analogy=0.5",), ["eval"]),  # a gate setting re-evaluates (seconds), never retrains
        (("align_to_parent=false",), []),  # publish settings key no stage
        (("reader_threads=4",), []),  # how fast shards are read, never what is trained
    ],
)
def test_each_setting_reruns_its_stage_and_those_below(overrides: tuple[str, ...], rerun: list[str]) -> None:
    assert _changed(*overrides) == rerun


def test_new_inputs_rerun_everything() -> None:
    assert _changed(inputs={"files": [], "sha256": "1" * 64}) == list(stages.STAGES)


def test_a_layout_puts_each_stage_under_its_own_key(tmp_path: Path) -> None:
    cfg = load_config("tiny", [])
    layout = stages.layout_for(str(tmp_path), INPUTS, cfg)
    assert layout.stage("vocab") == f"{tmp_path}/stages/vocab/{layout.keys['vocab']}"
    assert layout.run_id == layout.keys["eval"] and len(set(layout.keys.values())) == 5


def _corpus_folder(root: Path, files: int) -> list[str]:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"part-{i:03d}.txt").write_text("word " * (i + 1))
    return [str(root)]


def test_the_fingerprint_from_listings_equals_the_one_from_each_file(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config("tiny", [])
    corpus = _corpus_folder(tmp_path / "c", 20)
    listed = stages.fingerprint_inputs(corpus, cfg)
    monkeypatch.setattr(stages, "LIST_MIN_FILES", 10**9)  # every file by its own metadata request
    one_by_one = stages.fingerprint_inputs(corpus, cfg)
    assert listed == one_by_one and len(listed["files"]) == 20
    (tmp_path / "c" / "part-007.txt").write_text("changed")
    assert stages.fingerprint_inputs(corpus, cfg)["sha256"] != listed["sha256"]


def test_the_fingerprint_on_s3_lists_folders_and_matches_per_file_requests(
    s3_bucket: str, monkeypatch
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    urls = [f"{s3_bucket}/wet/seg-{i % 2}/part-{i:03d}.gz" for i in range(30)] + [f"{s3_bucket}/lone/x.gz"]
    for i, url in enumerate(urls):
        fs.pipe_file(url.removeprefix("s3://"), b"x" * (i + 1))
    fs.pipe_file(f"{s3_bucket.removeprefix('s3://')}/wet.paths", "\n".join(urls).encode())
    cfg = load_config("tiny", [])
    listed = stages.fingerprint_inputs([f"{s3_bucket}/wet.paths"], cfg)
    monkeypatch.setattr(stages, "LIST_MIN_FILES", 10**9)
    assert stages.fingerprint_inputs([f"{s3_bucket}/wet.paths"], cfg) == listed
    assert [e["size"] for e in listed["files"]] == [i + 1 for i in sorted(range(31), key=lambda i: urls[i])]
