"""refs: gray reference frames at the scene cuts of a video, to colour by hand and pass as ``ref=DIR``."""
from __future__ import annotations

import argparse
import json
import sys

HELP = ("extract one gray reference frame per shot (refs extract), colour one per shot automatically (refs auto), "
        "show a reference folder (refs status), or find where the next reference helps most (refs suggest)")


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..vs.scenes import DEFAULT_MIN_SHOT_LENGTH, DEFAULT_THRESHOLD
    sub = p.add_subparsers(dest="refs_command", required=True, metavar="ACTION")
    e = sub.add_parser("extract", help="detect shots and write DIR/ref_<frame>.png (gray) + index",
                       description="Detect shot boundaries (scd.Detect, vapoursynth-scenechange), write one gray "
                                   "reference per shot as DIR/ref_<frame>.png, refs.json, refs.csv and cuts.txt. "
                                   "Colour some of the PNGs in place, then pass DIR as ref=.")
    e.add_argument("input", metavar="INPUT_VIDEO")
    e.add_argument("-o", "--output", required=True, metavar="DIR")
    e.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help=f"cut when the mean luma difference (8-bit) exceeds T, 1..254 (default {DEFAULT_THRESHOLD})")
    e.add_argument("--min-shot-length", type=int, default=DEFAULT_MIN_SHOT_LENGTH, metavar="N",
                   help=f"drop cuts that would make a shot shorter than N frames (default {DEFAULT_MIN_SHOT_LENGTH})")
    e.add_argument("--pick", choices=("sharpest", "middle", "first"), default="sharpest",
                   help="representative frame of each shot (default: the sharpest, nearest the middle)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing reference folder's files")
    e.add_argument("--json", action="store_true", help="print the index as JSON on stdout")
    from .refs_auto import add_auto_arguments
    add_auto_arguments(sub)
    s = sub.add_parser("status", help="which references of DIR are coloured, which are still gray")
    s.add_argument("folder", metavar="DIR")
    s.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    g = sub.add_parser("suggest", help="propagate, then list the frames whose memory match is weakest",
                       description="Colourise INPUT with the references of REFS_DIR and list the frames where the "
                                   "memory-match confidence (ColorMNet_Confidence) is lowest: at most --per-shot "
                                   "per shot, spaced apart, lowest first. With -o, write them as gray "
                                   "ref_<frame>.png into DIR to colour next.")
    g.add_argument("input", metavar="INPUT")
    g.add_argument("--ref", required=True, metavar="REFS_DIR", help="reference folder (refs extract, some coloured)")
    g.add_argument("-n", type=int, default=10, metavar="N", help="how many frames to suggest (default 10)")
    g.add_argument("--per-shot", type=int, default=2, metavar="K", help="at most K per shot (default 2)")
    g.add_argument("--min-gap", type=int, default=None, metavar="F",
                   help="suggested frames at least F frames apart (default: one second)")
    g.add_argument("-o", "--output", metavar="DIR", help="write the suggested frames as gray ref_<frame>.png here")
    g.add_argument("--plot", metavar="PNG", help="plot confidence per frame, cuts, references and suggestions")
    g.add_argument("--json", action="store_true", help="print the suggestions as JSON on stdout")
    g.add_argument("--size", default="512", type=str.lower, choices=("384", "512", "640", "native"))
    g.add_argument("--weights", default=None, metavar="CKPT")
    from .common import add_backend_arguments, add_ref_mismatch_argument
    add_ref_mismatch_argument(g)
    add_backend_arguments(g)


def run(args) -> int:  # noqa: D103
    if args.refs_command == "extract":
        return _extract(args)
    if args.refs_command == "suggest":
        return _suggest(args)
    if args.refs_command == "auto":
        from .refs_auto import run_auto
        return run_auto(args)
    return _status(args)


def _suggest(args) -> int:
    from pathlib import Path

    from ..media.ref_folder import load_reference_folder
    from ..refs import suggest
    from ..weights.checkpoint import CheckpointError, resolve_weights
    from .common import backend_options, check_output_file, check_ref_folder_fits
    for flag, value, low in (("-n", args.n, 1), ("--per-shot", args.per_shot, 1), ("--min-gap", args.min_gap, 1)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be ≥ {low}, got {value}")
    try:
        load_reference_folder(args.ref)
    except ValueError as e:
        raise ValueError(f"--ref {args.ref}: {e}") from None
    out_dir = Path(args.output).expanduser() if args.output else None
    if out_dir is not None and not out_dir.is_dir():
        raise ValueError(f"-o {out_dir} is not a folder" if out_dir.exists() else f"-o {out_dir} does not exist")
    plot_path = check_output_file(args.plot, "--plot", suffixes=(".png",)) if args.plot else None
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise CheckpointError(f"--weights: {e}") from None
    from ..media.vsformat import open_video
    check_ref_folder_fits(args.ref, open_video(args.input, "INPUT"), args.allow_ref_mismatch)
    res = suggest.suggest(args.input, args.ref, n=args.n, per_shot=args.per_shot, min_gap=args.min_gap,
                          weights=str(weights), size=args.size, allow_ref_mismatch=args.allow_ref_mismatch,
                          **backend_options(args))
    print(suggest.format_table(res), file=sys.stderr)
    if out_dir is not None:
        written = suggest.write_gray_frames(args.input, [s.frame for s in res.suggestions], out_dir)
        print(f"refs suggest: wrote {len(written)} gray reference(s) to {out_dir}; colour them in place and "
              "rerun", file=sys.stderr)
    if plot_path is not None:
        suggest.plot(res, plot_path)
        print(f"refs suggest: wrote {plot_path}", file=sys.stderr)
    if args.json:
        print(json.dumps(suggest.as_json(res), indent=2))
    return 0


def _extract(args) -> int:
    from ..refs.extract import extract_references
    if not 1 <= args.threshold <= 254:      # checked before the video is opened (indexing takes a while)
        raise ValueError(f"--threshold must be within 1..254 (mean luma difference, 8-bit), got {args.threshold}")
    if args.min_shot_length < 1:
        raise ValueError(f"--min-shot-length must be >= 1 frame, got {args.min_shot_length}")
    res = extract_references(args.input, args.output, threshold=args.threshold,
                             min_shot_length=args.min_shot_length, pick=args.pick, overwrite=args.overwrite)
    print(f"refs: {res.num_frames} frames, {len(res.shots)} shots, cuts at frames "
          f"{', '.join(map(str, res.cuts)) or '(none)'}", file=sys.stderr)
    for s in res.shots:
        print(f"refs:   shot {s['shot']:3d}: frames {s['start']}-{s['end']} ({s['length']}), "
              f"reference {s['file']} at {s['timecode']}", file=sys.stderr)
    print(f"refs: wrote {len(res.shots)} gray references and the index to {res.folder}; colour some of them "
          "in place (keep the names), then use ref=<that folder>", file=sys.stderr)
    if args.json:
        print(json.dumps(res.index, indent=2))
    return 0


def _status(args) -> int:
    from ..media.ref_folder import load_reference_folder, read_index
    index = read_index(args.folder)
    try:
        rf = load_reference_folder(args.folder)
        coloured, gray = [f for f, _ in rf.references], rf.gray_skipped
    except ValueError as e:
        if "no coloured reference" not in str(e):
            raise
        coloured, gray = [], [s["ref_frame"] for s in index.get("shots", [])]
    print(f"refs: {args.folder}: {len(coloured)} coloured, {len(gray)} gray; "
          f"cuts at {', '.join(map(str, index['cuts'])) or '(none)'}", file=sys.stderr)
    if args.json:
        print(json.dumps({"coloured": coloured, "gray": gray, "cuts": index["cuts"]}, indent=2))
    return 0
