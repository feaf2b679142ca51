"""Transfer learning with pulled embeddings: a CBOW text classifier, three ways.

    python docs/examples/downstream_classifier.py --store ./c2v-store --ref enwiki-sample@latest \\
        [--train-per-class 5 20 all] [--seeds 3]

What a downstream team does with a published version: pull it, turn it into a
``torch.nn.Embedding`` and put a small model on top. The model here is the
classic CBOW classifier (mean of the word vectors of a document, normalised,
then one linear layer), trained three times on the same data, same vocabulary, same
seed and same optimiser settings, differing only in the embedding table:

* ``pretrained_frozen``: ``Embeddings.to_torch(freeze=True)``, only the linear layer learns;
* ``pretrained_finetuned``: ``to_torch(freeze=False)``, the table learns too;
* ``random_init``: a table of the same shape drawn at random (same scale), trained;

plus a control, ``random_frozen`` (that random table, frozen), which shows
what the linear layer achieves without any word geometry, and the
majority-class baseline (the share of the test set's most common class).

The task is labelled from real text by a deterministic rule, so it ships with
the project instead of needing a labelled download: each Wikipedia article of
the corpus (default: the shipped sample) gets a class from the *head noun of
its defining phrase*, the words after the first "is/was/are/were" of its first
sentence, up to a comma or a preposition ("X is a small village in ..."
-> "a small village" -> ``place``). The last word of that phrase found in
:data:`KEYWORDS` gives the class; articles with no keyword are dropped.
Taking the last keyword is what keeps "a Latvian film director" a person and
"the debut album by ... singer" a work. Every keyword (and its plural) is then
removed from the article's tokens, so the classifier cannot read the label off
the defining phrase and has to use the rest of the text ("born", "population",
"released", "larvae", ...), which is where pretrained vectors help.

Train/test split: an article is in the test set when the sha256 of its id is
0 mod 5 (about 20%), independent of file order and of the seed.
``train_per_class`` keeps only N training articles per class (chosen by a
seeded hash), the few-labels regime where pretraining is supposed to pay off.
Accuracies are measured once, after a fixed number of steps; nothing is tuned
on the test set. The embeddings were pretrained (without labels) on text that
includes these articles, as a team would pretrain on its own domain.

Importable: ``run_example(store, ref, seed) -> {"pretrained_frozen": ..., ...}``;
the command line prints a Markdown table, mean ± sd over seeds.
Needs torch and the corpus2vec package (the pull client and the pipeline's
tokenizer, so tokens match the published vocabulary).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from corpus2vec.jobs.tokenize import tokenize
from corpus2vec.model.pull import load

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CORPUS = ROOT / "flows" / "data" / "enwiki-2014-sample.jsonl.gz"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


CLASSES = ("place", "person", "organism", "work")
KEYWORDS: dict[str, frozenset[str]] = {
    "place": _words(
        "village town city municipality commune township hamlet suburb neighbourhood neighborhood "
        "settlement river lake island mountain"
    ),
    "person": _words(
        "footballer player politician artist musician actor actress singer songwriter rapper guitarist "
        "drummer bassist pianist composer writer author novelist poet journalist painter sculptor "
        "photographer director producer screenwriter architect scientist physicist chemist biologist "
        "mathematician economist historian philosopher engineer businessman businesswoman entrepreneur "
        "lawyer judge diplomat soldier officer athlete cyclist swimmer boxer wrestler cricketer coach "
        "manager bishop priest king queen prince princess"
    ),
    "organism": _words(
        "species subspecies genus family subfamily moth beetle snail spider butterfly fungus orchid "
        "frog lizard wasp"
    ),
    "work": _words(
        "album song single ep soundtrack film movie documentary novel novella book story poem play "
        "opera musical sitcom series game painting"
    ),
}
_CLASS_OF = {word: label for label, words in KEYWORDS.items() for word in words}
# A keyword, or a plural of one, anywhere in the article would give the label away.
_MASKED = (
    frozenset(_CLASS_OF)
    | {w + "s" for w in _CLASS_OF}
    | {w + "es" for w in _CLASS_OF}
    | {
        "cities",
        "species",
        "families",
        "subfamilies",
        "stories",
        "butterflies",
        "fungi",
        "genera",
        "businessmen",
        "businesswomen",
    }
)
# Words that end the defining noun phrase ("a village IN ...", "an album BY ...").
_STOPS = _words(
    "by in of from who which that for on at with and or located based released directed written "
    "known born to whose where since about between near"
)
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]\"'])\.(?=\s+[A-Z\"“(]|\s*$)")
_PARENTHESES = re.compile(r"\([^()]*\)")
_COPULA = re.compile(r"\b(?:is|was|are|were)\b")
_CLAUSE_END = re.compile(r"[,;:–—]")


@dataclass(frozen=True)
class Article:
    """One labelled example: the article id (for the split), its masked tokens and its class."""

    id: str
    tokens: tuple[str, ...]
    label: str


def defining_phrase(text: str) -> list[str]:
    """Tokens after the first copula of the first sentence, up to a comma or a stop word.

    Parentheses are dropped first: "X (born 1960) is ..." must find "is",
    not a copula inside the brackets.
    """
    first_line = text.strip().split("\n", 1)[0]
    sentence = _SENTENCE_END.split(first_line, maxsplit=1)[0]
    sentence = _PARENTHESES.sub(" ", _PARENTHESES.sub(" ", sentence))  # one level of nesting
    copula = _COPULA.search(sentence)
    if copula is None:
        return []
    clause = _CLAUSE_END.split(sentence[copula.end() :], maxsplit=1)[0]
    phrase: list[str] = []
    for token in tokenize(clause):
        if token in _STOPS:
            break
        phrase.append(token)
    return phrase


def label_of(text: str) -> str | None:
    """The class of the last keyword in the defining phrase (English puts the head noun last), or None."""
    hits = [_CLASS_OF[t] for t in defining_phrase(text) if t in _CLASS_OF]
    return hits[-1] if hits else None


def read_articles(corpus: Path, max_tokens: int = 256) -> Iterator[Article]:
    """Labelled articles of a JSON-lines corpus (``id``, ``text``), keywords masked, truncated."""
    with gzip.open(corpus, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            label = label_of(record["text"])
            if label is None:
                continue
            tokens = tuple(t for t in tokenize(record["text"]) if t not in _MASKED)[:max_tokens]
            if tokens:
                yield Article(str(record["id"]), tokens, label)


def is_test(article_id: str) -> bool:
    """The deterministic 20% test split: by a hash of the id, not by position or seed."""
    return hashlib.sha256(article_id.encode()).digest()[0] % 5 == 0


def encode(
    articles: list[Article], word_to_row: dict[str, int], unknown_row: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ids padded with 0 (the padding row) to the longest article, and class ids."""
    width = max(len(a.tokens) for a in articles)
    ids = torch.zeros((len(articles), width), dtype=torch.long)
    for i, article in enumerate(articles):
        rows = [word_to_row.get(t, unknown_row) for t in article.tokens]
        ids[i, : len(rows)] = torch.tensor(rows, dtype=torch.long)
    labels = torch.tensor([CLASSES.index(a.label) for a in articles], dtype=torch.long)
    return ids, labels


class CBOWClassifier(nn.Module):
    """Mean of the document's word vectors (padding excluded), layer-normalised, then one linear layer.

    The normalisation (no learned parameters) removes the scale and offset of
    the mean vector: SGNS vectors share a large common direction and differ in
    length with frequency, and without it a frozen table would need another
    learning rate than a trained one.
    """

    def __init__(self, embedding: nn.Embedding, num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.out = nn.Linear(embedding.embedding_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # embedding_bag averages without materialising a (batch, length, dim) tensor;
        # padding_idx=0 leaves the padding out of the mean. A trainable table gets a
        # sparse gradient: a batch touches a few thousand rows of a possibly huge table.
        weight = self.embedding.weight
        mean = nn.functional.embedding_bag(
            ids, weight, mode="mean", padding_idx=0, sparse=weight.requires_grad
        )
        return self.out(nn.functional.layer_norm(mean, mean.shape[-1:]))


def random_like(pretrained: nn.Embedding, seed: int, freeze: bool = False) -> nn.Embedding:
    """A table of the same shape and scale as ``pretrained``, drawn at random (row 0 stays padding).

    Same scale matters: a table 100x larger or smaller would need another
    learning rate, and the comparison would be about tuning, not pretraining.
    """
    weights = pretrained.weight.detach()
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(weights.shape, generator=generator) * weights[1:].std()
    table[0] = 0.0
    return nn.Embedding.from_pretrained(table, freeze=freeze, padding_idx=0)


def train_and_score(
    embedding: nn.Embedding,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    steps: int = 300,
    lr: float = 0.01,
    batch_size: int = 32,
) -> float:
    """Train a :class:`CBOWClassifier` with Adam for ``steps`` batches; return its test accuracy.

    A fixed number of steps (not epochs) gives every training-set size the same
    compute, so small and large sets are compared on data, not on updates.
    A trainable table is updated by ``SparseAdam`` (lazy: only the rows a
    batch touched), since dense Adam would rewrite every row of a (possibly
    million-word) table on every step.
    """
    torch.manual_seed(seed)
    model = CBOWClassifier(embedding, len(CLASSES))
    optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(model.out.parameters(), lr=lr)]
    if embedding.weight.requires_grad:
        optimizers.append(torch.optim.SparseAdam([embedding.weight], lr=lr))
    generator = torch.Generator().manual_seed(seed)
    ids, labels = train
    batches: list[torch.Tensor] = []
    model.train()
    for _ in range(steps):
        if not batches:  # a new epoch: reshuffle
            batches = list(torch.randperm(len(ids), generator=generator).split(batch_size))
        batch = batches.pop()
        for optimizer in optimizers:
            optimizer.zero_grad()
        nn.functional.cross_entropy(model(ids[batch]), labels[batch]).backward()
        for optimizer in optimizers:
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(test[0]).argmax(dim=1)
    return float((predicted == test[1]).float().mean())


def split(
    articles: list[Article], train_per_class: int | None, seed: int
) -> tuple[list[Article], list[Article]]:
    """(train, test): the hash split, then at most ``train_per_class`` training articles per class.

    The subset is chosen by a seeded hash of the id, so each seed sees another
    small training set and the spread over seeds is honest.
    """
    test = [a for a in articles if is_test(a.id)]
    train = [a for a in articles if not is_test(a.id)]
    if train_per_class is not None:
        ranked = sorted(train, key=lambda a: hashlib.sha256(f"{seed}:{a.id}".encode()).digest())
        taken: Counter[str] = Counter()
        train = []
        for article in ranked:
            if taken[article.label] < train_per_class:
                taken[article.label] += 1
                train.append(article)
    if not train or not test:
        raise ValueError(f"only {len(articles)} labelled articles: too few for a train/test split")
    return train, test


def run_example(
    store: str,
    ref: str,
    seed: int = 0,
    corpus: str | Path = SAMPLE_CORPUS,
    train_per_class: int | None = None,
    steps: int = 300,
) -> dict[str, float]:
    """Test accuracies of the three variants, plus the majority-class baseline and the data sizes.

    Keys: ``pretrained_frozen``, ``pretrained_finetuned``, ``random_init``,
    ``random_frozen`` (a control: a frozen random table, so only the linear
    layer learns, as with ``pretrained_frozen``), ``majority_baseline``
    (accuracies in 0..1), ``train_size``, ``test_size``.
    ``train_per_class`` caps the labelled training articles per class (None:
    all of them), for the few-labels regime where pretraining matters most.
    """
    embeddings = load(ref, store)
    train_set, test_set = split(list(read_articles(Path(corpus))), train_per_class, seed)
    frozen, word_to_row = embeddings.to_torch(freeze=True)
    finetuned, _ = embeddings.to_torch(freeze=False)
    unknown_row = 1  # to_torch: row 0 is padding, row 1 the unknown-word (mean) vector
    train, test = encode(train_set, word_to_row, unknown_row), encode(test_set, word_to_row, unknown_row)
    # The best constant guess on the test set itself: a stricter bar than the training majority.
    majority = Counter(a.label for a in test_set).most_common(1)[0][1] / len(test_set)
    return {
        "pretrained_frozen": train_and_score(frozen, train, test, seed, steps),
        "pretrained_finetuned": train_and_score(finetuned, train, test, seed, steps),
        "random_init": train_and_score(random_like(frozen, seed), train, test, seed, steps),
        "random_frozen": train_and_score(random_like(frozen, seed, freeze=True), train, test, seed, steps),
        "majority_baseline": majority,
        "train_size": float(len(train_set)),
        "test_size": float(len(test_set)),
    }


VARIANTS = ("majority_baseline", "random_frozen", "random_init", "pretrained_frozen", "pretrained_finetuned")


def summarise(results: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and population standard deviation of each key over seeds."""
    out = {}
    for key in results[0]:
        values = torch.tensor([r[key] for r in results], dtype=torch.float64)
        out[key] = (float(values.mean()), float(values.std(unbiased=False)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="CBOW classifier on pulled embeddings: frozen, fine-tuned, random; prints a Markdown table."
    )
    parser.add_argument("--store", required=True, help="store root (folder or s3://bucket/prefix)")
    parser.add_argument("--ref", required=True, help="NAME@VERSION or NAME@latest")
    parser.add_argument(
        "--train-per-class",
        nargs="+",
        default=["5", "20", "all"],
        help="labelled training articles per class, one table row each ('all': every training article)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per row; mean ± sd is printed")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of 32 articles per variant")
    parser.add_argument("--corpus", type=Path, default=SAMPLE_CORPUS, help="JSON-lines articles to label")
    args = parser.parse_args(argv)
    sizes = [None if n == "all" else int(n) for n in args.train_per_class]
    print(f"{args.ref} from {args.store}; test accuracy, mean ± sd over {args.seeds} seed(s)\n")
    print("| labelled per class | train articles | " + " | ".join(VARIANTS) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in VARIANTS) + " |")
    for size in sizes:
        runs = [
            run_example(args.store, args.ref, seed, args.corpus, size, args.steps)
            for seed in range(args.seeds)
        ]
        stats = summarise(runs)
        cells = " | ".join(f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}" for k in VARIANTS)
        print(f"| {size or 'all'} | {int(stats['train_size'][0])} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
