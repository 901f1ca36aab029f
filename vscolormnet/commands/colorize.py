"""colorize: video file in, colourised video file out (the same graph a .vpy would build).

Every argument is checked before the video is opened (indexing a film takes a while), and the
output settings are tried on one blank frame before the first frame is rendered, so mistakes
cost seconds. The output is never one of the inputs and only ever appears complete.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..runtime.geometry import DEFAULT_SIZE, SIZE_CHOICES
from .common import (
    add_backend_arguments,
    add_memory_arguments,
    add_ref_mismatch_argument,
    backend_options,
    check_output_file,
    check_ref_folder_fits,
    memory_config,
    refuse_inputs,
)

HELP = "colourise a video file from colour reference image(s), or automatic ones (--auto-ref), and encode it with ffmpeg"


def add_arguments(p) -> None:  # noqa: D103
    p.add_argument("input", metavar="INPUT_VIDEO")
    p.add_argument("--ref", default=None, nargs="+", metavar="REF_IMAGE",
                   help="colour reference image(s), or one folder made by `refs extract` or `refs auto`")
    p.add_argument("--auto-ref", default=None, metavar="MODEL",
                   help="no colour image: colour one frame per shot with DDColor (ddcolor-large, ddcolor-tiny or a hub "
                        "name) into OUT.refs/ beside -o (kept: retouch it and re-run), then colourise from it")
    p.add_argument("--auto-ref-weights", default=None, metavar="CKPT",
                   help="DDColor checkpoint for --auto-ref (default: the one `download MODEL` fetched)")
    p.add_argument("--auto-ref-size", type=int, default=512, metavar="S",
                   help="the square size DDColor runs at for --auto-ref, a multiple of 32 (512)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT_VIDEO",
                   help="output file; its extension picks the container (.mkv, .mp4, ...)")
    p.add_argument("--ref-frames", type=int, nargs="+", metavar="N",
                   help="reference i is the colour version of frame N_i (default: exemplars)")
    p.add_argument("--size", default=DEFAULT_SIZE, type=str.lower, choices=SIZE_CHOICES,
                   help=f"inference size: {', '.join(SIZE_CHOICES)} (default {DEFAULT_SIZE})")
    p.add_argument("--weights", default=None, metavar="CKPT")
    p.add_argument("--scene-reset", action="store_true",
                   help="detect scene cuts (scd.Detect) and reset the memory there")
    p.add_argument("--cuts", metavar="CUTS_TXT",
                   help="shot plan: a cuts.txt (first frame of every shot after the first, one per line); "
                        "a reference folder's index adds its own")
    p.add_argument("--ref-scope", choices=("shot", "clip"), default=None,
                   help="shot (default with cuts): a shot with its own references reads only those; "
                        "clip: every frame reads every reference")
    add_ref_mismatch_argument(p)
    add_memory_arguments(p)
    add_backend_arguments(p)
    p.add_argument("--codec-args", default=None,
                   help="ffmpeg output options (default: '-c:v libx264 -crf 16 -preset medium')")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio from the input")
    p.add_argument("--side-by-side", metavar="PNG",
                   help="also write a PNG: gray input / reference / result, at the middle frame")
    from ..film.options import add_film_arguments
    add_film_arguments(p)


def check_refs(refs: list[str], ref_frames: list[int] | None) -> str | list[str]:
    """``--ref`` as Colorize's ``ref``: colour image files, or one reference folder (checked here)."""
    from ..media.images import is_colour, read_rgb
    folders = [r for r in refs if Path(r).expanduser().is_dir()]
    if folders:
        if len(refs) > 1:
            raise ValueError(f"--ref takes colour images or one reference folder, not both or several folders "
                             f"(got folder {folders[0]} among {len(refs)} arguments)")
        if ref_frames is not None:
            raise ValueError("--ref-frames cannot be used with a reference folder (its ref_<frame> file names "
                             "give the frames)")
        from ..media.ref_folder import load_reference_folder
        try:
            load_reference_folder(folders[0])
        except ValueError as e:
            raise ValueError(f"--ref {folders[0]}: {e}") from None
        return folders[0]
    for r in refs:
        if not is_colour(read_rgb(r, "--ref image")):
            raise ValueError(f"--ref image {r} is grayscale; a reference must be in colour")
    if ref_frames is not None:
        if len(ref_frames) != len(refs):
            raise ValueError(f"--ref-frames must give one frame number per --ref image ({len(refs)}), "
                             f"got {len(ref_frames)}")
        if any(n < 0 for n in ref_frames):
            raise ValueError(f"--ref-frames must be frame numbers ≥ 0, got {min(ref_frames)}")
        if len(set(ref_frames)) != len(ref_frames):
            raise ValueError(f"--ref-frames must not repeat a frame, got {' '.join(map(str, ref_frames))}")
    return list(refs)


def check_arguments(args) -> dict:
    """Everything that can be checked without opening the video; returns the prepared pieces."""
    from ..media.encode import DEFAULT_CODEC_ARGS, parse_codec_args
    from ..weights.checkpoint import CheckpointError, resolve_weights
    memory = memory_config(args)
    backend = backend_options(args)
    codec_args = parse_codec_args(args.codec_args if args.codec_args is not None else DEFAULT_CODEC_ARGS)
    src = Path(args.input).expanduser()
    if src.suffix.lower() == ".vpy":
        raise ValueError(f"INPUT_VIDEO {src} is a VapourSynth script; run it with vspipe "
                         "(see README, examples/render.sh), or give a video file")
    if not src.is_file():
        raise ValueError(f"INPUT_VIDEO {src} " + ("is not a file" if src.exists() else "does not exist"))
    try:
        weights = resolve_weights(args.weights)
    except CheckpointError as e:
        raise CheckpointError(f"--weights: {e}") from None
    ref = check_refs(args.ref, args.ref_frames) if args.ref else None
    if args.cuts is not None:
        from ..runtime.shots import PlanError, read_cuts_file
        try:
            read_cuts_file(args.cuts)
        except PlanError as e:
            raise ValueError(f"--cuts: {e}") from None
    output = check_output_file(args.output, "-o", need_suffix="-f" not in codec_args)
    inputs = [("INPUT_VIDEO", src), ("--weights", weights),
              *((f"--ref {'folder' if isinstance(ref, str) else 'image'}", r) for r in args.ref or ())]
    refuse_inputs(output, "-o", inputs)
    sbs = None
    if args.side_by_side:
        sbs = check_output_file(args.side_by_side, "--side-by-side", suffixes=(".png",))
        refuse_inputs(sbs, "--side-by-side", [*inputs, ("-o", output)])
    return dict(memory=memory, backend=backend, codec_args=codec_args, src=src, weights=weights, ref=ref,
                output=output, side_by_side=sbs)


def run(args) -> int:  # noqa: D103
    from ..film.options import film_kwargs
    if args.auto_ref is not None or not args.ref:
        return _run_auto_ref(args)
    film = film_kwargs(args)
    if film is not None:                      # a film across Ray workers (vscolormnet/film)
        from ..film import run_film
        run_film(**film)
        return 0
    return _render(args, check_arguments(args))


def _run_auto_ref(args) -> int:
    """``--auto-ref``: ``refs auto`` into ``OUT.refs/`` beside -o, then exactly the ``--ref <that folder>`` run.

    Every flag is checked first (the film flags through ``film_kwargs`` itself); the references are
    computed once, before anything is rendered or a shot is sent to a worker."""
    import argparse

    from ..film.options import film_kwargs
    from ..refs.auto import auto_references
    from .refs_auto import check_ddcolor_options, check_refs_dir, read_cuts
    if args.auto_ref is None:
        raise ValueError("--ref or --auto-ref is needed: colour reference image(s) or a reference folder, or "
                         "--auto-ref ddcolor-large to colour one frame per shot automatically")
    if args.ref:
        raise ValueError("--ref and --auto-ref cannot be used together; to reuse a retouched automatic folder, "
                         "pass it as --ref alone")
    if args.ref_frames is not None:
        raise ValueError("--ref-frames cannot be used with --auto-ref (the picked frame of each shot is its reference)")
    model, weights, size = check_ddcolor_options(args.auto_ref, args.auto_ref_weights, args.auto_ref_size,
                                                 {"model": "--auto-ref", "weights": "--auto-ref-weights",
                                                  "input_size": "--auto-ref-size"})
    output = Path(args.output).expanduser()
    folder = check_refs_dir(output.with_name(output.name + ".refs"), "--auto-ref folder")
    cuts = read_cuts(args.cuts)
    film = film_kwargs(argparse.Namespace(**{**vars(args), "ref": [str(output.parent)]}))   # flags only
    a = check_arguments(args) if film is None else None
    res = auto_references(args.input, folder, model=model, weights=weights, cuts=cuts, input_size=size,
                          backend_options=backend_options(args))
    print(f"colorize: --auto-ref: references in {res.folder} ({res.coloured} coloured by {model}, {res.reused} "
          f"reused, {res.person} kept as a person made them); retouch them and re-run, or pass --ref {res.folder}",
          file=sys.stderr)
    args.ref, args.auto_ref = [str(folder)], None
    if film is not None:
        from ..film import run_film
        run_film(**film_kwargs(args))
        return 0
    a["ref"] = check_refs(args.ref, None)
    return _render(args, a)


def _render(args, a: dict) -> int:
    """The one-process run: open, check the reference folder's fit, Colorize, encode."""
    import vapoursynth as vs

    from ..media.encode import check_encoder, encode
    from ..media.vsformat import open_video
    from ..vs.filter import Colorize
    clip = open_video(a["src"], "INPUT_VIDEO")
    if isinstance(a["ref"], str):
        check_ref_folder_fits(a["ref"], clip, args.allow_ref_mismatch, what="INPUT_VIDEO")
    if args.ref_frames is not None and max(args.ref_frames) >= clip.num_frames:
        raise ValueError(f"--ref-frames must be within 0…{clip.num_frames - 1} ({a['src']} has "
                         f"{clip.num_frames} frames), got {max(args.ref_frames)}")
    if args.scene_reset:
        from ..vs.scenes import detector_clip
        clip = vs.core.std.CopyFrameProps(clip, detector_clip(clip), props=["_SceneChangePrev"])
    audio = None if args.no_audio else str(a["src"])
    check_encoder(clip, a["output"], a["codec_args"], audio_from=audio)
    out = Colorize(clip, a["ref"], ref_frames=args.ref_frames, cuts=args.cuts, ref_scope=args.ref_scope,
                   allow_ref_mismatch=args.allow_ref_mismatch, size=args.size, weights=str(a["weights"]),
                   scene_reset=args.scene_reset, memory=a["memory"],
                   **a["backend"])

    middle, kept = clip.num_frames // 2, {}

    def keep(n: int, frame) -> None:
        if n == middle and a["side_by_side"] is not None:
            kept["frame"] = frame.copy()
    encode(out, a["output"], a["codec_args"], audio_from=audio, on_frame=keep)
    print(f"colorize: wrote {a['output']}", file=sys.stderr)
    if a["side_by_side"] is not None:
        from ..media.encode import for_y4m
        from ..media.preview import frame_clip, side_by_side
        if "frame" in kept:
            side_by_side(clip, frame_clip(kept["frame"], for_y4m(out)), a["ref"], a["side_by_side"], n=middle,
                         result_n=0)
        else:       # ffmpeg stopped before the middle frame (e.g. -frames:v in --codec-args)
            side_by_side(clip, out, a["ref"], a["side_by_side"], n=middle)
        print(f"colorize: wrote {a['side_by_side']}", file=sys.stderr)
    return 0
