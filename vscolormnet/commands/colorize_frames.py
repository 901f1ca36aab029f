"""colorize-frames: colourise a folder of frames from one reference image (official test.py workflow)."""
from __future__ import annotations

import argparse

from ..config import MemoryConfig

HELP = "colourise a folder of frames (PNG/JPG, name order) from one colour reference image"


def add_memory_arguments(p: argparse.ArgumentParser) -> None:
    """The memory parameters, shared by every command that runs the network."""
    d = MemoryConfig()
    p.add_argument("--mem-every", type=int, default=d.mem_every, help="store a frame every N frames (5)")
    p.add_argument("--max-mid-term-frames", type=int, default=d.max_mid_term_frames)
    p.add_argument("--min-mid-term-frames", type=int, default=d.min_mid_term_frames)
    p.add_argument("--num-prototypes", type=int, default=d.num_prototypes)
    p.add_argument("--max-long-term-elements", type=int, default=d.max_long_term_elements)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--disable-long-term", action="store_true", help="no long-term memory")


def memory_config(args) -> MemoryConfig:
    """MemoryConfig from parsed arguments (validated)."""
    cfg = MemoryConfig(mem_every=args.mem_every, max_mid_term_frames=args.max_mid_term_frames,
                       min_mid_term_frames=args.min_mid_term_frames, num_prototypes=args.num_prototypes,
                       max_long_term_elements=args.max_long_term_elements, top_k=args.top_k,
                       enable_long_term=not args.disable_long_term)
    cfg.validate("--")
    return cfg


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend/--device/--device-id/--fp16, shared by the commands."""
    p.add_argument("--backend", default="torch", choices=("torch", "ort", "trt", "auto"))
    p.add_argument("--device", default=None, choices=("cpu", "cuda", "auto"),
                   help="default: cpu, except that --backend auto considers every device")
    p.add_argument("--device-id", type=int, default=0)
    p.add_argument("--fp16", action="store_true", help="half precision (GPU)")


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("frames_dir", metavar="FRAMES_DIR")
    p.add_argument("--ref", required=True, metavar="REF_IMAGE", help="colour reference image")
    p.add_argument("--weights", default=None, metavar="CKPT",
                   help="checkpoint (default: the downloaded official one)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    p.add_argument("--first-frame-is-ref", action="store_true",
                   help="the reference is the colour version of the first frame (official default mode); "
                        "without it the reference is a separate exemplar")
    add_memory_arguments(p)
    add_backend_arguments(p)
    p.add_argument("--save-ab", metavar="AB.npz", help="also save ab_pred and memory sizes per frame")


def run(args) -> int:  # noqa: D103
    from ..frames import colorize_frames
    res = colorize_frames(args.frames_dir, args.ref, args.weights, args.output,
                          first_frame_is_ref=args.first_frame_is_ref, config=memory_config(args),
                          backend=args.backend, device=args.device, device_id=args.device_id, fp16=args.fp16,
                          save_ab=args.save_ab)
    import sys
    print(f"colorize-frames: {len(res.ab_pred)} frames written to {args.output} "
          f"({res.seconds_per_frame:.3f} s/frame after the first)", file=sys.stderr)
    return 0
