"""export: write the stage graphs of a checkpoint to ONNX (checked against PyTorch) for one inference size."""
from __future__ import annotations

import json
import sys

HELP = "export the stage graphs to ONNX for one size (fp32/fp16), each checked against PyTorch"


def add_arguments(p) -> None:  # noqa: D103
    from ..stages import STAGES
    p.add_argument("--size", required=True,
                   help="frame size: 384, 512, 640 (longest side, 16:9) or WxH; the graphs use the padded size")
    p.add_argument("--weights", default=None, metavar="CKPT", help="checkpoint (default: the downloaded one)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "both"))
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, metavar="STAGE",
                   help=f"stages to export (default: all of {', '.join(STAGES)})")
    p.add_argument("--onnx-dir", default=None, metavar="DIR",
                   help="ONNX cache folder (default: $VSCOLORMNET_ONNX_DIR or the user cache folder)")
    p.add_argument("--image", default=None, metavar="IMG", help="a real image for the check (default: synthetic)")
    p.add_argument("--force", action="store_true", help="export again even if the files exist")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the checks")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON on stdout")


def run(args) -> int:  # noqa: D103
    import torch

    from .. import color
    from ..onnx_export import export_graphs
    from .bench import parse_size
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = parse_size(args.size)
    padded = color.padded_size(h, w)
    image = None
    if args.image:
        from ..images import read_rgb
        image = read_rgb(args.image)
    precisions = ("fp32", "fp16") if args.precision == "both" else (args.precision,)
    paths = export_graphs(args.weights, padded, precisions=precisions, stages=tuple(args.stages),
                          cache_dir=args.onnx_dir, image=image, force=args.force)
    for (stage, precision), path in sorted(paths.items()):
        print(f"export: {stage} {precision}: {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({f"{s}/{p}": str(path) for (s, p), path in sorted(paths.items())}, indent=1))
    return 0
