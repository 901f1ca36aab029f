"""export: write the stage graphs of a checkpoint to ONNX (checked against PyTorch), optionally TensorRT engines.

The padded size comes from the same rule as ``Colorize`` (``geometry.inference_geometry``): a
preset (longest side, aspect kept) of the *source* size, so ``--size 512 --source 1440x1080``
builds the 560×448 graphs a 4:3 film will use. TensorRT engines are cached per math mode:
``--tf32`` builds the ones runs with ``--tf32`` use (TF32 is not in the ONNX graphs, so it is
refused without ``--backend trt``). Every argument is checked before any weights are loaded;
a bad one is one line naming the flag (exit 2). This module also holds the argument helpers
``bench`` shares (``add_geometry_arguments``, ``geometry_from_args``, ``writable_dir``).
"""
from __future__ import annotations

import json
import sys

HELP = "export the stage graphs to ONNX for one size (fp32/fp16), each checked against PyTorch"
DEFAULT_SOURCE = "1920x1080"
PRECISION_CHOICES = ("fp32", "fp16", "both")
EXPORT_BACKENDS = ("ort", "trt")


def add_geometry_arguments(p) -> None:
    """``--size`` (Colorize's presets) and ``--source`` (source size or aspect)."""
    from ..runtime.geometry import DEFAULT_SIZE, SIZE_CHOICES
    p.add_argument("--size", default=DEFAULT_SIZE, metavar="SIZE",
                   help=f"{', '.join(SIZE_CHOICES)}: longest side of the inference size, aspect kept, never "
                        f"upscaled, as Colorize's size= (default {DEFAULT_SIZE})")
    p.add_argument("--source", default=DEFAULT_SOURCE, metavar="WxH|W:H",
                   help=f"source frame size (1440x1080) or aspect (4:3) (default {DEFAULT_SOURCE})")


def geometry_from_args(args):
    """``geometry.Geometry`` from ``--size``/``--source``; ``ValueError`` naming the flag."""
    from ..runtime.geometry import SIZE_CHOICES, check_size, inference_geometry, parse_source_size
    try:
        size = check_size(args.size)
    except ValueError:
        raise ValueError(f"--size must be one of {', '.join(SIZE_CHOICES)}, got {args.size!r}") from None
    try:
        width, height = parse_source_size(args.source)
    except ValueError as e:
        raise ValueError(f"--source: {e}") from None
    if size == "native" and ":" in str(args.source):
        raise ValueError(f"--size native needs the source size (--source WxH), not an aspect ({args.source!r})")
    return inference_geometry(width, height, size)


def describe_geometry(g) -> str:
    """``source 1440x1080 → inference 512x384 → padded 560x448`` (all W×H)."""
    hp, wp = g.padded_hw
    return f"source {g.width}x{g.height} → inference {g.inf_width}x{g.inf_height} → padded {wp}x{hp}"


def writable_dir(value, flag: str):
    """An existing, writable folder given on the command line (None stays None); ``ValueError`` naming ``flag``."""
    from pathlib import Path

    from ..util.files import is_writable_dir
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"{flag} {value}: no such folder (create it, or leave {flag} out for the default)")
    if not is_writable_dir(path):
        raise ValueError(f"{flag} {value}: folder is not writable")
    return path


def positive_int(value, flag: str):
    """``value`` if None or ≥ 1; ``ValueError`` naming ``flag``."""
    if value is not None and value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value}")
    return value


def add_arguments(p) -> None:  # noqa: D103
    from ..model.stages import STAGES
    from .common import add_tf32_argument
    add_geometry_arguments(p)
    p.add_argument("--weights", default=None, metavar="CKPT", help="checkpoint (default: the downloaded one)")
    p.add_argument("--precision", default="fp32", metavar="P", help=f"{', '.join(PRECISION_CHOICES)} (default fp32)")
    p.add_argument("--backend", default="ort", metavar="B",
                   help="ort: the ONNX graphs only (default); trt: also build the TensorRT engines (GPU)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, metavar="STAGE",
                   help=f"stages to export (default: all of {', '.join(STAGES)}; ONNX only)")
    p.add_argument("--onnx-dir", default=None, metavar="DIR",
                   help="ONNX cache folder, must exist (default: $VSCOLORMNET_ONNX_DIR or the user cache folder)")
    p.add_argument("--engine-dir", default=None, metavar="DIR",
                   help="TensorRT engine folder, must exist (default: $VSCOLORMNET_ENGINE_DIR or the user cache)")
    p.add_argument("--device-id", type=int, default=0, help="CUDA device for --backend trt")
    add_tf32_argument(p, help="--backend trt: build engines whose fp32 layers may use TF32, the ones runs with "
                              "--tf32 use (default: exact fp32)")
    p.add_argument("--image", default=None, metavar="IMG", help="a real image for the check (default: synthetic)")
    p.add_argument("--force", action="store_true", help="export again even if the files exist and are intact")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the checks")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON on stdout")


def _check_backend(args, precisions) -> None:
    from ..backends import BackendError, resolve_spec
    if args.backend not in EXPORT_BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(EXPORT_BACKENDS)}, got {args.backend!r}")
    if args.tf32 and args.backend != "trt":
        raise ValueError("--tf32 needs --backend trt: TF32 changes only TensorRT engines, the ONNX graphs are the "
                         "same with or without it (give --tf32 to the run instead)")
    if args.backend == "trt":
        try:
            for p in precisions:
                resolve_spec("trt", device_id=args.device_id, fp16=p == "fp16", tf32=bool(args.tf32))
        except BackendError as e:
            raise ValueError(f"--backend trt: {e}") from None


def run(args) -> int:  # noqa: D103
    import torch

    geometry = geometry_from_args(args)
    if args.precision not in PRECISION_CHOICES:
        raise ValueError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {args.precision!r}")
    precisions = ("fp32", "fp16") if args.precision == "both" else (args.precision,)
    onnx_dir = writable_dir(args.onnx_dir, "--onnx-dir")
    engine_dir = writable_dir(args.engine_dir, "--engine-dir")
    positive_int(args.threads, "--threads")
    _check_backend(args, precisions)
    from ..weights.checkpoint import CheckpointError, resolve_weights
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise ValueError(f"--weights: {e}") from None
    image = None
    if args.image:
        from ..media.images import read_rgb
        image = read_rgb(args.image, "--image")
    padded = geometry.padded_hw
    print(f"export: --size {args.size}: {describe_geometry(geometry)}", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)

    from ..backends.graphs.cache import export_graphs
    from ..model.stages import STAGES
    paths = export_graphs(weights, padded, precisions=precisions, stages=tuple(args.stages), cache_dir=onnx_dir,
                          image=image, force=args.force)
    listed = {f"{s}/{p}": str(path) for (s, p), path in sorted(paths.items())}
    for name, path in listed.items():
        print(f"export: {name}: {path}", file=sys.stderr)
    if args.backend == "trt":
        from ..backends import TRT
        from ..backends.trt_backend import build_engines
        for p in precisions:
            spec = TRT(device_id=args.device_id, precision=p, engine_dir=engine_dir, onnx_dir=onnx_dir,
                       tf32=bool(args.tf32))            # checked by _check_backend
            engines = build_engines(spec, weights, padded)
            for stage, path in zip(STAGES, engines):
                listed[f"{stage}/{p}/engine"] = str(path)
                print(f"export: engine {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(listed, indent=1))
    return 0
