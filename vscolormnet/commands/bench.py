"""bench: frames per second and milliseconds per stage on a synthetic clip, for any backend.

The clip is ``synthetic_rgb`` frames (soft moving discs on gradients, made grey) at the
inference size ``Colorize`` would use for ``--size`` and ``--source`` (``geometry``: preset of
the longest side, aspect kept, padded to multiples of 112), with a colour exemplar of the same
size (exemplar mode). Model loading (and the ONNX export or engine build on first use) and the
first frame are not timed; the remaining frames are, with ``end`` never set so every frame is
a steady-state frame. Stages: encode_key, memory_readout, short_term_attention, decoder,
encode_value (measured inside ``core.Propagator``) and colour_conversion (Lab conversion in,
RGB composition out).

Without ``--weights`` the default checkpoint is used. For a run without the real weights,
build the seeded test checkpoint first: ``python -m vscolormnet.random_checkpoint OUT.pth``
(speed does not depend on the weights' values).

Human-readable results go to stderr; ``--json`` prints one JSON object on stdout. Every
argument is checked before the weights are loaded (one line naming the flag, exit 2).
"""
from __future__ import annotations

import json
import platform
import resource
import sys
import time

HELP = "benchmark a backend on a synthetic clip: fps, ms per stage, peak memory"
STAGE_ORDER = ("encode_key", "memory_readout", "short_term_attention", "decoder", "encode_value",
               "colour_conversion")


def add_arguments(p) -> None:  # noqa: D103
    from .colorize_frames import add_backend_arguments, add_memory_arguments
    from .export import add_geometry_arguments
    add_geometry_arguments(p)
    p.add_argument("--frames", type=int, default=12, help="frames to run, the first one untimed (default 12)")
    p.add_argument("--weights", default=None, metavar="CKPT", help="checkpoint (default: the downloaded one)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--instances", type=int, default=None, metavar="N",
                   help="instead: process memory of N Colorize nodes (dropped one by one; spliced per shot vs one "
                        "node), each scenario in its own process; --frames-per-instance frames each")
    p.add_argument("--frames-per-instance", type=int, default=2, metavar="F", help="with --instances (default 2)")
    p.add_argument("--onnx-dir", default=None, metavar="DIR", help="ONNX cache folder for ort/trt/auto, must exist")
    p.add_argument("--engine-dir", default=None, metavar="DIR", help="TensorRT engine folder for trt/auto, must exist")
    add_backend_arguments(p)
    p.set_defaults(device=None)   # None: default_device(--backend)
    add_memory_arguments(p)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def backend_options(backend: str, onnx_dir=None, engine_dir=None) -> dict:
    """``create_backend`` options for the cache folders of ``backend`` (only the fields it has)."""
    from ..backends import ORT, TRT
    if backend == "ort":
        return {"onnx_dir": onnx_dir} if onnx_dir else {}
    if backend == "trt":
        return {k: v for k, v in (("onnx_dir", onnx_dir), ("engine_dir", engine_dir)) if v}
    if backend == "auto" and (onnx_dir or engine_dir):
        return {"ort": ORT(onnx_dir=onnx_dir), "trt": TRT(onnx_dir=onnx_dir, engine_dir=engine_dir)}
    return {}


def default_device(backend: str) -> str:
    """``--device`` when not given: any for ``auto``, the GPU for ``trt``, else the CPU."""
    return {"auto": "auto", "trt": "cuda"}.get(backend, "cpu")


def run_bench(*, backend: str = "torch", size_wh=(512, 288), frames: int = 12, device: str | None = "cpu",
              device_id: int = 0, fp16: bool = False, weights=None, threads: int | None = None,
              config=None, options: dict | None = None) -> dict:
    """Run the benchmark and return the result as a dict (see the module docstring).

    size_wh: the inference size ``(W, H)`` (unpadded); options: extra ``create_backend`` options.
    """
    import torch

    from .. import color
    from ..backends import create_backend
    from ..backends.base import StageTimes
    from ..config import MemoryConfig
    from ..geometry import padded_size
    from ..core import Propagator, Reference
    from ..color import compose_rgb, lab_float32, network_ab, network_image, synthetic_rgb

    if frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame is not timed), got {frames}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    config = config or MemoryConfig()
    if device is None:
        device = default_device(backend)
    w, h = size_wh
    padded = padded_size(h, w)
    clip = [synthetic_rgb(h, w, t=t, seed=1) for t in range(frames)]
    clip = [np_gray.mean(-1, keepdims=True).repeat(3, -1).astype("uint8") for np_gray in clip]
    ref_rgb = synthetic_rgb(h, w, seed=2)

    t0 = time.perf_counter()
    be = create_backend(backend, weights=weights, device=device, device_id=device_id, fp16=fp16,
                        padded_hw=padded, **(options or {}))
    dev = be.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
    load_s = time.perf_counter() - t0

    times = StageTimes(sync_cuda=cuda)
    ref_lab = lab_float32(ref_rgb, dev)
    reference = Reference(network_image(ref_lab[0]), network_ab(ref_lab[1:]), frame=None)
    prop = Propagator(be, config, [reference], config.long_term_usage_for(frames), times)
    state = prop.new_state()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    device_used = 0
    t_first = t_start = None
    with torch.inference_mode():
        for i, rgb in enumerate(clip):
            if i == 1:
                if cuda:
                    torch.cuda.synchronize(dev)
                t_start = time.perf_counter()
                times.enabled = True
            t_frame = time.perf_counter()
            with times.measure("colour_conversion"):
                L = lab_float32(rgb, dev)[0]
                image = network_image(L)
            res = prop.step(state, image, end=False)
            with times.measure("colour_conversion"):
                out = compose_rgb(L, color.unpad(res.ab[0], h, w))
            if cuda:
                torch.cuda.synchronize(dev)
                free, total = torch.cuda.mem_get_info(dev)
                device_used = max(device_used, total - free)
            if i == 0:
                t_first = time.perf_counter() - t_frame
    elapsed = time.perf_counter() - t_start
    assert out.shape == (h, w, 3)
    timed = frames - 1
    stages = {name: times.total.get(name, 0.0) for name in STAGE_ORDER}
    result = {
        "backend": backend, "describe": be.describe(), "device": str(dev), "fp16": bool(fp16),
        "size_wh": [w, h], "padded_wh": [padded[1], padded[0]], "frames": frames, "timed_frames": timed,
        "threads": torch.get_num_threads(), "load_s": round(load_s, 3), "first_frame_s": round(t_first, 4),
        "fps": round(timed / elapsed, 4), "s_per_frame": round(elapsed / timed, 4),
        "ms_per_frame": {k: round(1000 * v / timed, 2) for k, v in stages.items()},
        "ms_per_call": {k: round(1000 * v / times.calls[k], 2) for k, v in stages.items() if times.calls.get(k)},
        "calls": {k: times.calls.get(k, 0) for k in STAGE_ORDER},
        "other_ms_per_frame": round(1000 * (elapsed - sum(stages.values())) / timed, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gpu": None, "machine": {"cpu": _cpu_name(), "cores": _cores(), "python": platform.python_version(),
                                 "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
                                 "tensorrt": _version("tensorrt")},
        "memory_config": {k: getattr(config, k) for k in ("mem_every", "max_mid_term_frames", "top_k")},
    }
    if cuda:
        result["gpu"] = {"name": torch.cuda.get_device_name(dev),
                         "peak_torch_allocated_mib": round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1),
                         "peak_torch_reserved_mib": round(torch.cuda.max_memory_reserved(dev) / 2 ** 20, 1),
                         "peak_device_used_mib": round(device_used / 2 ** 20, 1)}
    be.close()
    return result


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    for dist in {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorrt": ("tensorrt", "tensorrt-cu13",
                                                                                  "tensorrt-cu12")}[module]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def format_result(r: dict) -> str:
    """The human-readable table."""
    lines = [f"bench: {r['describe']}, {r['size_wh'][0]}x{r['size_wh'][1]} (padded {r['padded_wh'][0]}x"
             f"{r['padded_wh'][1]}), {r['threads']} threads, {r['timed_frames']} timed frames",
             f"  {r['fps']:.3f} fps, {r['s_per_frame']:.3f} s/frame (load {r['load_s']:.1f} s, "
             f"first frame {r['first_frame_s']:.2f} s)",
             f"  {'stage':<22}{'ms/frame':>10}{'ms/call':>10}{'calls':>7}"]
    for k in STAGE_ORDER:
        lines.append(f"  {k:<22}{r['ms_per_frame'][k]:>10.1f}{r['ms_per_call'].get(k, 0):>10.1f}{r['calls'][k]:>7}")
    lines.append(f"  {'other':<22}{r['other_ms_per_frame']:>10.1f}")
    lines.append(f"  peak RSS {r['peak_rss_mib']:.0f} MiB")
    if r["gpu"]:
        g = r["gpu"]
        lines.append(f"  GPU {g['name']}: peak torch allocated {g['peak_torch_allocated_mib']:.0f} MiB, "
                     f"peak device used {g['peak_device_used_mib']:.0f} MiB")
    lines.append(f"  machine: {r['machine']['cpu']} ({r['machine']['cores']} cores), torch {r['machine']['torch']}, "
                 f"onnxruntime {r['machine']['onnxruntime']}")
    return "\n".join(lines)


def run(args) -> int:  # noqa: D103
    from ..backends import BackendError, resolve_spec
    from ..weights import CheckpointError, resolve_weights
    from .colorize_frames import memory_config
    from .export import describe_geometry, geometry_from_args, positive_int, writable_dir
    geometry = geometry_from_args(args)
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame is not timed), got {args.frames}")
    positive_int(args.threads, "--threads")
    options = backend_options(args.backend, writable_dir(args.onnx_dir, "--onnx-dir"),
                              writable_dir(args.engine_dir, "--engine-dir"))
    device = args.device if args.device is not None else default_device(args.backend)
    try:
        resolve_spec(args.backend, device=device, device_id=args.device_id, fp16=args.fp16, **options)
    except BackendError as e:
        raise ValueError(f"--backend {args.backend}: {e}") from None
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise ValueError(f"--weights: {e}") from None
    config = memory_config(args)
    print(f"bench: --size {args.size}: {describe_geometry(geometry)}", file=sys.stderr)
    if args.instances is not None:
        return _run_instances(args, geometry, weights)
    result = run_bench(backend=args.backend, size_wh=(geometry.inf_width, geometry.inf_height), frames=args.frames,
                       device=device, device_id=args.device_id, fp16=args.fp16, weights=weights,
                       threads=args.threads, config=config, options=options)
    result["size"] = str(args.size)
    result["source_wh"] = [geometry.width, geometry.height]
    print(format_result(result), file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


def _run_instances(args, geometry, weights) -> int:
    """``--instances N``: the shared-network memory scenarios of ``bench_instances``."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    from ..color import synthetic_rgb
    from .bench_instances import run_all
    from .export import positive_int
    positive_int(args.instances, "--instances")
    positive_int(args.frames_per_instance, "--frames-per-instance")
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.png"
        Image.fromarray(synthetic_rgb(geometry.height, geometry.width, seed=2)).save(ref)
        results = run_all(instances=args.instances, frames=args.frames_per_instance, width=geometry.width,
                          height=geometry.height, weights=weights, size=str(args.size), ref=str(ref))
    by = {r["scenario"]: r for r in results}
    print(f"bench: {args.instances} nodes created, used and dropped: RSS after the first "
          f"{by['dropped']['rss_after_each_mib'][0]:.0f} MiB, after the last "
          f"{by['dropped']['rss_after_each_mib'][-1]:.0f} MiB (growth {by['dropped']['growth_after_first_mib']:.0f} MiB)",
          file=sys.stderr)
    print(f"bench: one node over {args.instances * args.frames_per_instance} frames: peak RSS "
          f"{by['single']['peak_rss_mib']:.0f} MiB; {args.instances} per-shot nodes spliced: peak RSS "
          f"{by['spliced']['peak_rss_mib']:.0f} MiB (+{by['spliced']['peak_rss_mib'] - by['single']['peak_rss_mib']:.0f})",
          file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0
