"""Typed config: presets, overrides, validation and the fingerprint that keys runs."""

from __future__ import annotations

import pytest

from corpus2vec.model.config import PRESETS, PipelineConfig, load_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_loads_and_round_trips(preset: str) -> None:
    cfg = load_config(preset)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.preset == preset


def test_bench_preset_is_the_reference_setting() -> None:
    cfg = load_config("bench")
    assert (cfg.train.vector_size, cfg.pairs.window, cfg.pairs.negative) == (100, 5, 5)
    assert (cfg.pairs.sample, cfg.vocab.min_count, cfg.train.epochs) == (1e-4, 5, 3)
    assert (cfg.train.alpha, cfg.train.min_alpha) == (0.05, 0.0001)  # gensim: 0.025 (learning_rate.md)


def test_bare_names_set_every_section_that_has_them() -> None:
    cfg = load_config("tiny", ["seed=7", "epochs=2", "pairs.sample=1e-5", "probes=king,queen"])
    assert cfg.pairs.seed == cfg.train.seed == 7
    assert cfg.train.epochs == 2
    assert cfg.pairs.sample == 1e-5
    assert cfg.eval.probes == ("king", "queen")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bogus=1", "unknown setting 'bogus'"),
        ("train.bogus=1", "unknown setting 'train.bogus'"),
        ("nosection.epochs=1", "unknown config section"),
        ("epochs", "is not key=value"),
        ("epochs=two", "train.epochs must be int"),
        ("min_count=0", "vocab.min_count must be >= 1"),
        ("output=both", "must be one of"),
        ("min_alpha=0.5", "min_alpha <= alpha"),
        ("input_word=target", "pairs.input_word must be one of centre, context"),
        ("reader_threads=-1", "train.reader_threads must be >= 0"),
    ],
)
def test_bad_overrides_say_what_to_change(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config("tiny", [override])


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="bench, tiny, web"):
        load_config("huge")


def test_fingerprint_depends_only_on_the_named_sections() -> None:
    base = load_config("tiny")
    other_eval = load_config("tiny", ["restrict_vocab=100"])
    other_train = load_config("tiny", ["epochs=9"])
    assert base.fingerprint("train") == other_eval.fingerprint("train")
    assert base.fingerprint("train") != other_train.fingerprint("train")
    assert base.fingerprint() != other_eval.fingerprint()
