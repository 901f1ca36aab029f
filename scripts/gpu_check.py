"""Verify the GPU path in one command and print one table (run through scripts/gpu_check.sh).

Rows: parity of every case in tests/data/parity on PyTorch CUDA fp32, TF32 off, and fp16/bf16
deviation from our CUDA fp32 (bounds: vscolormnet/weights/parity.py); order independence through
``Colorize`` (20 frames: in order again, shuffled, 8 threads in flight); bench
(``runtime.benchmark.run_bench``) at 384/512 × fp32/fp16 × key batch 1/default on a 1920x1080
source (fps, host syncs per frame, peak VRAM); ONNX Runtime CUDA and TensorRT rows when installed
(one case fp32/fp16 and a bench at its size), each while ``--budget-s`` has room. A row that cannot
run says why; exit 1 if any row FAILs or errors; the table is printed whatever happened. The seeded
checkpoint is rebuilt into a temporary folder (``--weights`` reuses one). Without CUDA: one
"skipped" line, exit 0. torchvision must match the torch build, so it is never carried.

``--device cpu`` (implies ``--quick``): the same code on the CPU with one parity case, a 4-frame clip
and a 2-frame bench on a 100x56 source. ``--quick`` on CUDA: that small set on the GPU.
``--missing-deps`` prints the wheels to install for missing or too old modules (gpu_wheels/).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "data" / "parity"      # data only: nothing is imported from tests/
NEEDS = (("timm", "timm", "1.0.20"), ("platformdirs", "platformdirs", "3"), ("vapoursynth", "vapoursynth", "74"),
         ("skimage", "scikit_image", "0.22"), ("pytest", "pytest", "8"))   # (module, wheel name, minimum)
log = logging.getLogger("gpu_check")


def missing_deps() -> list[str]:
    """Wheel names of the modules in ``NEEDS`` that are missing or older than the minimum."""
    import importlib.util
    import re
    from importlib.metadata import PackageNotFoundError, version

    def numbers(v: str) -> tuple[int, ...]:       # '1.0.31rc1' → (1, 0, 31)
        return tuple(int(m.group()) for p in v.split(".")[:3] if (m := re.match(r"\d+", p)))
    out = []
    for module, dist, minimum in NEEDS:
        try:
            if importlib.util.find_spec(module) is None or numbers(version(dist.replace("_", "-"))) < numbers(minimum):
                out.append(dist)
        except PackageNotFoundError:
            continue
    return out


class Table:
    """The rows of the one table: (check, case, result, verdict) and the data behind each."""

    def __init__(self, budget_s: float):
        self.rows: list[dict] = []
        self.t0 = T0                        # the budget counts from the start (imports included)
        self.budget_s = budget_s

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def add(self, check: str, case: str, result: str, verdict: str, **data) -> None:
        self.rows.append({"check": check, "case": case, "result": result, "verdict": verdict, "data": data})
        log.info("[%3.0f s] %s | %s | %s | %s", time.perf_counter() - self.t0, check, case, result, verdict)

    def run(self, check: str, case: str, fn, need_s: float | None = None) -> None:
        """Add the row ``fn()`` returns as ``(result, verdict, data)``; an exception is an ERROR row.
        need_s: skip the row (n/a) when less of the time budget is left (the optional ORT/TensorRT rows)."""
        if need_s is not None and (left := self.left_s()) < need_s:
            self.add(check, case,
                     f"skipped: time budget ({left:.0f} s of --budget-s left, the row needs ~{need_s:.0f} s)", "n/a")
            return
        try:
            result, verdict, data = fn()
        except Exception as e:  # noqa: BLE001 - one broken row must not hide the others
            result, verdict, data = error_text(e), "ERROR", {}
        self.add(check, case, result, verdict, **data)

    def section(self, check: str, fn) -> None:
        """Run ``fn`` (which adds rows); an exception outside its rows (an import, a set-up) is one ERROR row."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the rows after it and the table must still come
            self.add(check, "-", error_text(e), "ERROR")

    def format(self) -> str:
        head = ("check", "case", "result", "verdict")
        cells = [head] + [tuple(r[k] for k in head) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(4)) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def failed(self) -> bool:
        return any(r["verdict"] in ("FAIL", "ERROR") for r in self.rows)


def error_text(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters of it)."""
    first = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{type(e).__name__}: {first}"


def _deviation(a, b) -> tuple[float, float]:
    import numpy as np
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d.mean())


def parity_rows(table: Table, spec_of, label: str, weights, cases, reduced: tuple[str, ...],
                need_s: float | None = None) -> None:
    """Each case on ``spec_of('fp32')`` against the official outputs, then each reduced precision against it
    (``need_s``: see ``Table.run``)."""
    import numpy as np

    from vscolormnet.runtime.frames import colorize_frames
    from vscolormnet.weights.parity import AB_MAX, AB_MEAN, FP16_MAX, FP16_MEAN, load_case, parity_problems

    def run(case, precision):
        c = load_case(CASES_DIR / case)
        return colorize_frames(c.frames_dir, c.ref, weights, None, first_frame_is_ref=c.first_frame_is_ref,
                               backend=spec_of(precision), device=None, device_id=None, fp16=None, progress=False)
    for case in cases:
        fp32 = {}

        def exact(case=case):
            res = fp32[case] = run(case, "fp32")
            c = load_case(CASES_DIR / case)
            mx, mean = _deviation(res.ab_pred, c.expected()["ab_pred"])
            problems = parity_problems(c, res.ab_pred, {"work_mem_size": res.work_mem_size,
                                                        "long_mem_size": res.long_mem_size,
                                                        "n_consolidations": res.n_consolidations,
                                                        "n_obsolete_removals": res.n_obsolete_removals})
            verdict, why = ("FAIL", "; " + problems[0][:100]) if problems else ("PASS", "")
            return (f"max abs Δab' {mx:.1e}, mean {mean:.1e} vs official (bound {AB_MAX:.0e}/{AB_MEAN:.0e}){why}",
                    verdict, {"max": mx, "mean": mean})
        table.run(f"parity {label} fp32", case, exact, need_s)
        for precision in reduced:
            def deviation(case=case, precision=precision):
                if case not in fp32:
                    return "no fp32 result to compare with", "n/a", {}
                mx, mean = _deviation(run(case, precision).ab_pred, fp32[case].ab_pred)
                if precision == "fp16":
                    ok = mx <= FP16_MAX and mean <= FP16_MEAN
                    return (f"max abs Δab' {mx:.1e}, mean {mean:.1e} vs our fp32 (bound {FP16_MAX}/{FP16_MEAN:.0e})",
                            "PASS" if ok else "FAIL", {"max": mx, "mean": mean})
                return (f"max abs Δab' {mx:.1e}, mean {mean:.1e} vs our fp32 (no bound stated)",
                        "info" if np.isfinite(mx) else "FAIL", {"max": mx, "mean": mean})
            table.run(f"{precision} vs fp32 {label}", case, deviation, need_s)


def order_rows(table: Table, device: str, weights, frames: int, precisions: tuple[str, ...]) -> None:
    """Colorize in order vs again in order, shuffled, and all frames at once on 8 threads."""
    try:
        import vapoursynth as vs
    except ImportError:
        table.add("order independence (Colorize)", device, "vapoursynth not installed", "n/a")
        return
    import numpy as np

    import vscolormnet as colormnet
    from vscolormnet.vs.synthetic import clip_in_format, colour_reference, planes
    core = vs.core
    with tempfile.TemporaryDirectory() as tmp:
        ref = colour_reference(Path(tmp) / "ref.png")
        clip = clip_in_format(vs.YUV444PS, n=frames)
        for precision in precisions:
            def node():
                return colormnet.Colorize(clip, ref, size="native", weights=str(weights), backend="torch",
                                          device=device, precision=precision, snapshot_interval=3)

            def check():
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
                verdict = "PASS" if shf == thr == rep == 0 else "FAIL"
                return (f"max abs Δ vs the first in-order run: repeat {rep:.1e}, shuffled {shf:.1e}, 8 threads {thr:.1e}",
                        verdict, {"repeat": rep, "shuffled": shf, "threads": thr})
            table.run(f"order independence {device} {precision}", f"Colorize {frames} frames YUV444PS", check)


def bench_rows(table: Table, backend: str, device: str, weights, sizes, precisions, frames: int, source: str,
               key_batches, options=None, need_s: float | None = None) -> None:
    """``run_bench`` per size × precision × key batch (None: the default): ``frames`` timed frames after the
    first key batch; fps, host syncs per frame, peak VRAM (``need_s``: see ``Table.run``)."""
    import torch

    from vscolormnet.runtime.benchmark import run_bench
    from vscolormnet.runtime.geometry import inference_geometry, parse_source_size
    from vscolormnet.runtime.keyahead import default_key_batch
    default = default_key_batch(torch.device(device))
    key_batches = list(dict.fromkeys(default if kb is None else kb for kb in key_batches))
    for size in sizes:
        g = inference_geometry(*parse_source_size(source), size)
        for precision in precisions:
            for kb in key_batches:
                def bench(precision=precision, kb=kb):
                    n = kb + frames                # the first key batch is not timed
                    r = run_bench(backend=backend, size_wh=(g.inf_width, g.inf_height), frames=n, device=device,
                                  precision=precision, key_batch=kb, weights=weights, options=options)
                    syncs = "n/a" if r["host_syncs_per_frame"] is None else f"{r['host_syncs_per_frame']:.1f}"
                    vram = "n/a" if r["peak_vram_mib"] is None else f"{r['peak_vram_mib']:.0f} MiB"
                    keep = {k: r[k] for k in ("fps", "key_batch", "host_syncs_per_frame", "peak_vram_mib",
                                              "peak_rss_mib", "ms_per_frame", "padded_wh", "timed_frames",
                                              "describe")}
                    return (f"{r['fps']:.2f} fps, {syncs} host syncs/frame, peak VRAM {vram}, "
                            f"{r['timed_frames']} timed frames", "info", keep)
                label = f"{kb} (default)" if kb == default else str(kb)
                table.run(f"bench {backend}-{device} {size} {precision} key-batch {label}",
                          f"{source} → {g.padded_hw[1]}x{g.padded_hw[0]}", bench, need_s)


# Seconds of the budget a graph-backend row may take: a TensorRT parity row builds six engines; the
# bench runs at the parity case's padded size, so it reuses the fp16 engines (and ORT its graphs).
ROW_NEED_S = {("ort", "parity"): 60, ("ort", "bench"): 45, ("trt", "parity"): 150, ("trt", "bench"): 60}


def graph_backend_rows(table: Table, weights, device: str, tmp: Path) -> None:
    """ONNX Runtime CUDA and TensorRT: parity of the first case (fp32, fp16) and one bench at its size, when
    present; each row only while the budget has room for it (``ROW_NEED_S``)."""
    import importlib.util

    from vscolormnet.backends import ORT, TRT
    from vscolormnet.backends.availability import ort_cuda_problem
    from vscolormnet.weights.parity import load_case
    cases = ["blackswan_short"]
    w, h = load_case(CASES_DIR / cases[0]).config["size_wh"]          # 224x129 → padded 224x224, as the parity rows
    for name, spec in (("ort", ORT), ("trt", TRT)):
        if name == "ort" and (why := ort_cuda_problem()):
            short = ("onnxruntime-gpu not installed" if importlib.util.find_spec("onnxruntime") is None
                     else "onnxruntime-gpu not installed (onnxruntime has no CUDAExecutionProvider)")
            table.add("ort-cuda", "-", short, "n/a", why=why)
            continue
        if name == "trt" and importlib.util.find_spec("tensorrt") is None:
            table.add("tensorrt", "-", "tensorrt not installed", "n/a")
            continue
        if device != "cuda":
            table.add(f"{name}-cuda", "-", "installed; not run with --device cpu", "n/a")
            continue
        dirs = {"onnx_dir": str(tmp / "onnx")}
        if name == "trt":
            dirs["engine_dir"] = str(tmp / "trt")
        extra = {} if name == "trt" else {"device": "cuda"}
        parity_rows(table, lambda p, s=spec, d=dirs, e=extra: s(precision=p, tf32=False, **e, **d), f"{name}-cuda",
                    weights, cases, ("fp16",), need_s=ROW_NEED_S[name, "parity"])
        bench_rows(table, name, "cuda", weights, ["native"], ["fp16"], 16, f"{w}x{h}", [None], options=dirs,
                   need_s=ROW_NEED_S[name, "bench"])


def header(device: str) -> str:
    import platform

    import torch
    if device == "cuda":
        try:
            props = torch.cuda.get_device_properties(0)
            gpu = f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB), CUDA {torch.version.cuda}"
        except Exception as e:  # noqa: BLE001 - a broken CUDA context must not hide the table
            gpu = f"GPU ({error_text(e)}), CUDA {torch.version.cuda}"
    else:
        gpu = "CPU smoke run (for tests)"
    return f"gpu_check: {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def _cuda_visible() -> bool:
    """True when PyTorch is importable and sees a CUDA device (the check will run)."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--weights", metavar="CKPT", help="use this seeded checkpoint instead of rebuilding it")
    p.add_argument("--budget-s", type=float, default=420,
                   help="start an ORT/TensorRT row only while this leaves it room (420)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--missing-deps", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.missing_deps:      # nothing to install where the check will only say it skipped
        print("\n".join(missing_deps() if args.device == "cpu" or _cuda_visible() else []))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        import torch
    except ImportError as e:
        if Path("/dev/nvidiactl").exists():
            print(f"gpu_check: error: PyTorch is not importable by {sys.executable} ({e}); set PYTHON")
            return 1
        print(f"gpu_check: skipped: CUDA is not available (no NVIDIA device, and no PyTorch in {sys.executable})")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        why = ("a CPU-only torch build" if torch.version.cuda is None
               else f"no NVIDIA GPU or driver visible to torch {torch.__version__}")
        print(f"gpu_check: skipped: CUDA is not available ({why})")
        return 0
    absent = set(missing_deps())
    if (missing := [d for _, d, _ in NEEDS if d in absent and d in ("timm", "scikit_image", "pytest")]):
        print(f"gpu_check: error: {', '.join(missing)} not installed (see the header of scripts/gpu_check.sh)")
        return 1
    if why := torchvision_problem():
        print(f"gpu_check: error: {why}")
        return 1
    sys.path.insert(0, str(ROOT))
    table = Table(args.budget_s)
    dev = args.device
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
            tmp = Path(tmp)
            weights = checkpoint(table, args.weights, tmp)
            if weights is not None:
                all_rows(table, dev, weights, tmp, quick=args.quick or dev == "cpu")   # the CPU run: a smoke test
    finally:              # the rows so far, also when a row raised past its guard (Ctrl-C, a bug here)
        elapsed = time.perf_counter() - table.t0
        print(header(dev))
        print(table.format())
        print(f"gpu_check: {'FAILED' if table.failed() else 'ok'} ({len(table.rows)} rows, {elapsed:.0f} s)")
        if args.json:               # temp name + rename: a killed run leaves no torn report
            from vscolormnet.util.files import atomic_write_text
            atomic_write_text(args.json, json.dumps({"header": header(dev), "elapsed_s": round(elapsed, 1),
                                                     "failed": table.failed(), "rows": table.rows}, indent=1))
    return 1 if table.failed() else 0


def torchvision_problem() -> str | None:
    """timm (1.0.x) imports torchvision; it must match the torch build, so it is never carried as a wheel."""
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a mismatched build fails with other errors than ImportError
        import torch
        return (f"torchvision is not importable by {sys.executable} ({error_text(e)}); timm needs it: install the "
                f"torchvision build that matches torch {torch.__version__} (it cannot be carried in gpu_wheels/)")
    return None


def checkpoint(table: Table, given: str | None, tmp: Path) -> Path | None:
    """``--weights``, or the seeded checkpoint rebuilt into ``tmp``; None (and an ERROR row) if that fails."""
    if given:
        return Path(given)
    weights = tmp / "colormnet_random_seed0.pth"
    try:
        from vscolormnet.weights.seeded import build
        log.info("rebuilding the seeded checkpoint into %s", weights)
        build(str(weights), seed=0)
    except Exception as e:  # noqa: BLE001 - the header and the table must still come
        table.add("seeded checkpoint", "rebuild (seed 0)", error_text(e), "ERROR")
        return None
    return weights


def all_rows(table: Table, dev: str, weights: Path, tmp: Path, quick: bool) -> None:
    """Every section; one that fails outside its rows is one ERROR row, and the next still runs."""
    def parity():
        CASES = sorted(p.name for p in CASES_DIR.iterdir())
        from vscolormnet.backends import Torch
        # No reduced precision on the CPU: emulated bf16 (no AVX512-BF16) takes minutes per case there.
        reduced = ("fp16", "bf16") if dev == "cuda" else ()
        parity_rows(table, lambda precision: Torch(device=dev, precision=precision, tf32=False),
                    f"torch-{dev}" + (" (TF32 off)" if dev == "cuda" else ""), weights,
                    ["odd_size"] if quick else CASES, reduced)

    def bench():
        if quick:
            bench_rows(table, "torch", dev, weights, ["native"], ["fp32"], 1, "100x56", [1, None])
        else:
            bench_rows(table, "torch", dev, weights, ["384", "512"], ["fp32", "fp16"], 16, "1920x1080", [1, None])
    table.section(f"parity torch-{dev}", parity)
    # 20 frames: blocks of the default key batch (8 on CUDA) and snapshots (every 3) cut across each other.
    precisions = ("fp32",) if quick else ("fp32", "fp16")
    table.section(f"order independence {dev}", lambda: order_rows(table, dev, weights, 4 if quick else 20, precisions))
    table.section(f"bench torch-{dev}", bench)
    table.section("ort/tensorrt", lambda: graph_backend_rows(table, weights, dev, tmp))

if __name__ == "__main__":
    sys.exit(main())
