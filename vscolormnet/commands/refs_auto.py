"""``refs auto``: one reference per shot coloured by DDColor, written as a reference folder to retouch and reuse.

Its flags are checked before the video is opened or a network loaded (one line naming the flag,
exit 2); ``check_ddcolor_options`` is shared with ``colorize --auto-ref``, which spells the flags
its own way.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..util.errors import UserError
from .common import add_backend_arguments, backend_options

AUTO_HELP = "colour one reference per shot with DDColor (the frame refs extract picks) and write a refs folder"
AUTO_FLAGS = {"model": "--model", "weights": "--weights", "input_size": "--input-size"}


def add_auto_arguments(sub) -> None:
    """The ``refs auto`` sub-command."""
    from ..media.lab import AB_RESIZE_MODES
    from ..model.ddcolor import DEFAULT_INPUT_SIZE, DEFAULT_MODEL, SIZE_MULTIPLE
    from ..vs.auto_refs import AUTO_AB_RESIZE
    from ..vs.scenes import DEFAULT_MIN_SHOT_LENGTH, DEFAULT_THRESHOLD
    a = sub.add_parser("auto", help=AUTO_HELP,
                       description="Find the shots as `refs extract` does (or read them from --cuts), colour the frame "
                                   "it would pick in each with DDColor, and write REFS_DIR in the same format "
                                   "(ref_<frame>.png + refs.json/refs.csv/cuts.txt). Retouch any PNG in place and "
                                   "re-run: references a person made or edited are never overwritten.")
    a.add_argument("input", metavar="INPUT")
    a.add_argument("-o", "--output", required=True, metavar="REFS_DIR")
    a.add_argument("--model", default=DEFAULT_MODEL, metavar="MODEL",
                   help="ddcolor-large (default) or ddcolor-tiny, or a hub name (ddcolor_modelscope, …)")
    a.add_argument("--weights", default=None, metavar="CKPT",
                   help="the DDColor checkpoint of that model (default: the one `python -m vscolormnet download MODEL` "
                        "fetched)")
    a.add_argument("--cuts", default=None, metavar="CUTS_TXT",
                   help="the shot plan (first frame of every shot after the first, one per line) instead of detection")
    a.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="S",
                   help=f"the square size DDColor runs at, a multiple of {SIZE_MULTIPLE} ({DEFAULT_INPUT_SIZE})")
    a.add_argument("--ab-resize", default=AUTO_AB_RESIZE, choices=AB_RESIZE_MODES,
                   help=f"how DDColor's S×S ab goes back to the frame size ({AUTO_AB_RESIZE}, default: smooth chroma; "
                        "nearest: the official pipeline)")
    a.add_argument("--refine", type=int, default=0, metavar="N",
                   help="then propagate with ColorMNet and add up to N references per shot where the confidence is "
                        "clearly low (default 0: one per shot)")
    a.add_argument("--colormnet-weights", default=None, metavar="CKPT",
                   help="ColorMNet checkpoint for --refine (default: the one `download` fetched)")
    a.add_argument("--size", default="512", type=str.lower, choices=("384", "512", "640", "native"),
                   help="ColorMNet's inference size for --refine (512)")
    a.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help=f"shot detection threshold, as refs extract ({DEFAULT_THRESHOLD})")
    a.add_argument("--min-shot-length", type=int, default=DEFAULT_MIN_SHOT_LENGTH, metavar="N",
                   help=f"as refs extract ({DEFAULT_MIN_SHOT_LENGTH})")
    a.add_argument("--json", action="store_true", help="print the index as JSON on stdout")
    add_backend_arguments(a)


def check_ddcolor_options(model: str, weights, input_size, flags: dict[str, str]):
    """``(model, weights path, S)`` checked; errors name ``flags[...]`` (``model``/``weights``/``input_size``)."""
    from ..model.ddcolor import accepted_names, check_input_size, resolve_model
    from ..weights.ddcolor_checkpoint import resolve_ddcolor_weights
    try:
        name = resolve_model(model)
    except ValueError:
        raise UserError.bad(flags["model"], model, "one of " + ", ".join(accepted_names())) from None
    try:
        size = check_input_size(input_size)
    except ValueError:
        raise UserError.bad(flags["input_size"], input_size, "a positive multiple of 32 (the encoder downsamples "
                            "by 32 and the decoder's shapes must agree), e.g. 256, 512") from None
    path = resolve_ddcolor_weights(weights, model, param=flags["weights"])    # a hub name picks its file
    return name, path, size


def check_refs_dir(path, flag: str) -> Path:
    """A folder to create or reuse (refused: an existing file)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} exists and is not a folder", param=flag, value=str(folder),
                        accepted="a folder (made if missing)")
    if not folder.exists() and not folder.parent.is_dir():
        raise UserError(f"{flag} {folder}: its parent folder {folder.parent} does not exist", param=flag,
                        value=str(folder))
    return folder


def read_cuts(path, flag: str = "--cuts") -> list[int] | None:
    """A ``cuts.txt`` as frame numbers (None when not given); the clip's length is checked later."""
    if path is None:
        return None
    from ..runtime.shots import PlanError, read_cuts_file
    try:
        cuts = read_cuts_file(path)
    except PlanError as e:
        raise UserError(f"{flag}: {e}", param=flag, value=str(path)) from None
    neg = [c for c in cuts if c < 0]
    if neg:
        raise UserError.bad(flag, neg[0], "frame numbers ≥ 0")
    return cuts


def run_auto(args) -> int:
    """``refs auto``: check, colour, report (stderr), and the index on stdout with ``--json``."""
    from ..refs.auto import auto_references
    if args.refine < 0:
        raise UserError.bad("--refine", args.refine, "a whole number ≥ 0")
    if not 1 <= args.threshold <= 254:
        raise UserError.bad("--threshold", args.threshold, "within 1..254 (mean luma difference, 8-bit)")
    if args.min_shot_length < 1:
        raise UserError.bad("--min-shot-length", args.min_shot_length, "≥ 1 frame")
    model, weights, size = check_ddcolor_options(args.model, args.weights, args.input_size, AUTO_FLAGS)
    backend = backend_options(args)
    folder = check_refs_dir(args.output, "-o")
    cuts = read_cuts(args.cuts)
    if args.refine:
        from ..weights.checkpoint import CheckpointError, resolve_weights
        try:
            resolve_weights(args.colormnet_weights)
        except CheckpointError as e:
            raise CheckpointError(f"--colormnet-weights: {e}") from None
    res = auto_references(args.input, folder, model=model, weights=weights, cuts=cuts, input_size=size,
                          backend_options=backend, ab_resize=args.ab_resize, refine=args.refine,
                          colormnet_weights=args.colormnet_weights, size=args.size, threshold=args.threshold,
                          min_shot_length=args.min_shot_length)
    added = [r for r in res.references if r.get("added_by") == "refine"]
    print(f"refs auto: {res.num_frames} frames, {len(res.shots)} shots; {res.coloured} coloured by {model}, "
          f"{res.reused} reused, {res.person} kept as a person made them"
          + (f"; --refine added {len(added)}" if args.refine else ""), file=sys.stderr)
    print(f"refs auto: wrote {res.folder}; retouch any reference in place (keep its name) and re-run, or use it "
          f"as --ref {res.folder}", file=sys.stderr)
    if args.json:
        print(json.dumps(res.index, indent=2))
    return 0
