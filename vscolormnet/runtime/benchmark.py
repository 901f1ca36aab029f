"""The benchmark's timing loop: fps, ms per stage, memory and host syncs of one backend.

The clip is ``synthetic_rgb`` frames (soft moving discs on gradients, made grey) at the
inference size, with a colour exemplar of the same size (exemplar mode). It runs through
``session.ClipSession`` exactly as ``Colorize`` does, frames requested in order, so key
run-ahead (``key_batch`` frames' ``encode_key`` in one batched call) is part of what is timed;
``key_batch=1`` turns it off. Each frame's RGB is composed and read back to the host.

Warm-up: the first ``key_batch`` frames (the first key batch: model warm-up, cuDNN autotuning)
are not timed. The session spans one key batch more than the frames requested, so every timed
frame is a steady-state frame (never the clip's last) and the timed region holds one key batch of
``encode_key`` work per key batch of frames also with run-ahead (which computes the next block
early). Whole key batches of timed frames give the fairest figure. On the CPU one pass gives
fps and the stage times. On CUDA stage timing must synchronise around every stage, which would
hide the asynchrony being measured, so a first pass gives fps, peak VRAM and host syncs
(``SyncCounter``: sync-debug warnings and ``Event.synchronize`` waits over the timed frames, split
into the pipeline's and the output read-back's, which ``Colorize`` needs too), and a
second pass over a fresh session gives the ms per stage.
"""
from __future__ import annotations

import contextlib
import platform
import resource
import time
import warnings

STAGE_ORDER = ("encode_key", "memory_readout", "short_term_attention", "decoder", "encode_value",
               "colour_conversion")


def default_device(backend: str) -> str:
    """The device when none is given: any for ``auto``, the GPU for ``trt``, else the CPU."""
    return {"auto": "auto", "trt": "cuda"}.get(backend, "cpu")


class _Clip:
    """The synthetic grey clip at ``h×w`` on the backend's device; keeps each frame's L for composing."""

    def __init__(self, frames: int, h: int, w: int, device, times):
        self.frames, self.h, self.w, self.device, self.times = frames, h, w, device, times
        self.rgb = [self._grey(t) for t in range(frames)]
        self.L: dict = {}                  # frame → L ``H×W`` (set by ``image``, taken by ``compose``)
        self.syncs = SyncCounter(False)    # set by ``_run_pass``: the upload counts as the source's syncs

    def _grey(self, t: int):
        from ..media.color import synthetic_rgb
        rgb = synthetic_rgb(self.h, self.w, t=t, seed=1)
        return rgb.mean(-1, keepdims=True).repeat(3, -1).astype("uint8")

    def image(self, n: int):
        """The clip's ``FrameList`` frame: the padded network input ``1×3×Hp×Wp`` of frame n, no cut."""
        from ..media.color import lab_float32, network_image
        with self.times.measure("colour_conversion"), self.syncs.in_phase("source"):
            L = lab_float32(self.rgb[n], self.device)[0]
            self.L[n] = L
            return network_image(L), False

    def compose(self, n: int, ab):
        """Frame n's RGB ``h×w×3`` uint8 on the host from its ``1×2×Hp×Wp`` ab'."""
        from ..media.color import compose_rgb, unpad
        with self.times.measure("colour_conversion"):
            return compose_rgb(self.L.pop(n), unpad(ab[0], self.h, self.w))


class SyncCounter:
    """Host syncs in a block, split by phase: ``pipeline`` (the frame's network work), ``source`` (the
    frame's upload, the frame server's side) and ``readback`` (the output's copy to the host, which a
    frame server needs once per frame).

    Counted: ``torch.cuda.set_sync_debug_mode("warn")`` warnings (``.item()``, ``.cpu()``, blocking
    copies, ``torch.cuda.synchronize``, ``Stream.synchronize``) plus every ``torch.cuda.Event.synchronize``
    (a host wait the debug mode does not see), wrapped for the block. Without CUDA nothing can
    synchronise: counts stay 0 and ``enabled`` is False.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.phase = "pipeline"
        self.counts = {"pipeline": 0, "source": 0, "readback": 0}

    @contextlib.contextmanager
    def counting(self):
        if not self.enabled:
            yield self
            return
        import torch
        event_sync = torch.cuda.Event.synchronize

        def counted(event):
            self.counts[self.phase] += 1
            return event_sync(event)
        before = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            old_show = warnings.showwarning

            def show(message, *args, **kwargs):
                if "synchroniz" in str(message):
                    self.counts[self.phase] += 1
                else:
                    old_show(message, *args, **kwargs)
            warnings.showwarning = show
            torch.cuda.Event.synchronize = counted
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield self
            finally:
                torch.cuda.set_sync_debug_mode(before)
                torch.cuda.Event.synchronize = event_sync
                warnings.showwarning = old_show

    @contextlib.contextmanager
    def in_phase(self, phase: str):
        saved, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = saved


def _run_pass(be, config, reference, clip: _Clip, requested: int, key_batch: int, times, *, time_stages: bool,
              count_syncs: bool, watch_device: bool) -> dict:
    """Frames ``0…requested-1`` of ``clip`` through a fresh session; the first ``key_batch`` are not timed.

    The session spans ``clip.frames`` (one key batch more than requested), so the block that
    run-ahead computes past the last timed frame is part of the timed work, as the one computed
    during the warm-up is not, and no timed frame is the clip's last (which stores no memory).
    """
    import torch

    from .propagator import Propagator
    from .session import ClipSession
    from .source import FrameList
    dev = be.device
    cuda = dev.type == "cuda"
    prop = Propagator(be, config, [reference], config.long_term_usage_for(clip.frames), times)
    session = ClipSession(prop, FrameList(clip.frames, clip.image), key_batch=key_batch)

    syncs = clip.syncs = SyncCounter(count_syncs)

    def frame(n):
        res = session.result(n, defer_check=cuda)          # as Colorize: the flags are read with the copy-out
        with syncs.in_phase("readback"):
            out = clip.compose(n, res.ab)
            if res.check is not None:
                res.check.raise_if_bad()
        return out
    device_used = 0
    out = None
    with torch.inference_mode():
        t0 = time.perf_counter()
        for n in range(key_batch):
            out = frame(n)
        first_s = time.perf_counter() - t0
        if cuda:
            torch.cuda.synchronize(dev)
        times.enabled = time_stages
        with syncs.counting():
            t_start = time.perf_counter()
            for n in range(key_batch, requested):
                out = frame(n)
                if watch_device:
                    free, total = torch.cuda.mem_get_info(dev)
                    device_used = max(device_used, total - free)
        if cuda:
            torch.cuda.synchronize(dev)
        elapsed = time.perf_counter() - t_start
        times.enabled = False
    session.close()
    assert out is not None and out.shape == (clip.h, clip.w, 3)
    return {"elapsed": elapsed, "first_s": first_s, "syncs": dict(syncs.counts), "device_used": device_used}


def check_key_batch(key_batch) -> int:
    """``--key-batch`` as an int in 1…``MAX_KEY_BATCH``, or a one-line ``ValueError`` naming the flag."""
    import numbers

    from .keyahead import MAX_KEY_BATCH
    if isinstance(key_batch, bool) or not isinstance(key_batch, numbers.Integral) \
            or not 1 <= key_batch <= MAX_KEY_BATCH:
        raise ValueError(f"--key-batch must be an integer from 1 to {MAX_KEY_BATCH}, got {key_batch!r}")
    return int(key_batch)


def _key_batch(key_batch, device, backend_name: str = "torch") -> int:
    from .keyahead import default_key_batch
    if key_batch is None:
        return int(default_key_batch(device, backend_name))
    return check_key_batch(key_batch)


def run_bench(*, backend="torch", size_wh=(512, 288), frames: int | None = None, device: str | None = "cpu",
              device_id: int | None = None, fp16: bool = False, precision: str | None = None,
              tf32: bool | None = None, key_batch: int | None = None, weights=None, threads: int | None = None,
              config=None, options: dict | None = None) -> dict:
    """Run the benchmark and return the result as a dict (see the module docstring).

    size_wh: the inference size ``(W, H)`` (unpadded); frames: requested, the first key batch untimed (None:
    ``key_batch + max(11, 2·key_batch)``, whole key batches); precision/tf32: as ``Torch``'s (None = default);
    key_batch: frames per batched ``encode_key`` (None = ``keyahead.default_key_batch``; 1 = off);
    options: extra ``create_backend`` options (cache folders).
    """
    import torch

    from ..backends import create_backend
    from ..backends.base import StageTimes
    from ..media.color import lab_float32, network_ab, network_image, synthetic_rgb
    from .config import MemoryConfig
    from .geometry import padded_size
    from .propagator import Reference

    if frames is not None and frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame is not timed), got {frames}")
    if key_batch is not None:
        check_key_batch(key_batch)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    config = config or MemoryConfig()
    w, h = size_wh
    padded = padded_size(h, w)
    spec_options = {k: v for k, v in (("precision", precision), ("tf32", tf32)) if v is not None}
    t0 = time.perf_counter()
    be = create_backend(backend, weights=weights, device=device if device is not None else default_device(backend),
                        device_id=device_id, fp16=True if fp16 else None, padded_hw=padded,
                        **spec_options, **(options or {}))
    try:
        dev = be.device
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.synchronize(dev)
        load_s = time.perf_counter() - t0
        kb = _key_batch(key_batch, dev, be.name)
        frames = kb + max(11, 2 * kb) if frames is None else frames
        if frames <= kb:
            raise ValueError(f"--frames must be more than --key-batch ({kb}): the first key batch is not "
                             f"timed, got {frames}")
        ref_lab = lab_float32(synthetic_rgb(h, w, seed=2), dev)
        reference = Reference(network_image(ref_lab[0]), network_ab(ref_lab[1:]), frame=None)
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        times = StageTimes(sync_cuda=False)
        run = _run_pass(be, config, reference, _Clip(frames + kb, h, w, dev, times), frames, kb, times,
                        time_stages=not cuda, count_syncs=cuda, watch_device=False)
        gpu, stage_elapsed = None, run["elapsed"]
        if cuda:
            peak_alloc = torch.cuda.max_memory_allocated(dev)
            peak_reserved = torch.cuda.max_memory_reserved(dev)
            times = StageTimes(sync_cuda=True)
            staged = _run_pass(be, config, reference, _Clip(frames + kb, h, w, dev, times), frames, kb, times,
                               time_stages=True, count_syncs=False, watch_device=True)
            gpu = {"name": torch.cuda.get_device_name(dev),
                   "peak_torch_allocated_mib": _mib(peak_alloc), "peak_torch_reserved_mib": _mib(peak_reserved),
                   "peak_device_used_mib": _mib(staged["device_used"]),
                   "stage_pass_fps": round((frames - kb) / staged["elapsed"], 4)}
            stage_elapsed = staged["elapsed"]
        return _result(be, backend, run, times, gpu, frames=frames, kb=kb, size_wh=(w, h), padded=padded,
                       load_s=load_s, config=config, stage_elapsed=stage_elapsed)
    finally:
        be.close()


def _mib(n: int) -> float:
    return round(n / 2 ** 20, 1)


def _result(be, backend, run: dict, times, gpu, *, frames, kb, size_wh, padded, load_s, config,
            stage_elapsed: float) -> dict:
    import torch

    from ..util.cpuinfo import cores, cpu_name, describe
    w, h = size_wh
    timed = frames - kb
    elapsed = run["elapsed"]
    stages = {name: times.total.get(name, 0.0) for name in STAGE_ORDER}
    cuda = gpu is not None
    return {
        "backend": backend, "describe": be.describe(), "device": str(be.device),
        "precision": be.precision, "fp16": be.precision == "fp16", "tf32": bool(getattr(be, "tf32", False)),
        "key_batch": kb, "warmup_frames": kb,
        "size_wh": [w, h], "padded_wh": [padded[1], padded[0]], "frames": frames, "timed_frames": timed,
        "threads": torch.get_num_threads(), "load_s": round(load_s, 3), "first_frame_s": round(run["first_s"], 4),
        "fps": round(timed / elapsed, 4), "s_per_frame": round(elapsed / timed, 4),
        "ms_per_frame": {k: round(1000 * v / timed, 2) for k, v in stages.items()},
        "ms_per_call": {k: round(1000 * v / times.calls[k], 2) for k, v in stages.items() if times.calls.get(k)},
        "calls": {k: times.calls.get(k, 0) for k in STAGE_ORDER},
        "other_ms_per_frame": round(1000 * max(0.0, stage_elapsed - sum(stages.values())) / timed, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_vram_mib": gpu["peak_torch_allocated_mib"] if cuda else None,
        "host_syncs_per_frame": round(sum(run["syncs"].values()) / timed, 2) if cuda else None,
        "pipeline_syncs_per_frame": round(run["syncs"]["pipeline"] / timed, 2) if cuda else None,
        "source_syncs_per_frame": round(run["syncs"]["source"] / timed, 2) if cuda else None,
        "readback_syncs_per_frame": round(run["syncs"]["readback"] / timed, 2) if cuda else None,
        "cpu": describe(), "gpu": gpu,
        "machine": {"cpu": cpu_name(), "cores": cores(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": _version("onnxruntime"),
                    "tensorrt": _version("tensorrt")},
        "memory_config": {k: getattr(config, k) for k in ("mem_every", "max_mid_term_frames", "top_k")},
    }


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    for dist in {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
                 "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12")}[module]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None
