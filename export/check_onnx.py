#!/usr/bin/env python3
"""Check exported ONNX graphs against the PyTorch stage methods (ONNX Runtime on CPU).

    python export/check_onnx.py --size 512 [--precision fp16] [--weights CKPT] [--onnx-dir DIR] [--image IMG]
    python export/check_onnx.py --size 512 --file some/encode_key_560x336_fp32_opset17_v1.onnx --stage encode_key

Runs every cached graph of that size on random inputs and on real activations (from IMG or a
synthetic picture) and prints max |Δ| per output; exits 1 if any is beyond the tolerance
(fp32: 1e-4·max(1, |ref|); fp16: see vscolormnet.onnx_export.FP16_TOLERANCE).
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from vscolormnet import color
    from vscolormnet.backends.base import STAGES
    from vscolormnet.commands.bench import parse_size
    from vscolormnet.onnx_export import check_graph, onnx_path, real_inputs
    from vscolormnet.weights import load_model, resolve_weights

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", required=True, help="384, 512, 640 or WxH (the graphs use the padded size)")
    p.add_argument("--weights", default=None)
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--stage", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--file", default=None, help="check this file instead of the cached one (one --stage)")
    p.add_argument("--onnx-dir", default=None)
    p.add_argument("--image", default=None)
    args = p.parse_args(argv)
    if args.file and len(args.stage) != 1:
        p.error("--file needs exactly one --stage")
    w, h = parse_size(args.size)
    padded = color.padded_size(h, w)
    weights = resolve_weights(args.weights)
    net = load_model(weights)
    image = None
    if args.image:
        from vscolormnet.frames import read_rgb
        image = read_rgb(args.image)
    real = real_inputs(net, padded, image)
    ok = True
    for stage in args.stage:
        path = Path(args.file) if args.file else onnx_path(weights, stage, padded, args.precision, args.onnx_dir)
        if not path.is_file():
            print(f"check_onnx: {path} does not exist (export it first)", file=sys.stderr)
            ok = False
            continue
        for r in check_graph(path, net, stage, padded, args.precision, real=real):
            print(f"check_onnx: {r.line()}", file=sys.stderr)
            ok = ok and r.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
