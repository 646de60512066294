"""Model FLOPs and the machine's measured matmul peak, for MFU figures."""

from __future__ import annotations

import functools
import time
from typing import Any

PEAK_SECONDS = 0.3  # time spent measuring the matmul peak
LADDER = (256, 512)  # cheap products first: how long the bigger ones would take
SKIP_FACTOR = 5.0


def flops_per_token(num_params: int) -> float:
    """Training FLOPs per token: 6 x parameters (forward 2, backward 4), attention ignored."""
    return 6.0 * num_params


@functools.cache
def matmul_peak(device: str = "cpu", dtype_name: str = "float32", size: int = 0,
                seconds: float = PEAK_SECONDS) -> float:
    """The best FLOP/s of square matmuls measured now on `device` (cached per process).

    On CPU both 1024 and 2048 are tried: small sizes underestimate wide-vector cores. Cheap
    sizes go first (LADDER), and a size whose one product would take more than SKIP_FACTOR
    budgets at the rate of the size before is not tried: a CPU without native bf16 multiplies
    bf16 at about 1 GFLOP/s, so one 2048 product took 20 s, and every bf16 training run on
    such a machine waited most of a minute before its first step.
    """
    if size:
        return _timed_matmul(device, dtype_name, size, seconds)
    sizes = [8192] if device.startswith("cuda") else [1024, 2048]
    best = rate = 0.0
    for n in (*LADDER, *sizes):
        if rate and 2.0 * n**3 / rate > SKIP_FACTOR * seconds:
            break  # at the last size's rate, its one product alone would far overrun
        rate = _timed_matmul(device, dtype_name, n, seconds / len(sizes) if n in sizes else 0.0)
        best = max(best, rate)
    return best


def _timed_matmul(device: str, dtype_name: str, n: int, seconds: float) -> float:
    """The best FLOP/s of n x n products over `seconds` (after one to warm up)."""
    import torch

    dtype = getattr(torch, dtype_name)
    rng = torch.Generator(device=device).manual_seed(0)  # never the global RNG: training's
    a = torch.randn(n, n, device=device, dtype=dtype, generator=rng)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=rng)
    sync = _synchronizer(device)
    torch.mm(a, b)
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    reps = 1
    while True:
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, 2.0 * n**3 * reps / elapsed)
        if time.perf_counter() >= deadline:
            return best
        if elapsed < 0.02:
            reps *= 2


def _synchronizer(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.synchronize
    if device.startswith("mps"):
        return torch.mps.synchronize
    return lambda: None
