"""Which reduced precisions this machine runs natively: decides what ``precision='auto'`` picks.

bf16 on the CPU pays off only with native support (AMX tiles or AVX512-BF16: oneDNN then runs
bf16 convolutions and matmuls at 2-4x the fp32 rate); elsewhere it is emulated and slower than
fp32, so ``auto`` keeps fp32 there. ``VSCOLORMNET_CPU_BF16=0|1`` overrides the detection.
"""
from __future__ import annotations

import os

import torch


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """True if the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16)."""
    forced = os.environ.get("VSCOLORMNET_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if any(p is not None for p in probes):
        return any(p() for p in probes if p is not None)
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def describe() -> str:
    """One line for benchmarks: the CPU capability torch dispatches to, and native bf16."""
    return f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if native_bf16() else 'no'}"
