"""colorize: video file in, colourised video file out (the same graph a .vpy would build)."""
from __future__ import annotations

from pathlib import Path

from .colorize_frames import add_backend_arguments, add_memory_arguments

HELP = "colourise a video file from colour reference image(s) and encode it with ffmpeg"


def add_arguments(p) -> None:  # noqa: D103
    p.add_argument("input", metavar="INPUT_VIDEO")
    p.add_argument("--ref", required=True, nargs="+", metavar="REF_IMAGE",
                   help="colour reference image(s), or one folder made by `refs extract`")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT_VIDEO")
    p.add_argument("--ref-frames", type=int, nargs="+", metavar="N",
                   help="reference i is the colour version of frame N_i (default: exemplars)")
    p.add_argument("--size", default="512", help="inference size: 384, 512, 640 or native (default 512)")
    p.add_argument("--weights", default=None, metavar="CKPT")
    p.add_argument("--scene-reset", action="store_true",
                   help="detect scene cuts (scd.Detect) and reset the memory there")
    add_memory_arguments(p)
    add_backend_arguments(p)
    p.add_argument("--codec-args", default=None,
                   help="ffmpeg output options (default: '-c:v libx264 -crf 16 -preset medium')")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio from the input")
    p.add_argument("--side-by-side", metavar="PNG",
                   help="also write a PNG: gray input / reference / result, at the middle frame")


def run(args) -> int:  # noqa: D103
    import vapoursynth as vs

    from ..encode import DEFAULT_CODEC_ARGS, encode
    from ..filter import Colorize
    from .colorize_frames import memory_config

    if not Path(args.input).is_file():
        raise ValueError(f"input video {args.input} does not exist")
    core = vs.core
    clip = core.bs.VideoSource(str(args.input), cachemode=0, showprogress=False)
    ref = args.ref[0] if len(args.ref) == 1 and Path(args.ref[0]).is_dir() else args.ref
    cfg = memory_config(args)
    scene_reset = args.scene_reset
    if scene_reset:
        from ..scenes import detector_clip
        clip = core.std.CopyFrameProps(clip, detector_clip(clip), props=["_SceneChangePrev"])
    try:
        out = Colorize(clip, ref, ref_frames=args.ref_frames, size=args.size, weights=args.weights,
                       backend=args.backend, device=args.device or ("auto" if args.backend == "auto" else "cpu"), device_id=args.device_id, fp16=args.fp16,
                       scene_reset=scene_reset, mem_every=cfg.mem_every,
                       max_mid_term_frames=cfg.max_mid_term_frames, min_mid_term_frames=cfg.min_mid_term_frames,
                       num_prototypes=cfg.num_prototypes, max_long_term_elements=cfg.max_long_term_elements,
                       top_k=cfg.top_k, enable_long_term=cfg.enable_long_term)
    except vs.Error as e:
        raise ValueError(str(e)) from None
    encode(out, args.output, args.codec_args or DEFAULT_CODEC_ARGS,
           audio_from=None if args.no_audio else args.input)
    if args.side_by_side:
        from ..preview import side_by_side
        side_by_side(clip, out, ref, args.side_by_side)
    return 0
