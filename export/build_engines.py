#!/usr/bin/env python3
"""Build (or find in the cache) the TensorRT engines of all six stages for one size.

    python export/build_engines.py --size 512 --fp16 [--weights CKPT] [--device-id 0] [--engine-dir DIR]

Needs TensorRT (pip install 'vscolormnet[trt]') and an NVIDIA GPU. Exports and checks the ONNX
graphs first if they are not cached. Progress and build logs go to stderr and to
``<engine>.log`` next to each engine.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from vscolormnet import color
    from vscolormnet.backends.trt_backend import TrtOptions, build_engines
    from vscolormnet.commands.bench import parse_size
    from vscolormnet.weights import resolve_weights

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", required=True, help="384, 512, 640 or WxH (engines use the padded size)")
    p.add_argument("--weights", default=None)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--engine-dir", default=None)
    p.add_argument("--onnx-dir", default=None)
    p.add_argument("--workspace-mib", type=int, default=None)
    p.add_argument("--optimization-level", type=int, default=3)
    args = p.parse_args(argv)
    w, h = parse_size(args.size)
    options = TrtOptions(engine_dir=args.engine_dir, onnx_dir=args.onnx_dir, workspace_mib=args.workspace_mib,
                         optimization_level=args.optimization_level)
    try:
        paths = build_engines(resolve_weights(args.weights), color.padded_size(h, w), device_id=args.device_id,
                              fp16=args.fp16, options=options)
    except ValueError as e:
        print(f"build_engines: error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"build_engines: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
