"""Health checks that stop collapsed vectors at the quality gate, whatever the gate's floors say.

Why a separate check: the gate's user floors default to "anything goes"
(``min_analogy 0.0``) and its regression check needs a parent, so a first version
or a store whose parent also collapsed published vectors that had diverged
(analogy 0.0-0.1%, WordSim353 around 0, loss rising from 3.6 to 123). Three
signals catch that without any tuning by the user:

* every value of the table is finite;
* training made progress: the last epoch's mean loss is below the first's (with
  one epoch, the last tenth of the loss curve against the first tenth) and below
  ``(1+K)·ln 2``, the loss of untrained (near-zero) vectors with K negatives: a run
  that diverged to a loss of 1e25 and then fell to 3e23 passes the first test only;
* the evaluation is not far below what the corpus size predicts
  (:data:`CORPUS_FLOORS`, about a third of what the bench preset reaches at that
  size; a floor is skipped when over 60% of its test set is out of vocabulary, e.g.
  a non-English corpus, where the English test sets say nothing).

Each check is recorded, passed or not, in the shape the registry's gate records
its own checks, so the manifest shows what was looked at.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# (corpus tokens at least, analogy floor, WordSim353 floor). Measured with the bench preset
# (d=100, 3 epochs) on prefixes of the dev corpus: 2M words 2.9-4.8% / 0.28-0.29, 10M 20-22% /
# 0.54-0.57, 25M 35% / 0.59-0.61; collapsed runs 0.0-0.1% / -0.05..0.04. The shipped 730k-word
# sample (tiny preset) reaches 0.17-0.22 WordSim353.
CORPUS_FLOORS: tuple[tuple[int, float, float], ...] = (
    (20_000_000, 0.10, 0.30),
    (5_000_000, 0.03, 0.20),
    (500_000, 0.0, 0.08),
)
MAX_OOV_FOR_FLOOR = 0.6
ADVICE = (
    "the vectors look collapsed; check the training log for a rising loss, then try a smaller "
    "train.alpha, train.row_step_limit=1 on the torch kernel, or the default sync_average"
)


def health_checks(
    vectors: np.ndarray, train_metrics: dict[str, Any], total_tokens: int | None, report: dict[str, Any]
) -> dict[str, Any]:
    """``{"passed", "reasons", "checks"}`` for one trained table and its evaluation report."""
    checks = [_finite(vectors), _loss_fell(train_metrics), *_corpus_floors(total_tokens, report)]
    reasons = [c["message"] for c in checks if not c["ok"]]
    return {
        "passed": not reasons,
        "reasons": reasons,
        "checks": checks,
        "advice": ADVICE if reasons else None,
    }


def _finite(vectors: np.ndarray) -> dict[str, Any]:
    bad = 0
    for start in range(0, len(vectors), 65536):  # a memory-mapped table is read block by block
        bad += int((~np.isfinite(vectors[start : start + 65536])).sum())
    return _check(
        "health:finite", bad, 0, bad == 0, f"{bad} non-finite values in the vectors (training diverged)"
    )


def _loss_fell(metrics: dict[str, Any]) -> dict[str, Any]:
    """Last epoch's loss below the first's; with one epoch, the curve's last tenth below its first."""
    first, last = _loss_ends(metrics)
    if first is None or last is None:
        return _check("health:loss", None, None, True, "")
    negative = metrics.get("negative")
    untrained = (1 + negative) * math.log(2) if isinstance(negative, int) and negative >= 0 else math.inf
    limit = min(first, untrained)
    ok = bool(np.isfinite(last) and last < limit)
    message = f"the training loss did not fall (first {first:.4f}, last {last:.4f})"
    if np.isfinite(last) and last < first:
        message = (
            f"the training loss did not fall below what untrained vectors score: it ended at "
            f"{last:.4g}, above (1+K)·ln 2 = {untrained:.4f}"
        )
    return _check("health:loss", last, limit, ok, message)


def _loss_ends(metrics: dict[str, Any]) -> tuple[float | None, float | None]:
    epochs = [float(x) for x in metrics.get("epoch_loss") or [] if x is not None]
    if len(epochs) >= 2:
        return epochs[0], epochs[-1]
    curve = [float(p["loss"]) for p in metrics.get("loss_curve") or [] if p.get("loss") is not None]
    if len(curve) < 10:
        return None, None
    tenth = len(curve) // 10
    return float(np.mean(curve[:tenth])), float(np.mean(curve[-tenth:]))


def _corpus_floors(total_tokens: int | None, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Analogy and WordSim353 floors for the corpus size; skipped for mostly-OOV test sets."""
    floors = next(((a, w) for size, a, w in CORPUS_FLOORS if (total_tokens or 0) >= size), None)
    if floors is None:
        return []
    metrics = report.get("metrics", {})
    analogy_oov = report.get("analogy", {}).get("questions_words", {}).get("oov_rate", 1.0)
    wordsim_oov = report.get("similarity", {}).get("wordsim353", {}).get("oov_rate", 1.0)
    out = []
    for key, floor, oov in (("analogy", floors[0], analogy_oov), ("wordsim353", floors[1], wordsim_oov)):
        value = metrics.get(key)
        if floor <= 0 or value is None or oov > MAX_OOV_FOR_FLOOR:
            continue
        out.append(
            _check(
                f"health:{key}",
                value,
                floor,
                value >= floor,
                f"{key} {value:.4f} is far below what {total_tokens:,} corpus tokens give (floor {floor})",
            )
        )
    return out


def _check(name: str, value: Any, limit: Any, ok: bool, message: str) -> dict[str, Any]:
    return {"check": name, "value": value, "limit": limit, "ok": bool(ok), "message": message}
