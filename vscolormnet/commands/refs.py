"""refs: gray reference frames at the scene cuts of a video, to colour by hand and pass as ``ref=DIR``."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "extract one gray reference frame per shot (refs extract), or show a reference folder (refs status)"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..scenes import DEFAULT_MIN_SHOT_LENGTH, DEFAULT_THRESHOLD
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
    s = sub.add_parser("status", help="which references of DIR are coloured, which are still gray")
    s.add_argument("folder", metavar="DIR")
    s.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def run(args) -> int:  # noqa: D103
    if args.refs_command == "extract":
        return _extract(args)
    return _status(args)


def _extract(args) -> int:
    from ..refs import extract_references
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
    from ..refs import load_reference_folder, read_index
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
