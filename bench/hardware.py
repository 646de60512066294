"""Theoretical peak FLOP/s from the hardware's spec, for MFU figures (never a measured rate).

CPU: cores x clock x FLOPs per cycle per core, the last from the core's family (vendor and
family in /proc/cpuinfo) and its vector flags:

    family                         fp32 FLOPs/cycle        bf16 FLOPs/cycle
    AMD Zen 5 (family 26)          64  (2 x 512-bit FMA)   128 (AVX512-BF16 dot products)
    AMD Zen 4 (family 25, avx512f) 32  (2 x 256-bit FMA)   64  (512-bit ops in two halves)
    AMD/Intel, avx2 + fma          32  (2 x 256-bit FMA)   = fp32 (no bf16 arithmetic)
    Intel, avx512f                 64  (2 x 512-bit FMA)   128 with avx512_bf16, 2048 with AMX
    anything else                  8   (SSE)               = fp32

The clock is the "cpu MHz" /proc/cpuinfo reports (the nominal clock under a hypervisor; boost
clocks would give a higher peak and a lower MFU). Every logical CPU torch uses counts as a core.
GPU: the dense bf16 tensor-core peak of the named model (the vendor's data sheet).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GPU_BF16_TFLOPS = {  # dense, no sparsity; SXM parts unless the name says PCIe
    "H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
    "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def flops_per_cycle(info: dict[str, str]) -> tuple[int, int, str]:
    """(fp32, bf16) FLOPs per cycle per core and the family they were read as."""
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0") or 0)
    if vendor == "AuthenticAMD" and family >= 26 and "avx512f" in flags:
        return 64, 128, "AMD Zen 5"
    if vendor == "AuthenticAMD" and family == 25 and "avx512f" in flags:
        return 32, 64 if "avx512_bf16" in flags else 32, "AMD Zen 4"
    if "avx512f" in flags:
        bf16 = 2048 if "amx_bf16" in flags else 128 if "avx512_bf16" in flags else 64
        return 64, bf16, "AVX-512 with two FMA units"
    if {"avx2", "fma"} <= flags:
        return 32, 32, "AVX2 + FMA"
    return 8, 8, "SSE"


def cpu_peak(precision: str, cores: int) -> dict[str, Any]:
    info = cpuinfo()
    fp32, bf16, family = flops_per_cycle(info)
    per_cycle = bf16 if precision == "bf16" else fp32
    ghz = float(info.get("cpu MHz", "0") or 0) / 1000
    return {"flops": cores * ghz * 1e9 * per_cycle, "model": info.get("model name", "unknown"),
            "derivation": f"{info.get('model name', '?')} read as {family}: {cores} cores x "
                          f"{ghz:.3f} GHz x {per_cycle} {precision} FLOPs/cycle"}


def gpu_peak(name: str) -> dict[str, Any]:
    for model in sorted(GPU_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if re.search(re.escape(model), name, re.IGNORECASE):
            tflops = GPU_BF16_TFLOPS[model]
            return {"flops": tflops * 1e12, "model": name,
                    "derivation": f"{name}: {tflops:g} TFLOP/s dense bf16 (data sheet)"}
    raise SystemExit(f"no spec peak known for GPU {name!r}: add it to bench/hardware.py")


def spec_peak(device: Any, precision: str, cores: int) -> dict[str, Any]:
    """The peak for `precision` ("fp32" or "bf16") on a torch device."""
    if device.type == "cuda":
        import torch

        peak = gpu_peak(torch.cuda.get_device_name(device))
        if precision == "fp32":  # TF32 tensor cores: half the bf16 rate on every part above
            peak = {**peak, "flops": peak["flops"] / 2,
                    "derivation": peak["derivation"] + "; TF32 half of it"}
        return peak
    return cpu_peak(precision, cores)
