"""The ``--workers`` flags of ``colorize`` and the Ray import guard (no Ray or VapourSynth imported here).

Kept apart from the driver so the command can add the flags and check them at parse time for
free; a film-only flag without ``--workers``, or a flag that has no meaning for a film
(``--codec-args``: segments are joined without re-encoding), is a one-line error before any work.
"""
from __future__ import annotations

import argparse
from pathlib import Path

RAY_PIN = "ray==2.60.0"
# segment codec → (ffmpeg output options, containers OUT may use, lossless)
CODECS = {
    "ffv1": (["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1"], (".mkv", ".nut", ".avi"), True),
    "libx264": (["-c:v", "libx264", "-crf", "16", "-preset", "medium"], (".mkv", ".mp4", ".mov"), False),
}
FILM_FLAGS = {"ray_address": "--ray-address", "gpus_per_worker": "--gpus-per-worker",
              "threads_per_worker": "--threads-per-worker", "work_dir": "--work-dir",
              "segment_codec": "--segment-codec"}


def import_ray():
    """``import ray``, or a one-line ValueError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--workers needs Ray: pip install '{RAY_PIN}'") from None
    return ray


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0 (such as 1 or 0.5), got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0 (such as 1 or 0.5), got {text!r}")
    return value


def add_film_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers N`` and the flags that only mean something with it."""
    g = p.add_argument_group("film across Ray workers (INPUT may then be a .vpy; --ref is a refs folder)")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="render the shots of --ref's shot plan on N Ray actors, one segment per shot, "
                        "resumable; segments joined without re-encoding")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (`ray start --head`); default: a local runtime")
    g.add_argument("--gpus-per-worker", type=_fraction, default=None, metavar="F",
                   help="GPUs per worker; fractions share a GPU (0.5: two workers per GPU). Default 0")
    g.add_argument("--threads-per-worker", type=_positive_int, default=None, metavar="T",
                   help="CPU threads (and Ray CPUs) per worker (default 1)")
    g.add_argument("--work-dir", default=None, metavar="DIR",
                   help="segments and manifests (default: .OUT.work/ beside -o); must be shared storage "
                        "on a multi-machine cluster")
    g.add_argument("--segment-codec", default=None, choices=tuple(CODECS),
                   help="ffv1 (default, lossless, .mkv output) or libx264 (crf 16)")


def film_kwargs(args) -> dict | None:
    """``run_film`` keyword arguments from parsed ``colorize`` arguments; None without ``--workers``.

    Raises ValueError (one line naming the flag) for a film-only flag without ``--workers`` and
    for ``colorize`` flags that a film run cannot honour.
    """
    if getattr(args, "workers", None) is None:
        given = [flag for name, flag in FILM_FLAGS.items() if getattr(args, name, None) is not None]
        if given:
            raise ValueError(f"{given[0]} needs --workers N")
        return None
    refs = list(getattr(args, "ref", None) or [])
    if len(refs) != 1 or not Path(refs[0]).expanduser().is_dir():
        raise ValueError("--workers needs --ref to be one reference folder made by `refs extract` "
                         "(its cuts are the shot plan)")
    refused = {"ref_frames": "--ref-frames", "scene_reset": "--scene-reset", "codec_args": "--codec-args",
               "side_by_side": "--side-by-side", "device_id": "--device-id"}
    why = {"--codec-args": "segments are encoded with --segment-codec and joined without re-encoding",
           "--device-id": "each worker uses the GPU(s) Ray gives it (--gpus-per-worker)",
           "--scene-reset": "the reference folder's cuts are the scene resets"}
    for name, flag in refused.items():
        if getattr(args, name, None) not in (None, False):
            raise ValueError(f"{flag} cannot be used with --workers"
                             + (f": {why[flag]}" if flag in why else ""))
    return {"input": args.input, "refs_dir": refs[0], "output": args.output, "workers": args.workers,
            "ray_address": args.ray_address, "gpus_per_worker": args.gpus_per_worker or 0.0,
            "threads_per_worker": args.threads_per_worker or 1, "work_dir": args.work_dir,
            "codec": args.segment_codec or "ffv1", "size": getattr(args, "size", "512"),
            "weights": getattr(args, "weights", None), "backend": getattr(args, "backend", "torch"),
            "device": getattr(args, "device", None), "fp16": True if getattr(args, "fp16", False) else None,
            "precision": getattr(args, "precision", None), "tf32": getattr(args, "tf32", None),
            "memory": _memory(args), "audio": not getattr(args, "no_audio", False),
            "cuts": getattr(args, "cuts", None), "ref_scope": getattr(args, "ref_scope", None),
            "allow_ref_mismatch": bool(getattr(args, "allow_ref_mismatch", False))}


def _memory(args):
    """A ``MemoryConfig`` from the memory flags when the parser has them (validated by ``Colorize``)."""
    if not hasattr(args, "mem_every"):
        return None
    from ..runtime.config import MemoryConfig
    return MemoryConfig(mem_every=args.mem_every, max_mid_term_frames=args.max_mid_term_frames,
                        min_mid_term_frames=args.min_mid_term_frames, num_prototypes=args.num_prototypes,
                        max_long_term_elements=args.max_long_term_elements, top_k=args.top_k,
                        enable_long_term=not args.disable_long_term)
