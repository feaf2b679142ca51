"""The Hogwild numba.cuda kernel under numba's CUDA simulator, against the numba CPU kernel.

``NUMBA_ENABLE_CUDASIM`` is read when numba is first imported, and this test
process has imported numba already, so each check runs in a fresh interpreter.
The simulator runs every thread as a Python thread: the data stay tiny.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import numpy as np
import torch
from corpus2vec.model.cuda_kernel import train_pairs
from corpus2vec.model.sgns import SGNS, _sgd_pairs

rng = np.random.default_rng(0)
V, d, K, n = 30, 40, 2, 12  # d > 32 threads: every thread owns two dims, some none
v = rng.uniform(-0.5 / d, 0.5 / d, (V, d)).astype(np.float32)
u = (rng.normal(size=(V, d)) * 0.1).astype(np.float32)
c = rng.integers(0, V, n).astype(np.int32)
o = rng.integers(0, V, n).astype(np.int32)
neg = rng.integers(0, V, (n, K)).astype(np.int32)
neg[0, 0] = o[0]  # a negative equal to the context is skipped, as word2vec.c does
out = {}

def cpu(order, lr_step):
    v2, u2 = v.copy(), u.copy()
    loss = _sgd_pairs(v2, u2, c[order], o[order], neg[order], 0.05, lr_step, np.zeros(d, np.float32), 1)
    return v2, u2, loss

# one block: the pairs in order, i.e. the CPU kernel's exact sequence (lr decaying per pair)
v1, u1 = v.copy(), u.copy()
loss = train_pairs(v1, u1, c, o, neg, 0.05, -1e-3, blocks=1)
v2, u2, loss2 = cpu(np.arange(n), -1e-3)
out["one_block"] = [float(np.abs(v1 - v2).max()), float(np.abs(u1 - u2).max()), loss, loss2]

# four blocks (grid-stride): every pair exactly once; the simulator runs blocks one after another
v1, u1 = v.copy(), u.copy()
loss = train_pairs(v1, u1, c, o, neg, 0.05, 0.0, blocks=4)
v2, u2, loss2 = cpu(np.concatenate([np.arange(b, n, 4) for b in range(4)]), 0.0)
out["four_blocks"] = [float(np.abs(v1 - v2).max()), float(np.abs(u1 - u2).max()), loss, loss2]

# through the SGNS object, as the trainer calls it
model = SGNS(torch.from_numpy(v.copy()), torch.from_numpy(u.copy()), kernel="cuda")
model.train_batch(c, o, neg, 0.05, -1e-3)
v2, u2, _ = cpu(np.arange(n), -1e-3)
out["sgns"] = float(np.abs(model.v.numpy() - v2).max())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def simulated() -> dict:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_block_is_the_cpu_kernels_exact_sequence(simulated: dict) -> None:
    dv, du, loss, cpu_loss = simulated["one_block"]
    assert dv < 1e-6 and du < 1e-6
    assert loss == pytest.approx(cpu_loss, rel=1e-6)


def test_many_blocks_train_every_pair_exactly_once(simulated: dict) -> None:
    dv, du, loss, cpu_loss = simulated["four_blocks"]
    assert dv < 1e-6 and du < 1e-6
    assert loss == pytest.approx(cpu_loss, rel=1e-6)


def test_the_sgns_object_drives_the_cuda_kernel(simulated: dict) -> None:
    assert simulated["sgns"] < 1e-6


def test_the_cuda_kernel_without_a_device_is_refused() -> None:
    import torch

    from corpus2vec.model.sgns import SGNS

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or torch.cuda.is_available():
        pytest.skip("a device or the simulator is present")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        SGNS(torch.zeros(3, 2), torch.zeros(3, 2), kernel="cuda")
