"""bench: frames per second, milliseconds per stage, memory and host syncs on a synthetic clip, any backend.

The clip (``benchmark``: synthetic grey frames and a colour exemplar) is at the inference size
``Colorize`` would use for ``--size`` and ``--source`` (``geometry``: preset of the longest side,
aspect kept, padded to multiples of 112). It runs through ``ClipSession`` as in ``Colorize``, with
``--key-batch N`` frames' keys encoded in one batched call (``--key-batch 1``: run-ahead off; default:
``keyahead.default_key_batch`` for the device). Model loading (and the ONNX export or engine build on
first use) and the first key batch are not timed. Stages: encode_key, memory_readout,
short_term_attention, decoder, encode_value (measured inside ``core.Propagator``) and
colour_conversion (Lab conversion in, RGB composition out). On CUDA also peak VRAM and host syncs
per frame (torch's sync debug mode).

``--model ddcolor-large|ddcolor-tiny`` measures DDColor's forwards per second at ``--input-size``
instead (``bench_ddcolor``); without ``--model`` (or ``--model colormnet``) nothing changes.
Without ``--weights`` the default checkpoint is used. For a run without the real weights,
build the seeded test checkpoint first: ``python -m vscolormnet.weights.seeded OUT.pth``
(speed does not depend on the weights' values).

Human-readable results go to stderr; ``--json`` prints one JSON object on stdout. Every
argument is checked before the weights are loaded (one line naming the flag, exit 2).
"""
from __future__ import annotations

import json
import sys

from ..runtime.benchmark import STAGE_ORDER, default_device, run_bench  # noqa: F401  (re-exported)

HELP = "benchmark a backend on a synthetic clip: fps, ms per stage, peak memory, host syncs"


def add_arguments(p) -> None:  # noqa: D103
    from ..model.ddcolor import DEFAULT_INPUT_SIZE
    from .colorize_frames import add_backend_arguments, add_memory_arguments
    from .export import add_geometry_arguments
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="colormnet (default: the clip benchmark below), or ddcolor-large / ddcolor-tiny: DDColor "
                        "forwards per second at --input-size (commands/bench_ddcolor.py)")
    p.add_argument("--input-size", type=int, default=None, metavar="S",
                   help=f"with --model ddcolor-…: the square size the network runs at, a multiple of 32 "
                        f"({DEFAULT_INPUT_SIZE})")
    add_geometry_arguments(p)
    p.add_argument("--frames", type=int, default=None,
                   help="frames to run, the first key batch untimed (default: key batch + max(11, 2 × key batch): "
                        "12 on the CPU, 24 on CUDA)")
    p.add_argument("--key-batch", type=int, default=None, metavar="N",
                   help="frames whose keys are encoded in one batched call (1: no run-ahead; "
                        "at most 64; default: the device's, keyahead.default_key_batch)")
    p.add_argument("--weights", default=None, metavar="CKPT",
                   help="checkpoint of the model (default: the downloaded one)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--instances", type=int, default=None, metavar="N",
                   help="instead: process memory of N Colorize nodes (dropped one by one; spliced per shot vs one "
                        "node), each scenario in its own process; --frames-per-instance frames each")
    p.add_argument("--frames-per-instance", type=int, default=2, metavar="F", help="with --instances (default 2)")
    p.add_argument("--onnx-dir", default=None, metavar="DIR", help="ONNX cache folder for ort/trt/auto, must exist")
    p.add_argument("--engine-dir", default=None, metavar="DIR", help="TensorRT engine folder for trt/auto, must exist")
    add_backend_arguments(p)
    add_memory_arguments(p)


def cache_options(backend: str, onnx_dir=None, engine_dir=None) -> dict:
    """``create_backend`` options for the cache folders of ``backend`` (only the fields it has)."""
    from ..backends import ORT, TRT
    if backend == "ort":
        return {"onnx_dir": onnx_dir} if onnx_dir else {}
    if backend == "trt":
        return {k: v for k, v in (("onnx_dir", onnx_dir), ("engine_dir", engine_dir)) if v}
    if backend == "auto" and (onnx_dir or engine_dir):
        return {"ort": ORT(onnx_dir=onnx_dir), "trt": TRT(onnx_dir=onnx_dir, engine_dir=engine_dir)}
    return {}


def format_result(r: dict) -> str:
    """The human-readable table."""
    lines = [f"bench: {r['describe']}, {r['size_wh'][0]}x{r['size_wh'][1]} (padded {r['padded_wh'][0]}x"
             f"{r['padded_wh'][1]}), key batch {r['key_batch']}, {r['threads']} threads, "
             f"{r['timed_frames']} timed frames",
             f"  {r['fps']:.3f} fps, {r['s_per_frame']:.3f} s/frame (load {r['load_s']:.1f} s, "
             f"first {r['warmup_frames']} frame(s) {r['first_frame_s']:.2f} s)",
             f"  {'stage':<22}{'ms/frame':>10}{'ms/call':>10}{'calls':>7}"]
    for k in STAGE_ORDER:
        lines.append(f"  {k:<22}{r['ms_per_frame'][k]:>10.1f}{r['ms_per_call'].get(k, 0):>10.1f}{r['calls'][k]:>7}")
    lines.append(f"  {'other':<22}{r['other_ms_per_frame']:>10.1f}")
    lines.append(f"  peak RSS {r['peak_rss_mib']:.0f} MiB")
    if r["gpu"]:
        g = r["gpu"]
        lines.append(f"  GPU {g['name']}: peak VRAM (torch allocated) {r['peak_vram_mib']:.0f} MiB, peak device "
                     f"used {g['peak_device_used_mib']:.0f} MiB, {r['host_syncs_per_frame']:.1f} host syncs/frame; "
                     f"stages from a second, synchronised pass ({g['stage_pass_fps']:.2f} fps)")
    lines.append(f"  machine: {r['machine']['cpu']} ({r['machine']['cores']} cores; {r['cpu']}), "
                 f"torch {r['machine']['torch']}, onnxruntime {r['machine']['onnxruntime']}")
    return "\n".join(lines)


def backend_error(backend: str, e: Exception) -> ValueError:
    """A ``BackendError`` as one line in flag spelling that names ``--backend``."""
    from .common import backend_flag_message
    message = backend_flag_message(str(e))
    return ValueError(message if message.startswith("--backend") else f"--backend {backend}: {message}")


def run(args) -> int:  # noqa: D103
    from ..backends import BackendError, resolve_spec
    from ..runtime.benchmark import check_key_batch
    from ..weights.checkpoint import CheckpointError, resolve_weights
    from .bench_ddcolor import is_ddcolor, run_ddcolor
    from .colorize_frames import memory_config
    from .export import describe_geometry, geometry_from_args, positive_int, writable_dir
    if is_ddcolor(args.model):
        return run_ddcolor(args)
    if args.input_size is not None:
        raise ValueError(f"--input-size applies to --model ddcolor-large/ddcolor-tiny, not to the ColorMNet bench "
                         f"(use --size), got --input-size {args.input_size}")
    geometry = geometry_from_args(args)
    if args.frames is not None and args.frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame is not timed), got {args.frames}")
    positive_int(args.threads, "--threads")
    if args.key_batch is not None:
        check_key_batch(args.key_batch)
    if None not in (args.key_batch, args.frames) and args.frames <= args.key_batch and args.instances is None:
        raise ValueError(f"--frames must be more than --key-batch ({args.key_batch}): the first key batch is "
                         f"not timed, got {args.frames}")
    options = cache_options(args.backend, writable_dir(args.onnx_dir, "--onnx-dir"),
                            writable_dir(args.engine_dir, "--engine-dir"))
    device = args.device if args.device is not None else default_device(args.backend)
    spec_options = {k: v for k, v in (("precision", args.precision), ("tf32", args.tf32)) if v is not None}
    try:
        resolve_spec(args.backend, device=device, device_id=args.device_id, fp16=True if args.fp16 else None,
                     **spec_options, **options)
    except BackendError as e:
        raise backend_error(args.backend, e) from None
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise ValueError(f"--weights: {e}") from None
    config = memory_config(args)
    print(f"bench: --size {args.size}: {describe_geometry(geometry)}", file=sys.stderr)
    if args.instances is not None:
        return _run_instances(args, geometry, weights)
    try:
        result = run_bench(backend=args.backend, size_wh=(geometry.inf_width, geometry.inf_height),
                           frames=args.frames, device=device, device_id=args.device_id, fp16=args.fp16,
                           precision=args.precision, tf32=args.tf32, key_batch=args.key_batch, weights=weights,
                           threads=args.threads, config=config, options=options)
    except BackendError as e:
        raise backend_error(args.backend, e) from None
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

    from ..media.color import synthetic_rgb
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
