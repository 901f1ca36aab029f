"""DDColor's speed: forwards per second of one backend at S×S, as ``bench --model ddcolor-…`` reports it.

Why its own loop: DDColor runs one forward per shot (the reference), not per frame, so what matters
is the time of one forward, not a clip's steady state. The input is a synthetic grey image
(``synthetic_rgb``, made grey the official way: ``media.lab.network_input``) at 1×3×S×S; the
backend comes from ``image_colorizer.open_colorizer`` exactly as ``colorize-image`` gets it. The
first forward (allocation, oneDNN/cuDNN kernel choice, the ORT session's first run) is not timed;
``fps`` = timed forwards / their wall time, each forward's ab read back to the host (the backend
contract), so on CUDA the time includes the synchronisation. The JSON keys match the ColorMNet
bench's where they mean the same (fps, s_per_frame, frames, timed_frames, warmup_frames, threads,
precision, backend, describe, device, load_s, first_frame_s, peak_rss_mib, cpu, machine, gpu).
"""
from __future__ import annotations

import resource
import time

WARMUP = 1


def run_ddcolor_bench(*, model: str, weights, input_size: int, frames: int = 4, backend: str = "torch",
                      device: str | None = "cpu", device_id: int | None = None, fp16: bool = False,
                      precision: str | None = None, tf32: bool | None = None, threads: int | None = None,
                      options: dict | None = None) -> dict:
    """Open ``model`` (``weights``) at ``input_size`` on the backend, run ``frames`` forwards (the first untimed)
    and return the result dict (module docstring). ``frames`` ≥ 2; ``threads``: torch's CPU threads."""
    import numpy as np
    import torch

    from ..media import lab
    from ..media.color import synthetic_rgb
    from .image_colorizer import open_colorizer
    if frames < WARMUP + 1:
        raise ValueError(f"--frames must be at least {WARMUP + 1} (the first forward is not timed), got {frames}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    grey = synthetic_rgb(input_size, input_size, seed=1).mean(-1, keepdims=True).repeat(3, -1).astype(np.uint8)
    image = lab.network_input(lab.unit_float(grey), input_size)                 # 1×3×S×S float32
    t0 = time.perf_counter()
    colorizer = open_colorizer(model, weights, input_size=input_size, backend=backend, device=device,
                               device_id=device_id, fp16=True if fp16 else None, precision=precision, tf32=tf32,
                               **(options or {}))
    try:
        load_s = time.perf_counter() - t0
        be = colorizer.backend
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(WARMUP):
                ab = colorizer.predict_ab(image)
            first_s = time.perf_counter() - t0
            times = []
            for _ in range(frames - WARMUP):
                t = time.perf_counter()
                ab = colorizer.predict_ab(image)                                # 1×2×S×S float32 on the CPU
                times.append(time.perf_counter() - t)
        assert tuple(ab.shape) == (1, 2, input_size, input_size) and bool(torch.isfinite(ab).all())
        return _result(colorizer, be, backend, model, input_size, frames, times, load_s, first_s)
    finally:
        colorizer.close()


def _result(colorizer, be, backend: str, model: str, input_size: int, frames: int, times: list[float],
            load_s: float, first_s: float) -> dict:
    import platform

    import torch

    from ..model.ddcolor import resolve_model
    from ..util.cpuinfo import cores, cpu_name, describe
    from .benchmark import _version
    elapsed = sum(times)
    timed = len(times)
    dev = getattr(be, "device", torch.device("cpu"))
    gpu = {"name": torch.cuda.get_device_name(dev)} if getattr(dev, "type", "cpu") == "cuda" else None
    return {
        "model": resolve_model(model), "input_size": input_size, "backend": backend, "describe": colorizer.describe(),
        "device": str(dev), "precision": getattr(be, "precision", "fp32"),
        "fp16": getattr(be, "precision", "fp32") == "fp16", "tf32": bool(getattr(be, "tf32", False)),
        "size_wh": [input_size, input_size], "frames": frames, "timed_frames": timed, "warmup_frames": WARMUP,
        "threads": torch.get_num_threads(), "load_s": round(load_s, 3), "first_frame_s": round(first_s, 4),
        "fps": round(timed / elapsed, 4), "s_per_frame": round(elapsed / timed, 4),
        "s_per_forward": {"mean": round(elapsed / timed, 4), "min": round(min(times), 4), "max": round(max(times), 4)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu": describe(), "gpu": gpu,
        "machine": {"cpu": cpu_name(), "cores": cores(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
                    "tensorrt": _version("tensorrt")},
    }


def format_ddcolor_result(r: dict) -> str:
    """The human-readable lines (stderr)."""
    s = r["s_per_forward"]
    return "\n".join([
        f"bench: {r['describe']}, {r['threads']} threads, {r['timed_frames']} timed forwards",
        f"  {r['fps']:.3f} fps (forwards/s), {r['s_per_frame']:.3f} s/forward (min {s['min']:.3f}, max "
        f"{s['max']:.3f}; load {r['load_s']:.1f} s, first forward {r['first_frame_s']:.2f} s)",
        f"  peak RSS {r['peak_rss_mib']:.0f} MiB" + (f"; GPU {r['gpu']['name']}" if r["gpu"] else ""),
        f"  machine: {r['machine']['cpu']} ({r['machine']['cores']} cores; {r['cpu']}), torch {r['machine']['torch']}, "
        f"onnxruntime {r['machine']['onnxruntime']}"])
