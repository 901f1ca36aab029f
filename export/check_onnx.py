#!/usr/bin/env python3
"""Check exported ONNX graphs against the PyTorch stage methods (ONNX Runtime on CPU).

    python export/check_onnx.py --size 512 [--source 1440x1080] [--precision fp16] [--weights CKPT]
        [--onnx-dir DIR] [--image IMG]
    python export/check_onnx.py --size native --source 560x336 --file some/encode_key_560x336_fp32_opset17_v1.onnx \
        --stage encode_key

Runs every cached graph of that size on random inputs and on real activations (from IMG or a
synthetic picture) and prints max |Δ| per output and whether the file matches its checksum
manifest; exits 1 if any is beyond the tolerance (fp32: 1e-4·max(1, |ref|); fp16: see
vscolormnet.backends.graphs.check.FP16_TOLERANCE), 2 on a bad argument.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from vscolormnet.backends.graphs import manifest
    from vscolormnet.backends.graphs.cache import onnx_path
    from vscolormnet.backends.graphs.check import check_graph, real_inputs
    from vscolormnet.commands.export import add_geometry_arguments, describe_geometry, geometry_from_args
    from vscolormnet.media.images import read_rgb
    from vscolormnet.model.stages import STAGES
    from vscolormnet.weights.checkpoint import load_model, resolve_weights

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_geometry_arguments(p)
    p.add_argument("--weights", default=None)
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--stage", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--file", default=None, help="check this file instead of the cached one (one --stage)")
    p.add_argument("--onnx-dir", default=None)
    p.add_argument("--image", default=None)
    args = p.parse_args(argv)
    if args.file and len(args.stage) != 1:
        p.error("--file needs exactly one --stage")
    try:
        geometry = geometry_from_args(args)
        weights = resolve_weights(args.weights)
        image = read_rgb(args.image, "--image") if args.image else None
    except ValueError as e:
        print(f"check_onnx: error: {e}", file=sys.stderr)
        return 2
    padded = geometry.padded_hw
    print(f"check_onnx: --size {args.size}: {describe_geometry(geometry)}", file=sys.stderr)
    net = load_model(weights)
    real = real_inputs(net, padded, image)
    ok = True
    for stage in args.stage:
        path = Path(args.file) if args.file else onnx_path(weights, stage, padded, args.precision, args.onnx_dir)
        if not path.is_file():
            print(f"check_onnx: {path} does not exist (export it first)", file=sys.stderr)
            ok = False
            continue
        why = manifest.problem(path)
        print(f"check_onnx: {path.name}: " + (f"manifest: {why}" if why else "matches its manifest"), file=sys.stderr)
        for r in check_graph(path, net, stage, padded, args.precision, real=real):
            print(f"check_onnx: {r.line()}", file=sys.stderr)
            ok = ok and r.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
