"""Where and how the model runs: device choice, autocast precision, DDP process group."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """cuda, then mps, then cpu for "auto"; a named device that is missing is an error."""
    import torch

    from pipeline.errors import EnvironmentProblem

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentProblem("train.device=cuda but torch sees no CUDA GPU (CPU build of "
                                 "torch, or no driver); use device=auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentProblem("train.device=mps but MPS is not available on this machine")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX): where bf16 autocast pays on a CPU."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(device: torch.device, precision: str) -> bool:
    """Whether to autocast to bfloat16: "auto" does on GPUs and CPUs with native bf16.

    On this project's CPU (AVX512-BF16), bf16 matmuls measured about 4.5x the fp32 peak and
    training 1.3-2.4x the fp32 tokens/s (bench/train.py); without native bf16 it is slower.
    """
    import torch

    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def within_omp_thread_limit() -> None:
    """At most OMP_THREAD_LIMIT torch CPU threads. torch sizes its pool by the cores whatever
    the limit, and its bf16 LayerNorm then returns NaN (torch 2.13, 2 threads under a limit of
    1: a NaN loss at the first step); the fp32 kernels are not affected."""
    import torch

    limit = os.environ.get("OMP_THREAD_LIMIT", "")
    if limit.isdigit() and 0 < int(limit) < torch.get_num_threads():
        log.info("train: %d torch threads, as OMP_THREAD_LIMIT=%s allows (not %d)",
                 int(limit), limit, torch.get_num_threads())
        torch.set_num_threads(int(limit))


@contextlib.contextmanager
def tf32_matmuls(device: torch.device) -> Iterator[None]:
    """TF32 matmuls on CUDA while training (as nanoGPT), the caller's settings back after;
    CPU fp32 stays IEEE fp32. The flags are the process's: a caller (a notebook, a benchmark
    row) must not find them changed once train() returns."""
    import torch

    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = True
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@dataclass(frozen=True, slots=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_from_env() -> Dist:
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    return Dist(rank=int(env["RANK"]), world=int(env["WORLD_SIZE"]),
                local_rank=int(env.get("LOCAL_RANK", "0")))


def init_process_group(dist: Dist, device: torch.device) -> torch.device:
    """Join the torchrun job (gloo on CPU, nccl on CUDA); returns this rank's device."""
    import torch
    import torch.distributed as tdist

    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def all_reduce_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    """Sum floats across ranks (identity when alone)."""
    if not dist.active:
        return values
    import torch
    import torch.distributed as tdist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()
