"""eval: PSNR (float), SSIM, CDC and colourfulness of a colorized clip against its ground truth."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "quality metrics (PSNR, SSIM, CDC, colourfulness; LPIPS/FID if available offline) against ground truth"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("--pred", required=True, metavar="DIR|VIDEO",
                   help="colorized frames: a folder of images, a folder of clip folders, or a video file")
    p.add_argument("--gt", required=True, metavar="DIR|VIDEO", help="ground truth, laid out like --pred")
    p.add_argument("--json", action="store_true", help="print every number (also per frame) as JSON on stdout")
    p.add_argument("--plot", metavar="PNG", help="write a plot of per-frame PSNR and colour jumps (JS divergence "
                                                 "to the next frame) to this PNG")
    p.add_argument("--no-optional", action="store_true", help="do not even try LPIPS and FID")


def run(args) -> int:  # noqa: D103
    from ..metrics import evaluate, format_table, plot
    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot must name a .png file, got {args.plot}")
    res = evaluate(args.pred, args.gt, progress=lambda msg: print(f"eval: {msg}", file=sys.stderr, flush=True),
                   optional=not args.no_optional)
    print(format_table(res), file=sys.stderr)
    if args.plot:
        path = plot(res, args.plot)
        print(f"eval: plot written to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(dict(res.to_json(), pred=str(args.pred), gt=str(args.gt)), indent=2))
    return 0
