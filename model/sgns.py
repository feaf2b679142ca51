"""Skip-gram with negative sampling (SGNS): the tables, the loss and two update kernels.

The model is two ``V x d`` float32 tables held as CPU or CUDA torch tensors:
``v`` (input vectors, uniform(-r/d, r/d), ``train.init_range`` r = 1.0 as gensim 4, 0.5 as
word2vec.c) and ``u`` (output vectors, zeros).
For one pair ``(c, o)`` with noise words ``n_1..n_K`` the loss is

    -log σ(u_o·v_c) - Σ_k log σ(-u_{n_k}·v_c)

A noise word equal to the context word is skipped, as word2vec.c does (the Spark
job already redraws them; the kernels skip any that slip through, so the loss
below masks them too).

Two kernels update the tables in place behind :meth:`SGNS.train_batch`:

* ``numba`` (CPU): the word2vec.c inner loop, one pair at a time: gradients for
  the context and every negative accumulate into ``neu1e`` while each output row
  is updated, then the input row gets ``neu1e``. It compiles with ``nogil`` so a
  batch can be split over threads that update the shared tables without locks
  (Hogwild, as word2vec.c and gensim do). One thread is bitwise deterministic;
  several are not (the interleaving of row updates depends on scheduling).
  The sigmoid is exact (no 6.0-clipped lookup table), so one step equals the
  analytical SGD step, which the tests check.
* ``torch`` (CUDA, also runs on CPU): the batch's rows are gathered, gradients
  computed in closed form and scattered back with ``index_add_``: minibatch SGD
  that only touches rows present in the batch, never a dense ``V x d`` gradient.
  Each row's summed update is bounded (:func:`torch_sgd_step`), so large batches
  slow hot rows down instead of diverging.
* ``cuda`` (opt-in): the word2vec.c loop as a Hogwild ``numba.cuda`` kernel, one
  32-thread block per pair with atomic updates (model/cuda_kernel.py), whose
  staleness is the pairs resident on the GPU, not the launch size.

The learning rate is given per pair (``lr_start`` for the first pair of the batch,
``lr_step`` added per pair) so the caller controls the linear decay over all
pairs of all epochs whatever the batch boundaries.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Literal

import numpy as np
import torch
from numba import njit

from corpus2vec.model.config import ROW_STEP_LIMIT

Kernel = Literal["numba", "torch", "cuda"]

# Reassociation lets LLVM vectorise the dot products; no nnan/ninf so exp overflow stays safe.
_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _sgd_pairs(
    v: np.ndarray,
    u: np.ndarray,
    center: np.ndarray,
    context: np.ndarray,
    negatives: np.ndarray,
    lr_start: float,
    lr_step: float,
    neu1e: np.ndarray,
    loss_every: int,
) -> float:  # pragma: no cover - compiled
    """word2vec.c's skip-gram negative-sampling step for each pair.

    Returns the loss summed over every ``loss_every``-th pair (the log costs
    about a quarter of the step, and a monitoring loss needs no more).
    """
    dim = v.shape[1]
    k_neg = negatives.shape[1]
    loss = 0.0
    for i in range(center.shape[0]):
        with_loss = i % loss_every == 0
        lr = lr_start + lr_step * i
        c = center[i]
        o = context[i]
        vc = v[c]
        for j in range(dim):
            neu1e[j] = 0.0
        for k in range(k_neg + 1):
            if k == 0:
                target = o
                label = 1.0
            else:
                target = negatives[i, k - 1]
                if target == o:
                    continue
                label = 0.0
            ut = u[target]
            f = np.float32(0.0)
            for j in range(dim):
                f += vc[j] * ut[j]
            # sigmoid and softplus from one exp(-|f|), stable for any f
            e = math.exp(-abs(f))
            sig = 1.0 / (1.0 + e) if f >= 0 else e / (1.0 + e)
            if with_loss:
                signed = -f if label == 1.0 else f
                loss += max(signed, 0.0) + math.log1p(e)
            g = np.float32((label - sig) * lr)
            for j in range(dim):
                neu1e[j] += g * ut[j]
                ut[j] += g * vc[j]
        for j in range(dim):
            vc[j] += neu1e[j]
    return loss


def init_tables(
    vocab_size: int, dim: int, seed: int, device: str = "cpu", *, init_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh ``(v, u)``: input uniform(-r/d, r/d) from ``seed`` (r = 0.5 as word2vec.c; gensim 4
    uses 1.0), output zeros. No default: TrainConfig.init_range is the one place that decides."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-init_range / dim, init_range / dim, size=(vocab_size, dim)).astype(np.float32)
    return torch.from_numpy(v).to(device), torch.zeros(vocab_size, dim, dtype=torch.float32, device=device)


def sgns_loss(
    v: torch.Tensor, u: torch.Tensor, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Summed SGNS loss of a batch, differentiable by autograd.

    The reference for the hand-written kernels: the tests compare their updates
    with ``-lr * grad`` of this function.
    """
    vc = v[center]
    pos = (u[context] * vc).sum(-1)
    neg = torch.einsum("bkd,bd->bk", u[negatives], vc)
    keep = (negatives != context[:, None]).to(vc.dtype)
    return -(torch.nn.functional.logsigmoid(pos).sum() + (keep * torch.nn.functional.logsigmoid(-neg)).sum())


def torch_sgd_step(
    v: torch.Tensor,
    u: torch.Tensor,
    center: torch.Tensor,
    context: torch.Tensor,
    negatives: torch.Tensor,
    lr: torch.Tensor,
    row_step_limit: float | None = ROW_STEP_LIMIT,
) -> float:
    """One minibatch SGD step in closed form with sparse ``index_add_`` updates; returns summed loss.

    ``lr`` holds one learning rate per pair. Gradients of all pairs are computed
    from the same (pre-step) rows and summed per row, which is what makes the
    batch parallel on a GPU.

    Why the per-row limit: a row that occurs ``n`` times in a batch gets the sum
    of ``n`` gradients taken at one stale point. For a rare row that sum is what
    ``n`` sequential word2vec steps would do; for a hot row (``the`` as a negative
    thousands of times in a 64k batch, or a pair repeated many times) sequential
    steps would have corrected themselves long before, and the sum overshoots,
    which is what diverged at batch 65,536. Each pair's update of a row moves that
    pair's own score ``u·v`` by ``lr·|g|·|x_other|²`` (``g = label - σ(u·v)``, and
    ``x_other`` the row it is paired with); summed over the batch that is ``C``,
    the largest change the summed update can make to any score involving the row.
    Each row's summed update is scaled by ``row_step_limit / max(C, row_step_limit)``:
    plain minibatch SGD for every row with a small ``C`` (nearly all rows; every row
    in early training and in the tests' tiny batches), a bounded step for hot rows.
    The default 4 was measured (2M-word prefix, bench preset, batch 262,144): limit 1
    reached 1.0% analogy, 4 reached 2.3%, 16 reached 2.0% with a first-epoch loss of
    5.4 (the edge of divergence); no limit diverges. ``None`` turns
    the limit off (the old kernel). The scaling costs two scalar ``index_add_``
    per table and one gather per row reference, no extra pass over ``V x d``.
    """
    logsigmoid = torch.nn.functional.logsigmoid
    vc = v[center]
    uo = u[context]
    un = u[negatives]
    pos = (uo * vc).sum(-1)
    neg = torch.bmm(un, vc.unsqueeze(-1)).squeeze(-1)
    keep = (negatives != context[:, None]).to(vc.dtype)
    loss = -(logsigmoid(pos).sum() + (keep * logsigmoid(-neg)).sum())
    g_pos = (1.0 - torch.sigmoid(pos)) * lr  # d(-loss)/d(score) scaled by lr: an ascent step
    g_neg = -torch.sigmoid(neg) * keep * lr[:, None]
    flat_neg = negatives.reshape(-1)
    scale_v = None
    if row_step_limit is not None:
        scale_v, scale_u = _row_scales(
            v.shape[0], center, context, flat_neg, vc, uo, un, g_pos, g_neg, row_step_limit
        )
        g_pos_u = g_pos * scale_u[context]
        g_neg_u = g_neg * scale_u[negatives]
    else:
        g_pos_u, g_neg_u = g_pos, g_neg
    grad_v = g_pos[:, None] * uo + torch.bmm(g_neg.unsqueeze(1), un).squeeze(1)
    if scale_v is not None:
        grad_v *= scale_v[center, None]
    v.index_add_(0, center, grad_v)
    u.index_add_(0, context, g_pos_u[:, None] * vc)
    u.index_add_(0, flat_neg, (g_neg_u[:, :, None] * vc[:, None, :]).reshape(-1, v.shape[1]))
    return float(loss)


def _row_scales(
    vocab: int,
    center: torch.Tensor,
    context: torch.Tensor,
    flat_neg: torch.Tensor,
    vc: torch.Tensor,
    uo: torch.Tensor,
    un: torch.Tensor,
    g_pos: torch.Tensor,
    g_neg: torch.Tensor,
    limit: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row factors ``limit / max(C, limit)`` for both tables (see :func:`torch_sgd_step`).

    ``bincount`` with weights, not a 1-D ``index_add_``: the same sums, but 10x
    faster on CPU and one atomic add per entry on CUDA.
    """
    a_pos, a_neg = g_pos.abs(), g_neg.abs()
    vv = (vc * vc).sum(-1)
    per_center = a_pos * (uo * uo).sum(-1) + (a_neg * (un * un).sum(-1)).sum(-1)
    curv_v = torch.bincount(center, weights=per_center, minlength=vocab)
    targets = torch.cat([context, flat_neg])
    weights = torch.cat([a_pos * vv, (a_neg * vv[:, None]).reshape(-1)])
    curv_u = torch.bincount(targets, weights=weights, minlength=vocab)
    scale_v = (limit / torch.clamp(curv_v, min=limit)).to(vc.dtype)
    scale_u = (limit / torch.clamp(curv_u, min=limit)).to(vc.dtype)
    return scale_v, scale_u


class SGNS:
    """The two tables plus the kernel that trains them; the only object train.py touches.

    ``threads`` > 1 runs the numba kernel Hogwild-style on that many threads
    (faster, not bitwise reproducible); 1 is deterministic. The numba kernel
    evaluates the loss on every ``loss_every``-th pair and scales it up.
    """

    def __init__(
        self,
        v: torch.Tensor,
        u: torch.Tensor,
        kernel: Kernel = "numba",
        threads: int = 1,
        loss_every: int = 8,
        row_step_limit: float | None = ROW_STEP_LIMIT,
    ) -> None:
        if kernel == "numba" and v.device.type != "cpu":
            raise ValueError("the numba kernel runs on CPU tensors; use kernel='torch' on cuda")
        if kernel == "cuda" and v.device.type != "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            raise ValueError(
                "kernel='cuda' needs CUDA tensors (or NUMBA_ENABLE_CUDASIM=1, numba's simulator, for tests)"
            )
        self.v, self.u, self.kernel, self.threads = v, u, kernel, max(1, threads)
        self.loss_every = max(1, loss_every)
        self.row_step_limit = row_step_limit
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 and kernel == "numba" else None
        self._neu1e = [np.zeros(v.shape[1], dtype=np.float32) for _ in range(self.threads)]

    @property
    def vocab_size(self) -> int:
        """Rows in each table."""
        return int(self.v.shape[0])

    def train_batch(
        self, center: np.ndarray, context: np.ndarray, negatives: np.ndarray, lr_start: float, lr_step: float
    ) -> float:
        """Apply SGD for one batch of pairs (numpy int32 arrays); returns the (estimated) summed loss."""
        n = center.shape[0]
        if n == 0:
            return 0.0
        if self.kernel == "torch":
            return self._train_torch(center, context, negatives, lr_start, lr_step)
        if self.kernel == "cuda":
            return self._train_cuda(center, context, negatives, lr_start, lr_step)
        v, u, every = self.v.numpy(), self.u.numpy(), self.loss_every
        if self._pool is None:
            loss = _sgd_pairs(v, u, center, context, negatives, lr_start, lr_step, self._neu1e[0], every)
            return loss * n / -(-n // every)
        bounds = np.linspace(0, n, self.threads + 1).astype(np.int64)
        futures = [
            self._pool.submit(
                _sgd_pairs,
                v,
                u,
                center[lo:hi],
                context[lo:hi],
                negatives[lo:hi],
                lr_start + lr_step * lo,
                lr_step,
                self._neu1e[t],
                every,
            )
            for t, (lo, hi) in enumerate(pairwise(bounds))
        ]
        sampled = sum(-(-(hi - lo) // every) for lo, hi in pairwise(bounds))
        return float(sum(f.result() for f in futures)) * n / max(1, sampled)

    def _train_torch(
        self, center: np.ndarray, context: np.ndarray, negatives: np.ndarray, lr_start: float, lr_step: float
    ) -> float:
        device = self.v.device
        to = lambda a: torch.from_numpy(a).to(device, dtype=torch.long, non_blocking=True)  # noqa: E731
        lr = lr_start + lr_step * torch.arange(center.shape[0], device=device, dtype=torch.float32)
        return torch_sgd_step(self.v, self.u, to(center), to(context), to(negatives), lr, self.row_step_limit)

    def _train_cuda(
        self, center: np.ndarray, context: np.ndarray, negatives: np.ndarray, lr_start: float, lr_step: float
    ) -> float:
        """The Hogwild numba.cuda kernel (model/cuda_kernel.py); numpy tables under the CUDA simulator."""
        from corpus2vec.model import cuda_kernel

        if self.v.device.type == "cuda":
            to = lambda a: torch.from_numpy(a).to(self.v.device, non_blocking=True)  # noqa: E731
            return cuda_kernel.train_pairs(
                self.v, self.u, to(center), to(context), to(negatives), lr_start, lr_step
            )
        return cuda_kernel.train_pairs(
            self.v.numpy(), self.u.numpy(), center, context, negatives, lr_start, lr_step
        )

    def close(self) -> None:
        """Stop the Hogwild worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
