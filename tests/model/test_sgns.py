"""The SGNS loss, its gradients and both update kernels against hand-computed and autograd results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from corpus2vec.model.sgns import SGNS, init_tables, sgns_loss, torch_sgd_step
from tests.model.pairs_fixtures import group_separation, one_torch_thread  # noqa: F401 - fixture


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _tables(vocab: int = 6, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    v = torch.from_numpy(rng.normal(0, 0.5, (vocab, dim)).astype(np.float32))
    u = torch.from_numpy(rng.normal(0, 0.5, (vocab, dim)).astype(np.float32))
    return v, u


def _ids(*values: list[int]) -> list[torch.Tensor]:
    return [torch.tensor(v, dtype=torch.long) for v in values]


def test_loss_and_gradients_match_a_hand_computed_case() -> None:
    v = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    u = torch.tensor([[0.0, 0.0], [0.5, 1.0], [-1.0, 2.0]], requires_grad=True)
    center, context, negatives = _ids([0], [1], [[2]])
    loss = sgns_loss(v, u, center, context, negatives)
    loss.backward()
    # scores: u_1·v_0 = 0.5 (positive), u_2·v_0 = -1.0 (negative)
    assert loss.item() == pytest.approx(-math.log(_sig(0.5)) - math.log(_sig(1.0)), rel=1e-6)
    g_pos, g_neg = 1 - _sig(0.5), _sig(-1.0)
    expected_v0 = [-g_pos * 0.5 + g_neg * -1.0, -g_pos * 1.0 + g_neg * 2.0]
    assert v.grad[0].tolist() == pytest.approx(expected_v0, rel=1e-6)
    assert u.grad[1].tolist() == pytest.approx([-g_pos, 0.0], abs=1e-7)
    assert u.grad[2].tolist() == pytest.approx([g_neg, 0.0], abs=1e-7)
    assert v.grad[1:].abs().sum() == 0 and u.grad[0].abs().sum() == 0


def _autograd_step(v, u, center, context, negatives, lr):
    vg, ug = v.clone().requires_grad_(), u.clone().requires_grad_()
    sgns_loss(vg, ug, center, context, negatives).backward()
    return (v - lr * vg.grad).numpy(), (u - lr * ug.grad).numpy()


def test_numba_kernel_step_equals_the_analytical_sgd_step() -> None:
    v, u = _tables()
    center, context, negatives = _ids([1], [2], [[3, 4, 5]])
    want_v, want_u = _autograd_step(v, u, center, context, negatives, lr=0.1)
    model = SGNS(v.clone(), u.clone(), kernel="numba")
    loss = model.train_batch(
        *(t.numpy().astype(np.int32) for t in (center, context, negatives)), lr_start=0.1, lr_step=0.0
    )
    assert loss == pytest.approx(sgns_loss(v, u, center, context, negatives).item(), rel=1e-5)
    np.testing.assert_allclose(model.v.numpy(), want_v, atol=1e-6)
    np.testing.assert_allclose(model.u.numpy(), want_u, atol=1e-6)


def test_torch_step_equals_autograd_even_with_repeated_rows() -> None:
    # the batched path takes all gradients at the pre-step point, so repeats just add up
    v, u = _tables(vocab=5)
    center, context, negatives = _ids([0, 0, 1, 2], [1, 3, 3, 0], [[2, 4], [4, 4], [0, 2], [1, 3]])
    want_v, want_u = _autograd_step(v, u, center, context, negatives, lr=0.05)
    v2, u2 = v.clone(), u.clone()
    torch_sgd_step(v2, u2, center, context, negatives, torch.full((4,), 0.05))
    np.testing.assert_allclose(v2.numpy(), want_v, atol=1e-6)
    np.testing.assert_allclose(u2.numpy(), want_u, atol=1e-6)


def test_a_negative_equal_to_the_context_is_skipped() -> None:
    v, u = _tables()
    with_dup = SGNS(v.clone(), u.clone())
    with_dup.train_batch(*_np([2], [3], [[3, 4]]), lr_start=0.1, lr_step=0.0)
    without = SGNS(v.clone(), u.clone())
    without.train_batch(*_np([2], [3], [[4, 4]]), lr_start=0.1, lr_step=0.0)
    # the duplicate-of-context negative contributes nothing; compare against the loss with the mask
    center, context, negatives = _ids([2], [3], [[3, 4]])
    want_v, want_u = _autograd_step(v, u, center, context, negatives, lr=0.1)
    np.testing.assert_allclose(with_dup.v.numpy(), want_v, atol=1e-6)
    np.testing.assert_allclose(with_dup.u.numpy(), want_u, atol=1e-6)
    assert not np.allclose(with_dup.u.numpy()[4], without.u.numpy()[4])


def _np(*values: list) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.int32) for v in values]


def test_init_follows_word2vec() -> None:
    v, u = init_tables(1000, 50, seed=3, init_range=0.5)
    assert v.dtype == torch.float32 and float(v.abs().max()) <= 0.5 / 50
    assert float(v.std()) == pytest.approx(1 / 50 / math.sqrt(12), rel=0.05)  # uniform(-a, a): std a/√3
    assert not u.any()
    assert torch.equal(init_tables(1000, 50, seed=3, init_range=0.5)[0], v)


def test_init_range_scales_the_input_table_as_gensim_does() -> None:
    v, _ = init_tables(1000, 50, seed=3, init_range=1.0)  # gensim 4: uniform(-1/d, 1/d)
    assert 0.9 / 50 < float(v.abs().max()) <= 1.0 / 50
    assert torch.allclose(
        v, 2 * init_tables(1000, 50, seed=3, init_range=0.5)[0]
    )  # same draws, twice the width


def _planted_batches(pairs: int = 60_000, groups: int = 8, per_group: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    vocab = groups * per_group
    word_group = np.arange(vocab) % groups
    center = rng.integers(0, vocab, pairs).astype(np.int32)
    context = (rng.integers(0, per_group, pairs) * groups + word_group[center]).astype(np.int32)
    negatives = rng.integers(0, vocab, (pairs, 5)).astype(np.int32)
    return vocab, word_group, center, context, negatives


@pytest.mark.parametrize(("kernel", "threads"), [("numba", 1), ("numba", 2), ("torch", 1)])
@pytest.mark.usefixtures("one_torch_thread")
def test_loss_goes_down_and_groups_separate(kernel: str, threads: int) -> None:
    vocab, groups, center, context, negatives = _planted_batches()
    v, u = init_tables(vocab, 16, seed=1, init_range=0.5)
    model = SGNS(v, u, kernel=kernel, threads=threads)
    batch, epochs, losses = 512, 4, []
    steps = center.shape[0] // batch
    for epoch in range(epochs):
        total = 0.0
        for s in range(steps):
            lo = s * batch
            lr = 0.025 * (1 - (epoch * steps + s) / (epochs * steps)) + 1e-4
            sl = slice(lo, lo + batch)
            total += model.train_batch(center[sl], context[sl], negatives[sl], lr, 0.0)
        losses.append(total / (steps * batch))
    model.close()
    assert losses[-1] < losses[0] - 0.5, losses
    assert group_separation(model.v.numpy(), groups) > 0.5


def test_one_thread_is_bitwise_deterministic() -> None:
    vocab, _, center, context, negatives = _planted_batches(pairs=20_000)
    results = []
    for _ in range(2):
        model = SGNS(*init_tables(vocab, 16, seed=1, init_range=0.5), threads=1)
        model.train_batch(center, context, negatives, 0.025, -1e-7)
        results.append(model.v.numpy().copy())
    assert np.array_equal(results[0], results[1])


def test_numba_kernel_refuses_cuda_tensors() -> None:
    meta = torch.empty((2, 2), device="meta")
    with pytest.raises(ValueError, match="numba kernel runs on CPU"):
        SGNS(meta, meta, kernel="numba")
