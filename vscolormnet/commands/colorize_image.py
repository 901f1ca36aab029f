"""colorize-image: colour one picture with DDColor, exactly as the official inference script does.

Every argument, the input image and the weights file's presence are checked before the network
is loaded; a wrong one is one line naming the flag (exit 2). The input is read as ``cv2.imread``
reads it (``media.images.read_rgb_like_opencv``: grey or colour, 16 bits → 8, alpha ignored), a
colour image is used for its L only. Outputs are written to a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..util.errors import UserError
from .common import add_backend_arguments, backend_options, check_output_file, refuse_inputs

HELP = "colour one image with DDColor (automatic colourisation, the official pipeline)"
OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".webp")


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..media.lab import AB_RESIZE_MODES
    from ..model.ddcolor import DEFAULT_INPUT_SIZE, DEFAULT_MODEL, SIZE_MULTIPLE
    p.add_argument("input", metavar="INPUT", help="image file (grey or colour; a colour image is used for its L)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="the coloured image (PNG recommended)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="MODEL",
                   help="ddcolor-large (default) or ddcolor-tiny, or a hub name (ddcolor_modelscope, …)")
    p.add_argument("--weights", default=None, metavar="CKPT",
                   help="DDColor checkpoint of that model (.pth/.pt/.bin/.safetensors; default: the one "
                        "`python -m vscolormnet download MODEL` fetched)")
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="S",
                   help=f"the square size the network runs at, a multiple of {SIZE_MULTIPLE} ({DEFAULT_INPUT_SIZE})")
    p.add_argument("--save-ab", default=None, metavar="AB.npz",
                   help="also save ab_net (2×S×S) and ab_full (2×H×W), float32 Lab units")
    p.add_argument("--ab-resize", default="nearest", choices=AB_RESIZE_MODES,
                   help="how ab goes back to the image size: nearest (official, default) or bilinear (smooth chroma)")
    add_backend_arguments(p)


def check_arguments(args) -> dict:
    """Flags, paths and the input image, checked before anything is loaded; returns the prepared pieces."""
    from ..media.images import read_rgb_like_opencv
    from ..model.ddcolor import accepted_names, check_input_size, resolve_model
    from ..weights.ddcolor_checkpoint import resolve_ddcolor_weights
    try:
        model = resolve_model(args.model)
    except ValueError:
        raise UserError.bad("--model", args.model, "one of " + ", ".join(accepted_names())) from None
    try:
        size = check_input_size(args.input_size)
    except ValueError:
        raise UserError.bad("--input-size", args.input_size, "a positive multiple of 32 (the encoder downsamples "
                            "by 32 and the decoder's shapes must agree), e.g. 256, 512") from None
    backend = backend_options(args)
    weights = resolve_ddcolor_weights(args.weights, args.model)      # the hub name picks its file
    out = check_output_file(args.output, "-o", suffixes=OUTPUT_SUFFIXES)
    refuse_inputs(out, "-o", [("INPUT", args.input), ("--weights", weights)])
    save_ab = None
    if args.save_ab:
        save_ab = check_output_file(args.save_ab, "--save-ab", suffixes=(".npz",))
        refuse_inputs(save_ab, "--save-ab", [("INPUT", args.input), ("--weights", weights), ("-o", out)])
    rgb = read_rgb_like_opencv(args.input, "INPUT")
    if min(rgb.shape[:2]) < 2:
        raise UserError(f"INPUT {args.input} is {rgb.shape[1]}x{rgb.shape[0]} pixels; DDColor needs at least 2x2",
                        param="INPUT", value=args.input, accepted="an image of at least 2x2 pixels")
    return dict(model=model, size=size, backend=backend, weights=weights, out=out, save_ab=save_ab, rgb=rgb)


def write_image(path: Path, rgb) -> None:
    """``rgb`` (H×W×3 uint8) encoded by the file's suffix, written atomically."""
    import cv2

    from ..util.files import atomic_write
    ok, data = cv2.imencode(path.suffix.lower(), rgb[..., ::-1].copy())
    if not ok:
        raise UserError(f"-o {path}: OpenCV cannot encode {path.suffix} images", param="-o", value=str(path))
    atomic_write(path, data.tobytes())


def run(args) -> int:  # noqa: D103
    import numpy as np

    from ..runtime.image_colorizer import colorize_image, open_colorizer
    from ..util.files import atomic_write
    a = check_arguments(args)
    with open_colorizer(a["model"], a["weights"], input_size=a["size"], **a["backend"]) as colorizer:
        t0 = time.perf_counter()
        result = colorize_image(a["rgb"], colorizer, args.ab_resize)
        seconds = time.perf_counter() - t0
        described = colorizer.describe()
    write_image(a["out"], result.rgb)
    if a["save_ab"] is not None:
        atomic_write(a["save_ab"], lambda f: np.savez(f, ab_net=result.ab_net, ab_full=result.ab_full))
    h, w = result.rgb.shape[:2]
    print(f"colorize-image: {a['out']} ({w}x{h}) written; {described}, {seconds:.2f} s", file=sys.stderr)
    return 0
