"""bench --model ddcolor-…: DDColor forwards per second at ``--input-size`` S (``runtime.ddcolor_benchmark``).

Split from ``bench`` because the flags differ: S instead of ``--size``/``--source``, no key batch,
memory or ``--instances`` (ColorMNet's), which are refused by name when given. Every argument and
the weights file are checked before the network is loaded (one line naming the flag, exit 2).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..util.errors import UserError

DEFAULT_FRAMES = 4
COLORMNET_ONLY = ("key_batch", "instances")


def is_ddcolor(model: str | None) -> bool:
    """True if ``--model`` asks for DDColor (None and ``colormnet`` keep the ColorMNet bench)."""
    return model is not None and str(model).strip().lower() != "colormnet"


def _refuse_colormnet_flags(args) -> None:
    from .common import add_memory_arguments
    from .export import add_geometry_arguments
    p = argparse.ArgumentParser(add_help=False)
    add_geometry_arguments(p)
    add_memory_arguments(p)
    defaults = vars(p.parse_args([]))
    given = [k for k, v in defaults.items() if getattr(args, k) != v] + \
            [k for k in COLORMNET_ONLY if getattr(args, k) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag} applies to the ColorMNet bench, not to --model {args.model} (DDColor runs at "
                        f"--input-size S)", param=flag, value=getattr(args, given[0]),
                        accepted=f"no {flag} with --model {args.model}")


def run_ddcolor(args) -> int:
    """``bench --model ddcolor-large|ddcolor-tiny``: checks, then the timed forwards."""
    from ..backends import BackendError, resolve_spec
    from ..model.ddcolor import DEFAULT_INPUT_SIZE, accepted_names, check_input_size, resolve_model
    from ..runtime.benchmark import default_device
    from ..runtime.ddcolor_benchmark import format_ddcolor_result, run_ddcolor_bench
    from ..weights.ddcolor_hub import resolve_ddcolor_weights
    from .bench import backend_error, cache_options
    from .export import positive_int, writable_dir
    try:
        model = resolve_model(args.model)
    except ValueError:
        raise UserError.bad("--model", args.model, "colormnet (default) or one of " + ", ".join(accepted_names())) \
            from None
    size = DEFAULT_INPUT_SIZE if args.input_size is None else args.input_size
    try:
        check_input_size(size)
    except ValueError:
        raise UserError.bad("--input-size", size, "a positive multiple of 32 (the encoder downsamples by 32 and the "
                            "decoder's shapes must agree), e.g. 256, 512") from None
    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    if frames < 2:
        raise UserError.bad("--frames", frames, "at least 2 (the first forward is not timed)")
    positive_int(args.threads, "--threads")
    _refuse_colormnet_flags(args)
    options = cache_options(args.backend, writable_dir(args.onnx_dir, "--onnx-dir"),
                            writable_dir(args.engine_dir, "--engine-dir"))
    device = args.device if args.device is not None else default_device(args.backend)
    spec_options = {k: v for k, v in (("precision", args.precision), ("tf32", args.tf32)) if v is not None}
    try:
        resolve_spec(args.backend, device=device, device_id=args.device_id, fp16=True if args.fp16 else None,
                     **spec_options, **options)
    except BackendError as e:
        raise backend_error(args.backend, e) from None
    weights = resolve_ddcolor_weights(args.weights, args.model, "--weights")
    print(f"bench: {model} at {size}x{size}, weights {weights}", file=sys.stderr)
    try:
        result = run_ddcolor_bench(model=args.model, weights=weights, input_size=size, frames=frames,
                                   backend=args.backend, device=device, device_id=args.device_id, fp16=args.fp16,
                                   precision=args.precision, tf32=args.tf32, threads=args.threads, options=options)
    except BackendError as e:
        raise backend_error(args.backend, e) from None
    print(format_ddcolor_result(result), file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
