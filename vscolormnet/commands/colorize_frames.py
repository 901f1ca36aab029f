"""colorize-frames: colourise a folder of frames from one reference image (official test.py workflow).

The paths are checked here with the flags' names before the network is loaded; the frames
themselves (all readable, one size) are checked by ``frames.check_frames`` before the first one
is processed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    add_backend_arguments,
    add_memory_arguments,
    backend_options,
    check_output_file,
    check_writable_folder,
    memory_config,
    refuse_inputs,
    same_path,
)

__all__ = ["HELP", "add_arguments", "run", "add_memory_arguments", "add_backend_arguments", "memory_config"]
HELP = "colourise a folder of frames (PNG/JPG, name order) from one colour reference image"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("frames_dir", metavar="FRAMES_DIR")
    p.add_argument("--ref", required=True, metavar="REF_IMAGE", help="colour reference image")
    p.add_argument("--weights", default=None, metavar="CKPT",
                   help="checkpoint (default: the downloaded official one)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="folder for OUT_DIR/<stem>.png (created; must not be FRAMES_DIR)")
    p.add_argument("--first-frame-is-ref", action="store_true",
                   help="the reference is the colour version of the first frame (official default mode); "
                        "without it the reference is a separate exemplar")
    add_memory_arguments(p)
    add_backend_arguments(p)
    p.add_argument("--save-ab", metavar="AB.npz", help="also save ab_pred and memory sizes per frame")


def check_arguments(args) -> dict:
    """Flags and paths, checked before anything is loaded; returns the prepared pieces."""
    from ..media.images import is_colour, read_rgb
    from ..runtime.frames import list_frames
    from ..weights.checkpoint import CheckpointError, resolve_weights
    memory = memory_config(args)
    backend = backend_options(args)
    frames = list_frames(args.frames_dir)
    if not is_colour(read_rgb(args.ref, "--ref image")):
        raise ValueError(f"--ref image {args.ref} is grayscale; a reference must be in colour")
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise CheckpointError(f"--weights: {e}") from None
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {out} exists and is not a folder")
    if same_path(out, args.frames_dir):
        raise ValueError(f"-o {out} is FRAMES_DIR: the output frames <stem>.png would overwrite the inputs; "
                         "choose another folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    check_writable_folder(parent, f"-o {out}: folder")
    inputs = [("--ref image", args.ref), ("--weights", weights)]
    for f in frames:
        refuse_inputs(out / f"{f.stem}.png", "-o", [*inputs, ("input frame", f)])
    if args.save_ab:
        save_ab = check_output_file(args.save_ab, "--save-ab", suffixes=(".npz",))
        refuse_inputs(save_ab, "--save-ab", [*inputs, *(("input frame", f) for f in frames)])
    return dict(memory=memory, backend=backend, weights=weights)


def run(args) -> int:  # noqa: D103
    from ..runtime.frames import colorize_frames
    a = check_arguments(args)
    res = colorize_frames(args.frames_dir, args.ref, a["weights"], args.output,
                          first_frame_is_ref=args.first_frame_is_ref, config=a["memory"],
                          save_ab=args.save_ab, **a["backend"])
    print(f"colorize-frames: {len(res.ab_pred)} frames written to {args.output} "
          f"({res.seconds_per_frame:.3f} s/frame after the first)", file=sys.stderr)
    return 0
