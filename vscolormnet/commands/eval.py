"""eval: PSNR (float), SSIM, CDC and colourfulness of a colorized clip against its ground truth.

Bad input is one ``eval: error:`` line naming the flag, exit 2, and is refused before any
metric runs where it can be (paths, frame pairing, the ``--plot`` target, the first frame pair
of each clip); a frame that cannot be decoded later is reported the same way. A plot that
cannot be written after the evaluation is exit 1. The table goes to stderr; stdout carries
only the JSON, and only with ``--json``.
"""
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
                                                 "to the next frame) to this PNG (its folder must exist)")
    p.add_argument("--no-optional", action="store_true", help="do not even try LPIPS and FID")


def _os_error(e: OSError) -> ValueError:
    where = f"{e.filename}: " if e.filename else ""
    return ValueError(f"{where}{e.strerror or e}")


def run(args) -> int:  # noqa: D103
    from ..metrics import check_plot_path, evaluate, format_table, plot
    from .common import CommandError
    plot_path = check_plot_path(args.plot) if args.plot is not None else None
    try:
        res = evaluate(args.pred, args.gt, progress=lambda msg: print(f"eval: {msg}", file=sys.stderr, flush=True),
                       optional=not args.no_optional)
    except OSError as e:  # unreadable folders: one line, not a traceback
        raise _os_error(e) from None
    print(format_table(res), file=sys.stderr)
    if args.json:  # before the plot: a plot that fails must not lose the numbers
        print(json.dumps(dict(res.to_json(), pred=str(args.pred), gt=str(args.gt)), indent=2, allow_nan=False),
              flush=True)
    if plot_path is not None:
        try:
            plot(res, plot_path)
        except OSError as e:
            raise CommandError(f"--plot {plot_path} cannot be written: {e.strerror or e}") from None
        print(f"eval: plot written to {plot_path}", file=sys.stderr)
    return 0
