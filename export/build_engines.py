#!/usr/bin/env python3
"""Build (or find in the cache) the TensorRT engines of all six stages for one size.

    python export/build_engines.py --size 512 [--source 1440x1080] --fp16 [--weights CKPT] [--device-id 0]
        [--engine-dir DIR] [--onnx-dir DIR] [--workspace-mib N] [--optimization-level 0-5]

Same as ``python -m vscolormnet export --backend trt`` plus the builder settings. Needs TensorRT
(pip install 'vscolormnet[trt]') and an NVIDIA GPU. The padded size follows ``Colorize``
(``--size`` preset of the ``--source`` size, default 1920x1080). Exports and checks the ONNX
graphs first if they are not cached. Progress and build logs go to stderr and to
``<engine>.log`` next to each engine; a bad argument is one line naming the flag (exit 2).
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from vscolormnet.backends import BackendError, resolve_spec
    from vscolormnet.backends.trt_backend import build_engines
    from vscolormnet.commands.export import add_geometry_arguments, describe_geometry, geometry_from_args, writable_dir
    from vscolormnet.weights.checkpoint import resolve_weights

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_geometry_arguments(p)
    p.add_argument("--weights", default=None)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--engine-dir", default=None)
    p.add_argument("--onnx-dir", default=None)
    p.add_argument("--workspace-mib", type=int, default=None)
    p.add_argument("--optimization-level", type=int, default=3)
    args = p.parse_args(argv)
    try:
        geometry = geometry_from_args(args)
        try:
            spec = resolve_spec("trt", device_id=args.device_id, fp16=args.fp16, workspace_mib=args.workspace_mib,
                                optimization_level=args.optimization_level,
                                engine_dir=writable_dir(args.engine_dir, "--engine-dir"),
                                onnx_dir=writable_dir(args.onnx_dir, "--onnx-dir"))
        except BackendError as e:
            raise ValueError(f"--backend trt: {e}") from None
        weights = resolve_weights(args.weights)
        print(f"build_engines: --size {args.size}: {describe_geometry(geometry)}", file=sys.stderr)
        paths = build_engines(spec, weights, geometry.padded_hw)
    except ValueError as e:
        print(f"build_engines: error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"build_engines: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
