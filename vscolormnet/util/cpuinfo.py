"""Which reduced precisions this machine runs natively: decides what ``precision='auto'`` picks.

bf16 on the CPU pays off only with native support (AMX tiles or AVX512-BF16: oneDNN then runs
bf16 convolutions and matmuls at 2-4x the fp32 rate); elsewhere it is emulated and slower than
fp32, so ``auto`` keeps fp32 there. ``VSCOLORMNET_CPU_BF16=0|1`` overrides the detection.
"""
from __future__ import annotations

import os
import platform

import torch


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (None where there is none, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_flags() -> set[str]:
    return set((_cpuinfo_field("flags") or "").split())


def cpu_name() -> str:
    """The CPU model as the OS names it (for benchmark reports)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
