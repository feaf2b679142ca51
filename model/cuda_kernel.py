"""A Hogwild SGNS kernel for CUDA in the word2vec.c style, written with ``numba.cuda``.

Why a second GPU kernel beside the batched torch one (model/sgns.py): the torch
step takes every gradient of a batch at one stale point, so the batch size that
makes a GPU fast (64k-1M pairs) is also the staleness, and hot rows overshoot.
Here the launch size and the staleness are separate: a launch takes as many pairs
as the host hands over, but each 32-thread block trains one pair at a time and
writes its updates straight into the tables (``cuda.atomic.add``, so no update is
lost to a race), exactly as a word2vec.c thread does. A pair only reads rows that
other blocks are updating *at that moment*, so the staleness is the number of
pairs resident on the GPU at once (about 132 SMs x 32 blocks = 4k on an H100),
not the launch size. Its quality is therefore modelled, pessimistically, by the
batched kernel at batch 4096 (all 4096 reads stale), which the scale-quality
benchmark measures on CPU (tests/bench/scale_quality.py).

Per pair ``(c, o, n_1..n_K)`` with learning rate ``lr_start + lr_step·i``:
for each target ``t`` in ``o, n_1..n_K`` (a negative equal to ``o`` is skipped),
the block reduces ``f = v_c·u_t`` in shared memory, ``g = (label - σ(f))·lr``,
accumulates ``g·u_t`` into the thread's slice of ``neu1e`` and adds ``g·v_c`` to
``u_t``; at the end ``neu1e`` is added to ``v_c``. One block and one launch give
the pairs in order, i.e. the numba CPU kernel's exact sequence (the test checks
this under ``NUMBA_ENABLE_CUDASIM=1``, numba's CUDA simulator, on CPU).

Status: correct under the simulator; its speed on a real GPU has not been
measured yet (no GPU was lent while it was written). It is opt-in
(``train.kernel=cuda``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

THREADS = 32  # one warp per pair: d=100..300 gives 4-10 dims per thread
MAX_DIMS_PER_THREAD = 32  # vector_size <= 1024
BLOCKS_PER_SM = 32


@cuda.jit(fastmath=True)
def _hogwild_pairs(v, u, center, context, negatives, lr_start, lr_step, loss_out):  # pragma: no cover
    tid = cuda.threadIdx.x
    partial = cuda.shared.array(THREADS, float32)
    neu1e = cuda.local.array(MAX_DIMS_PER_THREAD, float32)
    dim = v.shape[1]
    k_neg = negatives.shape[1]
    i = cuda.blockIdx.x
    block_loss = float64(0.0)
    while i < center.shape[0]:
        c = center[i]
        o = context[i]
        lr = lr_start + lr_step * i
        for m in range(MAX_DIMS_PER_THREAD):
            neu1e[m] = 0.0
        for k in range(k_neg + 1):
            target = o if k == 0 else negatives[i, k - 1]
            if k > 0 and target == o:  # the same for every thread of the block: no divergence
                continue
            s = float32(0.0)
            j = tid
            while j < dim:
                s += v[c, j] * u[target, j]
                j += THREADS
            partial[tid] = s
            cuda.syncthreads()
            step = THREADS // 2
            while step > 0:
                if tid < step:
                    partial[tid] += partial[tid + step]
                cuda.syncthreads()
                step //= 2
            f = partial[0]
            cuda.syncthreads()  # every thread has read the sum before the next target overwrites it
            e = math.exp(-abs(f))
            sig = 1.0 / (1.0 + e) if f >= 0 else e / (1.0 + e)
            label = 1.0 if k == 0 else 0.0
            if tid == 0:
                signed = -f if k == 0 else f
                block_loss += max(signed, 0.0) + math.log1p(e)
            g = float32((label - sig) * lr)
            j = tid
            m = 0
            while j < dim:
                neu1e[m] += g * u[target, j]
                cuda.atomic.add(u, (target, j), g * v[c, j])
                j += THREADS
                m += 1
        j = tid
        m = 0
        while j < dim:
            cuda.atomic.add(v, (c, j), neu1e[m])
            j += THREADS
            m += 1
        i += cuda.gridDim.x
    if tid == 0:
        loss_out[cuda.blockIdx.x] = block_loss


def hogwild_blocks(pairs: int) -> int:
    """Blocks per launch: enough to fill every SM of the current device, never more than pairs."""
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # the simulator has no device attributes
        sms = 1
    return max(1, min(pairs, sms * BLOCKS_PER_SM))


def train_pairs(
    v, u, center, context, negatives, lr_start: float, lr_step: float, blocks: int | None = None
) -> float:
    """Train the pairs Hogwild-style into ``v``/``u`` (CUDA arrays, or numpy under the simulator).

    Torch CUDA tensors are passed through ``__cuda_array_interface__`` without a
    copy. Returns the summed loss of all pairs.
    """
    if v.shape[1] > THREADS * MAX_DIMS_PER_THREAD:
        raise ValueError(f"the cuda kernel supports vector_size <= {THREADS * MAX_DIMS_PER_THREAD}")
    n = int(center.shape[0])
    if n == 0:
        return 0.0
    grid = blocks or hogwild_blocks(n)
    on_device = hasattr(v, "__cuda_array_interface__")
    arrays = [cuda.as_cuda_array(a) if on_device else a for a in (v, u, center, context, negatives)]
    loss = cuda.device_array(grid, dtype=np.float64) if on_device else np.zeros(grid)
    _hogwild_pairs[grid, THREADS](*arrays, lr_start, lr_step, loss)
    return float(loss.copy_to_host().sum() if on_device else loss.sum())
