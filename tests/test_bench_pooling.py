"""``scale_quality.py --combine --pool-draws``: the arithmetic behind the pooled gap to gensim.

The whole-corpus WordSim353 claim in docs/bench/whole_corpus_draws.md rests on pooling runs of
several pair draws that reuse seeds, some rows copied from report to report. A copy counted
twice, or a reused seed taken for a clash, would change the band the claim is judged by.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent / "bench" / "scale_quality.py"


def _row(run: str, seed: int, wordsim: float, system: str = "corpus2vec") -> dict[str, Any]:
    return {
        "size": "all",
        "system": system,
        "run": run,
        "seed": seed,
        "analogy": 0.40,
        "wordsim353": wordsim,
        "simlex999": 0.28,
        "pairs": 1000,
    }


def _report(
    path: Path,
    rows: list[dict[str, Any]],
    sets: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """A scale_quality.py report; without ``config``, one from before configurations were recorded."""
    report: dict[str, Any] = {"machine": "test", "sets": sets or [], "prepared": {}, "rows": rows}
    if config is not None:
        report["config"] = config
    path.write_text(json.dumps(report))
    return str(path)


def _combine(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--combine", *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )


def test_pooled_draws_count_reused_seeds_and_copied_rows_once(tmp_path: Path) -> None:
    g = "gensim 4.4, 2 workers, sentences"
    first = _report(
        tmp_path / "a.json",
        [
            _row(g, 3, 0.650, "gensim"),
            _row(g, 4, 0.660, "gensim"),
            _row("nproc=1", 3, 0.640),
            _row("nproc=1", 4, 0.644),
        ],
    )
    # a second draw reusing seeds 3 and 4, carrying draw one's seed-4 row over as --append would
    second = _report(
        tmp_path / "b.json",
        [_row(g, 3, 0.648, "gensim"), _row("nproc=1", 3, 0.630), _row("nproc=1", 4, 0.644)],
    )

    refused = _combine(tmp_path, first, second)
    assert refused.returncode != 0 and "--pool-draws" in refused.stderr

    pooled = _combine(tmp_path, first, second, "--pool-draws")
    assert pooled.returncode == 0, pooled.stderr
    assert "counted once" in pooled.stderr
    report = json.loads((tmp_path / "out" / "scale_quality.json").read_text())
    ours = next(s for s in report["summary"] if s["run"] == "corpus2vec nproc=1")
    gensim = next(s for s in report["summary"] if s["run"] == g)
    assert (ours["seeds"], gensim["seeds"]) == (3, 3)
    assert abs(ours["wordsim353"] - (0.640 + 0.644 + 0.630) / 3) < 1e-12
    gap = ours["vs_gensim"]
    assert abs(gap["wordsim353"] - ((0.640 + 0.644 + 0.630) - (0.650 + 0.660 + 0.648)) / 3) < 1e-12
    assert gap["wordsim353_2se"] is not None and gap["wordsim353_2se"] > 0
    assert "Pooled over 2 pair draws" in (tmp_path / "out" / "scale_quality.md").read_text()


def test_pool_draws_needs_combine(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--pool-draws", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "only apply to --combine" in result.stderr


def test_tag_sets_puts_variants_side_by_side_against_one_gensim(tmp_path: Path) -> None:
    """Reports made with other --set overrides are refused unless tagged; tagged, each variant is its
    own run and gensim (which does not read pairs.input_word) pools; a setting gensim reads tags it too."""
    g = "gensim 4.4, 2 workers, sentences"
    default = _report(tmp_path / "a.json", [_row(g, 3, 0.650, "gensim"), _row("nproc=1", 3, 0.640)])
    roles = _report(
        tmp_path / "b.json",
        [_row(g, 4, 0.660, "gensim"), _row("nproc=1", 4, 0.650)],
        ["input_word=context"],
    )
    refused = _combine(tmp_path, default, roles)
    assert refused.returncode != 0 and "--tag-sets" in refused.stderr

    tagged = _combine(tmp_path, default, roles, "--tag-sets")
    assert tagged.returncode == 0, tagged.stderr
    summary = json.loads((tmp_path / "out" / "scale_quality.json").read_text())["summary"]
    runs = {s["run"]: s for s in summary}
    assert runs[g]["seeds"] == 2
    variant = runs["corpus2vec nproc=1 [input_word=context]"]
    assert variant["seeds"] == 1 and variant["wordsim353"] == 0.650
    assert runs["corpus2vec nproc=1"]["wordsim353"] == 0.640

    window = _report(
        tmp_path / "c.json", [_row(g, 4, 0.600, "gensim"), _row("nproc=1", 4, 0.620)], ["pairs.window=10"]
    )
    assert _combine(tmp_path, default, window, "--tag-sets").returncode == 0
    runs = {s["run"] for s in json.loads((tmp_path / "out" / "scale_quality.json").read_text())["summary"]}
    assert {g, f"{g} [pairs.window=10]", "corpus2vec nproc=1 [pairs.window=10]"} <= runs


def _report_of(path: Path, rows: list[dict[str, Any]], sets: list[str]) -> str:
    """A report as scale_quality.py writes it now: with the resolved configuration it trained."""
    from corpus2vec.model.config import load_config

    return _report(path, rows, sets, load_config("bench", sets).to_dict())


def test_reports_compare_by_resolved_configuration_not_by_how_set_spelled_it(tmp_path: Path) -> None:
    """Naming today's default with --set trains what leaving it out trains: the two pool without
    --tag-sets, as does a setting that changes no result; another role is refused untagged and,
    tagged, each side is labelled with its value of the one setting that differs."""
    g = "gensim 4.4, 2 workers, sentences"
    plain = _report_of(tmp_path / "a.json", [_row(g, 3, 0.650, "gensim"), _row("nproc=1", 3, 0.640)], [])
    spelled = _report_of(
        tmp_path / "b.json", [_row(g, 4, 0.660, "gensim"), _row("nproc=1", 4, 0.646)], ["input_word=context"]
    )
    threads = _report_of(
        tmp_path / "c.json",
        [_row(g, 5, 0.655, "gensim"), _row("nproc=1", 5, 0.642)],
        ["train.reader_threads=3"],
    )
    pooled = _combine(tmp_path, plain, spelled, threads)
    assert pooled.returncode == 0, pooled.stderr
    report = json.loads((tmp_path / "out" / "scale_quality.json").read_text())
    runs = {s["run"]: s for s in report["summary"]}
    assert runs["corpus2vec nproc=1"]["seeds"] == 3 and runs[g]["seeds"] == 3
    assert report["config"]["pairs"]["input_word"] == "context"

    centre = _report_of(
        tmp_path / "d.json", [_row(g, 6, 0.640, "gensim"), _row("nproc=1", 6, 0.630)], ["input_word=centre"]
    )
    refused = _combine(tmp_path, plain, centre)
    assert refused.returncode != 0
    assert "pairs.input_word=centre" in refused.stderr and "--tag-sets" in refused.stderr

    tagged = _combine(tmp_path, plain, spelled, centre, "--tag-sets")
    assert tagged.returncode == 0, tagged.stderr
    report = json.loads((tmp_path / "out" / "scale_quality.json").read_text())
    runs = {s["run"]: s for s in report["summary"]}
    assert runs["corpus2vec nproc=1 [pairs.input_word=context]"]["seeds"] == 2
    assert runs["corpus2vec nproc=1 [pairs.input_word=centre]"]["wordsim353"] == 0.630
    assert runs[g]["seeds"] == 3  # gensim does not read input_word: one pool
    assert report["config"] is None

    window = _report_of(
        tmp_path / "e.json", [_row(g, 7, 0.600, "gensim"), _row("nproc=1", 7, 0.620)], ["pairs.window=10"]
    )
    assert _combine(tmp_path, plain, window, "--tag-sets").returncode == 0
    runs = {s["run"] for s in json.loads((tmp_path / "out" / "scale_quality.json").read_text())["summary"]}
    assert {f"{g} [pairs.window=5]", f"{g} [pairs.window=10]", "corpus2vec nproc=1 [pairs.window=10]"} <= runs
