"""The downstream example (docs/examples/downstream_classifier.py) runs against a published version.

Vectors are trained with gensim on the shipped sample corpus and published
through ``corpus2vec.model.registry.publish`` (seconds, instead of a full pipeline run);
the example then pulls them like a downstream team would.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLE_CORPUS
from tests.model.embedding_helpers import gensim_sample_table, publish_table

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "docs" / "examples" / "downstream_classifier.py"


def import_example() -> ModuleType:
    """The example as a module (docs/ is not a package; users run it as a script)."""
    spec = importlib.util.spec_from_file_location("downstream_classifier", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return import_example()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``sample@latest``: gensim CBOW on the sample corpus, tokenized like the pipeline, published."""
    root = tmp_path_factory.mktemp("downstream")
    words, counts, vectors = gensim_sample_table(seed=1, min_count=3)
    store = str(root / "store")
    publish_table(store, "sample", words, counts, vectors)
    return {"store": store, "cache": str(root / "cache")}


def test_labelling_rule_reads_the_head_noun(example: ModuleType) -> None:
    """The class comes from the last keyword of the defining phrase, not from any keyword in it."""
    label_of = example.label_of
    assert label_of("Koknoghin is a village in the Tenkodogo Department of Burkina Faso.") == "place"
    assert label_of("Māris Martinsons (born July 25, 1960) is a Latvian film director, producer.") == "person"
    assert label_of("Melody is the debut solo album by Sharleen Spiteri, lead singer of Texas.") == "work"
    assert label_of("Crematogaster aegyptiaca is an uncommon species of ant found in Egypt.") == "organism"
    assert label_of("Lengwe National Park is a national park in Malawi near the town of Chikwawa.") is None
    assert label_of("") is None


def test_keywords_are_masked_and_split_is_deterministic(example: ModuleType) -> None:
    articles = list(example.read_articles(SAMPLE_CORPUS))
    assert len(articles) > 1000 and {a.label for a in articles} == set(example.CLASSES)
    masked = {"village", "villages", "album", "species", "footballer", "cities"}
    assert not any(masked & set(a.tokens) for a in articles)
    train, test = example.split(articles, None, seed=0)
    assert {a.id for a in train}.isdisjoint(a.id for a in test)
    assert 0.15 < len(test) / len(articles) < 0.25
    assert example.split(articles, None, seed=7)[1] == test  # the test set does not depend on the seed
    few, _ = example.split(articles, 5, seed=0)
    assert sorted(a.label for a in few) == sorted(example.CLASSES * 5)


def test_pretrained_frozen_beats_majority_and_random_frozen(
    example: ModuleType, published: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2V_CACHE", published["cache"])
    result = example.run_example(published["store"], "sample@latest", seed=0, train_per_class=20)
    for key in example.VARIANTS:
        assert 0.0 <= result[key] <= 1.0, (key, result)
    assert result["train_size"] == 4 * 20
    # Measured (gensim 4.4, deterministic with one worker): frozen 0.872 (0.881, 0.878 at
    # seeds 1, 2), random frozen 0.690, majority 0.666. A random normal table published in
    # place of the trained vectors scores 0.678 frozen here (0.726, 0.751 at seeds 1, 2):
    # both checks below fail on it.
    assert result["pretrained_frozen"] > result["majority_baseline"] + 0.15, result
    # The word geometry is what helps: the same frozen setup on a random table does worse.
    assert result["pretrained_frozen"] > result["random_frozen"] + 0.07, result


def test_fine_tuning_keeps_the_padding_row_zero(
    example: ModuleType, published: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse fine-tuning moves the rows it saw and never the padding row."""
    from corpus2vec.model.pull import load

    monkeypatch.setenv("C2V_CACHE", published["cache"])
    articles = list(example.read_articles(SAMPLE_CORPUS))
    train_set, test_set = example.split(articles, 5, seed=0)
    table, word_to_row = load("sample@latest", published["store"]).to_torch(freeze=False)
    before = table.weight.detach().clone()
    train = example.encode(train_set, word_to_row, 1)
    example.train_and_score(table, train, example.encode(test_set, word_to_row, 1), seed=0, steps=20)
    after = table.weight.detach()
    assert not after[0].any()
    seen = train[0].unique()
    assert not np.allclose(after[seen[seen > 0]].numpy(), before[seen[seen > 0]].numpy())
    unseen = np.setdiff1d(np.arange(len(after)), seen.numpy())
    np.testing.assert_array_equal(after[unseen].numpy(), before[unseen].numpy())
