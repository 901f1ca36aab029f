"""What gpu_check runs where: the GPU check's sizes and targets, and the CPU rehearsal's small ones.

The two plans have the same rows; the CPU one cuts each parity case to its first frames, runs bf16
on one frame of the smallest case only (emulated on AVX2 CPUs, ~20 s per 112×112 frame), benches a 100x56 source,
and states CPU speed floors instead of the GPU targets. Paths are data only: nothing is imported
from tests/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "data" / "parity"
DDCOLOR_DIR = ROOT / "tests" / "data" / "ddcolor" / "cases"

# fps targets at the 512 preset (issue 20): torch fp16 ≥ 100 with its run-ahead (key batch 8); TensorRT
# fp16 ≥ 200. The other rows get floors that only a broken path misses: key batch 1 half the target (the
# run-ahead is what reaches it), fp32 (TF32 off: the parity configuration) 10, ONNX Runtime CUDA fp16 50.
GPU_TARGETS = {("torch", "fp16", True): (100, "the 512 target"), ("torch", "fp16", False): (50, "half the target"),
               ("torch", "fp32", True): (10, "floor"), ("torch", "fp32", False): (10, "floor"),
               ("trt", "fp16", True): (200, "the 512 target"), ("ort", "fp16", True): (50, "floor")}
# CPU: 2.48 fps measured at 112x112 fp32 on the 2-core development machine (README), 0.75 fps with
# 4 other processes on its 2 cores; the floor 0.1 fps leaves a margin of 7x for a busy machine.
CPU_FLOOR = 0.1


@dataclass(frozen=True)
class Plan:
    """Sizes, frame counts and targets of every row for one device."""

    device: str
    cases: tuple[str, ...]
    case_frames: int | None                  # frames of each parity case (None: all)
    reduced: dict = field(default_factory=dict)   # precision → (cases, frames) or a why-not line (CUDA-only)
    order_frames: int = 20
    bench_source: str = "1920x1080"
    bench_sizes: tuple[str, ...] = ("384", "512")
    bench_frames: int = 16                   # timed frames after the untimed first key batch
    memory_source: str = "1920x1080"
    memory_size: str = "512"
    memory_frames: int = 12                  # frames per shot (3 shots)
    memory_precision: str = "fp16"
    graph_cases: tuple[str, ...] = ("blackswan_short",)
    graph_frames: int | None = None
    graph_bench_sizes: tuple[str, ...] = ("512",)
    graph_bench_source: str = "1920x1080"
    ddcolor_cases: tuple[str, ...] = ("large_512_odd", "tiny_256")

    def fps_target(self, backend: str, size: str, precision: str, default_kb: bool) -> tuple[float, str]:
        """(fps target, why) of one bench row."""
        if self.device == "cpu":
            return CPU_FLOOR, "CPU floor"
        return GPU_TARGETS.get((backend, precision, default_kb), (10, "floor"))


def all_cases() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in CASES_DIR.iterdir() if (p / "config.json").exists()))


def smallest_case(cases) -> tuple[str, str]:
    """The case with the fewest pixels per frame and its size ``'WxH'`` (not_first, 96x55 → 112x112)."""
    import json
    sizes = {c: json.loads((CASES_DIR / c / "config.json").read_text())["size_wh"] for c in cases}
    name = min(cases, key=lambda c: sizes[c][0] * sizes[c][1])
    return name, "x".join(str(v) for v in sizes[name])


def plan_for(device: str, case_frames: int | None = None, bf16_frames: int | None = None) -> Plan:
    """The GPU check's plan, or (``device='cpu'``) the rehearsal's; ``case_frames``/``bf16_frames`` override."""
    cases = all_cases()
    if device == "cuda":
        return Plan("cuda", cases, case_frames, {"fp16": (cases, case_frames), "bf16": (cases, case_frames)})
    small, small_wh = smallest_case(cases)
    smallest = (small,)
    return Plan("cpu", cases, case_frames or 2,
                {"fp16": "fp16 runs on CUDA only (refused on the CPU)", "bf16": (smallest, bf16_frames or 1)},
                order_frames=4, bench_source="100x56", bench_frames=2, memory_source="96x64", memory_size="native",
                memory_frames=2, memory_precision="fp32", graph_cases=smallest, graph_frames=2,
                graph_bench_sizes=("native",), graph_bench_source=small_wh, ddcolor_cases=("tiny_256",))
