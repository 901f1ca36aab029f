"""Verify the GPU path in one command and print one table of rows that pass or fail (run through gpu_check.sh).

Rows, in order: TensorRT (first: its engine builds are the slow part, and it is never skipped when
installed) and ONNX Runtime (parity fp32, fp16 deviation, bench at 512 with their own key-batch
default 1); parity of every tests/data/parity case on PyTorch fp32 (TF32 off) ≤ 1e-3 and the fp16/bf16
deviation from our fp32 within weights/parity.py's bounds; order independence through ``Colorize``;
bench at 384/512 × fp32/fp16 × key batch 1/default on a 1920x1080 source against fps targets
(torch fp16 ≥ 100 fps, TensorRT fp16 ≥ 200 fps at 512: gpu_plan.py); host syncs per frame in the
pipeline (target 0); peak VRAM of a 3-shot clip with a reference per shot ≤ 2 GiB; DDColor parity
(when the tree has it and opencv is installed); the check's wall time ≤ ``--budget-s`` (480). A row
that raises is an ERROR row; exit 1 if any row FAILs or errors; the table is printed whatever happened.
The seeded checkpoint is rebuilt into a temporary folder (``--weights`` reuses one). Without CUDA:
one "skipped" line, exit 0.

``--device cpu``: the rehearsal. The same rows at small sizes on the CPU (gpu_plan.py: parity cases cut
to their first 2 frames, bf16 on the smallest case, ORT on its CPU provider, CPU fps floors, peak RSS
for VRAM); rows that need CUDA say ``CUDA-only`` and never count as passes.
``--missing-deps`` prints the wheels to install for missing or too old modules (gpu_wheels/).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))          # gpu_plan, gpu_rows, gpu_table beside it
from gpu_plan import ROOT, plan_for
from gpu_table import ERROR, PASS, Table, error_text

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
        gpu = "CPU rehearsal (small sizes; CUDA-only rows marked)"
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
    p.add_argument("--budget-s", type=float, default=480, help="the whole check's wall-time target (480 s)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: rehearse the whole table, small, on the CPU")
    p.add_argument("--case-frames", type=int, help="frames of each parity case (default: all; 2 with --device cpu)")
    p.add_argument("--bf16-frames", type=int, help="with --device cpu: frames of the bf16 row (1)")
    p.add_argument("--onnx-dir", metavar="DIR", help="reuse this ONNX graph cache (default: a fresh temporary one)")
    p.add_argument("--ddcolor-weights", metavar="DIR", help="a folder with the seeded DDColor checkpoints")
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
    table = Table(T0)
    dev = args.device
    plan = plan_for(dev, args.case_frames, args.bf16_frames)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
            tmp = Path(tmp)
            weights = checkpoint(table, args.weights, tmp)
            if weights is not None:
                all_rows(table, plan, weights, tmp, args)
    finally:              # the rows so far, also when a row raised past its guard (Ctrl-C, a bug here)
        elapsed = table.elapsed_s()
        counts = table.counts()
        print(header(dev))
        print(table.format())
        tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        print(f"gpu_check: {'FAILED' if table.failed() else 'ok'} ({len(table.rows)} rows: {tally}; {elapsed:.0f} s)")
        if args.json:               # temp name + rename: a killed run leaves no torn report
            from vscolormnet.util.files import atomic_write_text
            atomic_write_text(args.json, json.dumps({"header": header(dev), "elapsed_s": round(elapsed, 1),
                                                     "failed": table.failed(), "passed": counts.get(PASS, 0),
                                                     "rows": table.rows}, indent=1))
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
        table.add("seeded checkpoint", "rebuild (seed 0)", error_text(e), ERROR)
        return None
    return weights


def all_rows(table: Table, plan, weights: Path, tmp: Path, args) -> None:
    """Every section, TensorRT/ORT first; one that fails outside its rows is one ERROR row, and the next runs."""
    import gpu_rows as rows

    from vscolormnet.backends import Torch
    dev = plan.device
    label = f"torch-{dev}" + (" (TF32 off)" if dev == "cuda" else "")
    results: dict = {}
    memory = lambda: table.section(f"memory torch-{dev}", lambda: rows.memory_row(table, plan, weights))
    if dev == "cpu":           # peak RSS stands in for VRAM only before other rows leave freed memory behind
        memory()
    table.section("ort/tensorrt", lambda: rows.graph_backend_rows(table, plan, weights, tmp, args.onnx_dir))
    table.section(f"parity torch-{dev}", lambda: rows.parity_rows(
        table, plan, lambda p: Torch(device=dev, precision=p, tf32=False), label, weights, tmp, plan.cases,
        plan.case_frames, plan.reduced))
    table.section(f"order independence {dev}", lambda: rows.order_rows(table, plan, weights))
    table.section(f"bench torch-{dev}", lambda: results.update(rows.bench_rows(
        table, plan, "torch", weights, ("fp32", "fp16"), plan.bench_sizes, plan.bench_source, (1, None))))
    table.section("host syncs", lambda: rows.sync_row(table, plan, results))
    if dev == "cuda":
        memory()
    table.section("ddcolor", lambda: rows.ddcolor_rows(table, plan, tmp, args.ddcolor_weights))
    rows.wall_time_row(table, plan, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
