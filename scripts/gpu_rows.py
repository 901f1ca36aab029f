"""The rows of gpu_check: parity, precision deviation, order, bench with speed targets, host syncs, memory.

Each function adds rows to a ``gpu_table.Table`` from a ``gpu_plan.Plan`` (what runs where, how
big, which target). The same code runs on CUDA (the check) and on the CPU (the rehearsal, small);
a row that needs CUDA says ``CUDA-only`` on the CPU and is never counted as a pass.
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

from gpu_plan import CASES_DIR, DDCOLOR_DIR, Plan
from gpu_table import CUDA_ONLY, FAIL, NOT_INSTALLED, PASS, Table, verdict


def _deviation(a, b) -> tuple[float, float]:
    import numpy as np
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d.mean())


def _case_input(case: str, frames: int | None, tmp: Path):
    """The case and its frames folder, cut to the first ``frames`` (the run is causal: frame t of a short
    run is frame t of the whole run)."""
    from vscolormnet.weights.parity import load_case
    c = load_case(CASES_DIR / case)
    if frames is None:
        return c, c.frames_dir
    short = tmp / f"{case}-{frames}"
    if not short.exists():
        short.mkdir(parents=True)
        for p in sorted(c.frames_dir.glob("*.png"))[:frames]:
            (short / p.name).symlink_to(p)
    return c, short


def parity_rows(table: Table, plan: Plan, spec_of, label: str, weights, tmp: Path, cases, frames,
                reduced: dict) -> None:
    """Each case on ``spec_of('fp32')`` against the official outputs (``parity_problems``, the first
    ``frames``), then each reduced precision in ``reduced`` (precision → (cases, frames) or a mark)
    against our own fp32 run of the same frames, within ``weights/parity.py``'s bounds."""
    from vscolormnet.runtime.frames import colorize_frames
    from vscolormnet.weights.parity import AB_MAX, AB_MEAN, BOUNDS, parity_problems

    def run(case, precision, n):
        c, folder = _case_input(case, n, tmp)
        return colorize_frames(folder, c.ref, weights, None, first_frame_is_ref=c.first_frame_is_ref,
                               backend=spec_of(precision), device=None, device_id=None, fp16=None, progress=False)
    fp32 = {}
    for case in cases:
        def exact(case=case):
            res = fp32[case] = run(case, "fp32", frames)
            c = _case_input(case, None, tmp)[0]
            n = len(res.ab_pred)
            mx, mean = _deviation(res.ab_pred, c.expected()["ab_pred"][:n])
            cut = _Cut(c, n)
            problems = parity_problems(cut, res.ab_pred, {"work_mem_size": res.work_mem_size,
                                                          "long_mem_size": res.long_mem_size,
                                                          "n_consolidations": res.n_consolidations,
                                                          "n_obsolete_removals": res.n_obsolete_removals})
            why = "; " + problems[0][:100] if problems else ""
            text = f"{n} frames: max abs Δab' {mx:.1e}, mean {mean:.1e} vs official (≤ {AB_MAX:.0e}/{AB_MEAN:.0e})"
            return text + why, verdict(not problems), {"max": mx, "mean": mean, "frames": n}
        table.run(f"parity {label} fp32", case, exact)
    for precision, what in reduced.items():
        if isinstance(what, str):                     # a mark: the row cannot run here
            table.add(f"{precision} vs fp32 {label}", "-", what, CUDA_ONLY)
            continue
        p_cases, p_frames = what
        for case in p_cases:
            def deviation(case=case, precision=precision, p_frames=p_frames):
                if case not in fp32:
                    raise RuntimeError("no fp32 result of this case to compare with")
                c = _case_input(case, None, tmp)[0]
                if p_frames is not None and c.first_frame_is_ref:
                    p_frames = max(p_frames, 2)        # frame 0 is the reference: its ab is copied, Δ = 0
                res = run(case, precision, p_frames)
                n = len(res.ab_pred)
                mx, mean = _deviation(res.ab_pred, fp32[case].ab_pred[:n])
                bmax, bmean = BOUNDS[precision]
                return (f"{n} frames: max abs Δab' {mx:.1e}, mean {mean:.1e} vs our fp32 (≤ {bmax}/{bmean:.0e})",
                        verdict(mx <= bmax and mean <= bmean), {"max": mx, "mean": mean, "frames": n})
            table.run(f"{precision} vs fp32 {label}", case, deviation)


class _Cut:
    """A parity case cut to its first ``n`` frames (what ``parity_problems`` compares against)."""

    def __init__(self, case, n: int):
        self.case, self.n, self.folder, self.frames_dir = case, n, case.folder, case.frames_dir

    def expected(self):
        return {k: v[:self.n] for k, v in self.case.expected().items()}


def order_rows(table: Table, plan: Plan, weights) -> None:
    """Colorize in order vs again in order, shuffled, and all frames at once on 8 threads."""
    try:
        import vapoursynth as vs
    except ImportError:
        table.add("order independence (Colorize)", plan.device, "vapoursynth not installed", NOT_INSTALLED)
        return
    import numpy as np

    import vscolormnet as colormnet
    from vscolormnet.vs.synthetic import clip_in_format, colour_reference, planes
    core = vs.core
    frames = plan.order_frames
    for precision in ("fp32", "fp16"):
        check_name = f"order independence {plan.device} {precision}"
        if plan.device == "cpu" and precision == "fp16":
            table.add(check_name, "-", "fp16 runs on CUDA only (refused on the CPU)", CUDA_ONLY)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            ref = colour_reference(Path(tmp) / "ref.png")
            clip = clip_in_format(vs.YUV444PS, n=frames)

            def node(clip=clip, ref=ref, precision=precision):
                return colormnet.Colorize(clip, ref, size="native", weights=str(weights), backend="torch",
                                          device=plan.device, precision=precision, snapshot_interval=3)

            def check(node=node):
                keep = node()                      # holds the shared network: the other nodes reuse it
                first = [planes(f) for f in keep.frames()]
                again = [planes(f) for f in node().frames()]
                order = list(range(frames))
                random.Random(1).shuffle(order)
                out = node()
                shuffled = {n: planes(out.get_frame(n)) for n in order}
                saved, core.num_threads = core.num_threads, 8
                try:
                    out = node()
                    futures = {n: out.get_frame_async(n) for n in reversed(range(frames))}
                    threaded = {n: planes(f.result()) for n, f in futures.items()}
                finally:
                    core.num_threads = saved

                def worst(other):
                    return max(float(np.abs(a - b).max()) for n in range(frames) for a, b in zip(first[n], other[n]))
                rep, shf, thr = worst(again), worst(shuffled), worst(threaded)
                text = f"max abs Δ vs the first in-order run: repeat {rep:.1e}, shuffled {shf:.1e}, 8 threads {thr:.1e}"
                return text, verdict(shf == thr == rep == 0), {"repeat": rep, "shuffled": shf, "threads": thr}
            table.run(check_name, f"Colorize {frames} frames YUV444PS", check)


def bench_rows(table: Table, plan: Plan, backend: str, weights, precisions, sizes, source: str, key_batches,
               options=None) -> dict:
    """``run_bench`` per size × precision × key batch (None: the backend's own default), each row against its
    fps target (``plan.fps_target``). Returns the results by (size, precision, key batch)."""
    import torch

    from vscolormnet.runtime.benchmark import run_bench
    from vscolormnet.runtime.geometry import inference_geometry, parse_source_size
    from vscolormnet.runtime.keyahead import default_key_batch
    default = default_key_batch(torch.device(plan.device), backend)
    key_batches = list(dict.fromkeys(default if kb is None else kb for kb in key_batches))
    results = {}
    for size in sizes:
        g = inference_geometry(*parse_source_size(source), size)
        for precision in precisions:
            for kb in key_batches:
                label = f"{kb} (default)" if kb == default else str(kb)
                name = f"bench {backend}-{plan.device} {size} {precision} key-batch {label}"
                if plan.device == "cpu" and precision == "fp16" and backend == "torch":
                    table.add(name, "-", "fp16 runs on CUDA only (refused on the CPU)", CUDA_ONLY)
                    continue

                def bench(precision=precision, kb=kb, size=size, g=g):
                    n = kb + plan.bench_frames                # the first key batch is not timed
                    r = run_bench(backend=backend, size_wh=(g.inf_width, g.inf_height), frames=n,
                                  device=plan.device, precision=precision, key_batch=kb, weights=weights,
                                  options=options)
                    results[size, precision, kb == default] = r
                    target, why = plan.fps_target(backend, size, precision, kb == default)
                    vram = "" if r["peak_vram_mib"] is None else f", peak VRAM {r['peak_vram_mib']:.0f} MiB"
                    keep = {k: r.get(k) for k in ("fps", "key_batch", "host_syncs_per_frame", "pipeline_syncs_per_frame",
                                                  "source_syncs_per_frame", "readback_syncs_per_frame",
                                                  "peak_vram_mib", "peak_rss_mib", "padded_wh", "timed_frames")}
                    return (f"{r['fps']:.2f} fps (target ≥ {target:g}: {why}), {r['timed_frames']} timed frames{vram}",
                            verdict(r["fps"] >= target), {**keep, "target_fps": target})
                table.run(name, f"{source} → {g.padded_hw[1]}x{g.padded_hw[0]}", bench)
    return results


def sync_row(table: Table, plan: Plan, results: dict) -> None:
    """Host syncs per frame in the pipeline (``SyncCounter``) over the timed steady-state frames of the 512
    fp16 default-key-batch bench; target 0. The frame's upload and its output read-back (one each per
    frame, what a frame server needs) are reported beside it, not counted against the target."""
    name = "host syncs per frame (pipeline, steady state)"
    if plan.device != "cuda":
        table.add(name, "-", "CUDA-only: the CPU has no device to wait for (the counting code ran, counted 0)",
                  CUDA_ONLY)
        return
    r = results.get(("512", "fp16", True))
    if r is None:
        table.add(name, "512 fp16 key-batch default", "the bench row it reads did not run", FAIL)
        return
    pipe = r["pipeline_syncs_per_frame"]
    table.add(name, "torch 512 fp16 key-batch default",
              f"{pipe:.2f} in the pipeline (target 0); beside it {r['source_syncs_per_frame']:.2f} upload, "
              f"{r['readback_syncs_per_frame']:.2f} read-back per frame", verdict(pipe == 0),
              pipeline=pipe, source=r["source_syncs_per_frame"], readback=r["readback_syncs_per_frame"])


def _rss_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def memory_row(table: Table, plan: Plan, weights) -> None:
    """Peak memory of a 3-shot clip with a reference per shot through Colorize (torch): on CUDA
    ``max_memory_allocated`` ≤ 2 GiB; on the CPU peak RSS over the run's start stands in (marked)."""
    try:
        import vapoursynth as vs
    except ImportError:
        table.add("memory 3 shots", plan.device, "vapoursynth not installed", NOT_INSTALLED)
        return
    import torch

    import vscolormnet as colormnet
    from vscolormnet.media.color import synthetic_rgb
    from vscolormnet.vs.synthetic import clip_in_format
    w, h = (int(v) for v in plan.memory_source.split("x"))
    per_shot, limit_mib = plan.memory_frames, 2048
    cuda = plan.device == "cuda"

    def run():
        clip = clip_in_format(vs.YUV420P8 if cuda else vs.YUV444PS, n=3 * per_shot, w=w, h=h)
        refs = [synthetic_rgb(h, w, seed=10 + i) for i in range(3)]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")          # resets VmHWM to the current RSS
            before = _rss_kib("VmRSS") * 1024
        out = colormnet.Colorize(clip, refs, ref_frames=[0, per_shot, 2 * per_shot], cuts=[per_shot, 2 * per_shot],
                                 size=plan.memory_size, weights=str(weights), backend="torch", device=plan.device,
                                 precision=plan.memory_precision)
        for f in out.frames():
            del f
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            what = "torch max_memory_allocated (weights included)"
        else:
            peak = _rss_kib("VmHWM") * 1024 - before
            what = "CPU: peak RSS over the run's start stands in for VRAM (weights included)"
        del out
        mib = peak / 2 ** 20
        return (f"{mib:.0f} MiB ≤ {limit_mib} MiB? {what}; {3 * per_shot} frames, {plan.memory_precision}",
                verdict(mib <= limit_mib), {"peak_mib": round(mib, 1), "before_mib": round(before / 2 ** 20, 1)})
    table.run(f"memory torch-{plan.device} 3 shots, a reference each", f"{w}x{h} at {plan.memory_size}", run)


def graph_backend_rows(table: Table, plan: Plan, weights, tmp: Path, onnx_dir: str | None = None) -> None:
    """TensorRT first, then ONNX Runtime: parity (fp32, fp16 deviation) and a bench with their own key-batch
    default (1) against their fps targets, on CUDA; on the CPU the ORT rows run on its CPU provider and
    the CUDA ones say why not. Never skipped when installed."""
    import importlib.util

    from vscolormnet.backends import ORT, TRT
    from vscolormnet.backends.availability import ort_cuda_problem
    dirs = {"onnx_dir": onnx_dir or str(tmp / "onnx")}
    if importlib.util.find_spec("tensorrt") is None:
        table.add("tensorrt", "-", "tensorrt not installed", NOT_INSTALLED)
    elif plan.device != "cuda":
        table.add("tensorrt", "-", "installed; TensorRT runs on CUDA only", CUDA_ONLY)
    else:
        trt_dirs = {**dirs, "engine_dir": str(tmp / "trt")}
        parity_rows(table, plan, lambda p: TRT(precision=p, tf32=False, **trt_dirs), "trt-cuda", weights, tmp,
                    plan.graph_cases, None, {"fp16": (plan.graph_cases, None)})
        bench_rows(table, plan, "trt", weights, ["fp16"], ["512"], plan.bench_source, [None], options=trt_dirs)
    ort_devices = ["cuda"] if plan.device == "cuda" else ["cpu", "cuda"]
    for dev in ort_devices:
        if importlib.util.find_spec("onnxruntime") is None:
            table.add(f"ort-{dev}", "-", "onnxruntime not installed", NOT_INSTALLED)
            continue
        if dev == "cuda" and (why := ort_cuda_problem()):
            table.add("ort-cuda", "-", "onnxruntime-gpu not installed (no CUDAExecutionProvider)", NOT_INSTALLED,
                      why=why)
            continue
        if dev == "cuda" and plan.device != "cuda":
            table.add("ort-cuda", "-", "installed; not run with --device cpu", CUDA_ONLY)
            continue
        reduced = {"fp16": (plan.graph_cases, plan.graph_frames)} if dev == "cuda" else {}
        parity_rows(table, plan, lambda p, d=dev: ORT(device=d, precision=p, tf32=False, **dirs), f"ort-{dev}",
                    weights, tmp, plan.graph_cases, plan.graph_frames, reduced)
        bench_rows(table, plan, "ort", weights, ["fp16" if dev == "cuda" else "fp32"], plan.graph_bench_sizes,
                   plan.graph_bench_source, [None], options=dirs)


def ddcolor_rows(table: Table, plan: Plan, tmp: Path, given: str | None) -> None:
    """DDColor parity through ``runtime.image_colorizer.colorize_image`` on the cases in tests/data/ddcolor
    (the tiny one on the CPU), within the cases' bounds: ab max 1e-2, mean 1e-3 Lab units."""
    import importlib.util
    if importlib.util.find_spec("vscolormnet.model.ddcolor") is None:
        return                                                   # not in this tree yet: no row
    if importlib.util.find_spec("cv2") is None:
        table.add("ddcolor parity", "-", "opencv-python-headless not installed (its wheel, 61 MiB, does not fit "
                  "the 64 MiB carried with the tree)", NOT_INSTALLED)
        return
    import json

    import numpy as np

    from vscolormnet.media.images import read_rgb_like_opencv
    from vscolormnet.runtime.image_colorizer import colorize_image, open_colorizer
    for case in plan.ddcolor_cases:
        def run(case=case):
            folder = DDCOLOR_DIR / case
            cfg = json.loads((folder / "config.json").read_text())
            names = (cfg["ckpt_file"], f"ddcolor_{cfg['model']}_seed{cfg['seed']}.pth")    # the case's, the tests' cache's
            found = [Path(given) / n for n in names if given and (Path(given) / n).exists()]
            weights = found[0] if found else tmp / cfg["ckpt_file"]
            if not weights.exists():
                from vscolormnet.weights.seeded_ddcolor import build
                build(weights, cfg["model"], seed=cfg["seed"])
            with np.load(folder / "outputs.npz") as z:
                want = {k: z[k] for k in z.files}
            with open_colorizer(f"ddcolor-{cfg['model']}", weights, input_size=cfg["input_size"], backend="torch",
                                device=plan.device, precision="fp32", tf32=False) as colorizer:
                _, ab_net, ab_full = colorize_image(read_rgb_like_opencv(folder / cfg["image"]), colorizer)
            mx, mean = _deviation(ab_full, want["ab_full"])
            mx_net, _ = _deviation(ab_net, want["ab_net"])
            ok = max(mx, mx_net) <= 1e-2 and mean <= 1e-3
            return (f"max abs Δab {max(mx, mx_net):.1e}, mean {mean:.1e} Lab vs official (≤ 1e-2/1e-3)",
                    verdict(ok), {"max": max(mx, mx_net), "mean": mean})
        table.run(f"ddcolor parity torch-{plan.device} fp32", case, run)


def wall_time_row(table: Table, plan: Plan, budget_s: float) -> None:
    """The whole check within ``budget_s`` (8 minutes) on the GPU; on the CPU the rehearsal's own time is
    reported and the row is marked (CPU seconds say nothing about GPU seconds)."""
    s = table.elapsed_s()
    if plan.device == "cuda":
        table.add("check wall time", "-", f"{s:.0f} s (target ≤ {budget_s:.0f} s)", verdict(s <= budget_s), elapsed=s)
    else:
        table.add("check wall time", "-", f"{s:.0f} s on the CPU; the ≤ {budget_s:.0f} s target is for the GPU run",
                  CUDA_ONLY, elapsed=s)


__all__ = ["PASS", "bench_rows", "ddcolor_rows", "graph_backend_rows", "memory_row", "order_rows", "parity_rows",
           "sync_row", "wall_time_row"]
