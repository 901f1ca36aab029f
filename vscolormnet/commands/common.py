"""Shared pieces of the commands: memory/backend flags, errors that name the flag as typed, path checks.

Every check here is cheap and runs before any video is opened or any frame rendered, so a
typo costs a second, not a night of rendering. Errors are ``UserError``/``ValueError`` (exit 2);
``CommandError`` is a failure after work began (exit 1); ``util.cli.run_cli`` maps them.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
from pathlib import Path

from ..runtime.config import MemoryConfig
from ..util.errors import CommandError  # noqa: F401  (commands raise it)

MEMORY_FLAGS = {"mem_every": "--mem-every", "max_mid_term_frames": "--max-mid-term-frames",
                "min_mid_term_frames": "--min-mid-term-frames", "num_prototypes": "--num-prototypes",
                "max_long_term_elements": "--max-long-term-elements", "top_k": "--top-k",
                "enable_long_term": "--disable-long-term"}
# ---- memory and backend flags -------------------------------------------------------------
def add_memory_arguments(p: argparse.ArgumentParser) -> None:
    """The memory parameters, shared by every command that runs the network."""
    d = MemoryConfig()
    p.add_argument("--mem-every", type=int, default=d.mem_every, metavar="N",
                   help=f"store a frame in memory every N frames ({d.mem_every})")
    p.add_argument("--max-mid-term-frames", type=int, default=d.max_mid_term_frames, metavar="N",
                   help=f"working-memory frames that trigger consolidation ({d.max_mid_term_frames})")
    p.add_argument("--min-mid-term-frames", type=int, default=d.min_mid_term_frames, metavar="N",
                   help=f"working-memory frames kept after consolidation ({d.min_mid_term_frames})")
    p.add_argument("--num-prototypes", type=int, default=d.num_prototypes, metavar="N",
                   help=f"long-term elements per consolidation ({d.num_prototypes})")
    p.add_argument("--max-long-term-elements", type=int, default=d.max_long_term_elements, metavar="N",
                   help=f"long-term capacity ({d.max_long_term_elements})")
    p.add_argument("--top-k", type=int, default=d.top_k, metavar="K", help=f"memory readout top-k ({d.top_k})")
    p.add_argument("--disable-long-term", action="store_true", help="no long-term memory")


def with_flag_names(message: str, flags: dict[str, str]) -> str:
    """``message`` with every parameter name of ``flags`` replaced by its flag (``mem_every`` → ``--mem-every``)."""
    pattern = r"(?<![\w-])(" + "|".join(map(re.escape, sorted(flags, key=len, reverse=True))) + r")\b"
    return re.sub(pattern, lambda m: flags[m.group(1)], message)


def memory_config(args) -> MemoryConfig:
    """MemoryConfig from parsed arguments, validated; errors name the flags as typed."""
    cfg = MemoryConfig(mem_every=args.mem_every, max_mid_term_frames=args.max_mid_term_frames,
                       min_mid_term_frames=args.min_mid_term_frames, num_prototypes=args.num_prototypes,
                       max_long_term_elements=args.max_long_term_elements, top_k=args.top_k,
                       enable_long_term=not args.disable_long_term)
    try:
        cfg.validate()
    except ValueError as e:
        raise ValueError(with_flag_names(str(e), MEMORY_FLAGS)) from None
    return cfg


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend/--device/--device-id/--fp16/--precision/--tf32, shared by the commands (None = the backend's default)."""
    p.add_argument("--backend", default="torch", choices=("torch", "ort", "trt", "auto"),
                   help="torch (default), ort (ONNX Runtime), trt (TensorRT) or auto (fastest that works)")
    p.add_argument("--device", default=None, choices=("cpu", "cuda", "auto"),
                   help="default: cpu, except that --backend auto considers every device")
    p.add_argument("--device-id", type=int, default=None, metavar="N", help="CUDA device index (0)")
    p.add_argument("--fp16", action="store_true", help="half precision (GPU); same as --precision fp16")
    p.add_argument("--precision", default=None, choices=("fp32", "fp16", "bf16", "auto"),
                   help="fp32 (default, the parity reference), fp16 (GPU), bf16, or auto (fp16 on CUDA, "
                        "bf16 on a CPU with native bf16, else fp32)")
    add_tf32_argument(p)


TF32_HELP = "allow TF32 for fp32 maths on NVIDIA GPUs (default: exact fp32)"


def add_tf32_argument(p: argparse.ArgumentParser, help: str = TF32_HELP) -> None:
    """``--tf32`` (None when not given, so the backend's default applies), shared by the commands and ``export``."""
    p.add_argument("--tf32", action="store_true", default=None, help=help)


def backend_flag_message(message: str) -> str:
    """A ``BackendError`` message in flag spelling: ``device='cuda'`` → ``--device cuda``, ``fp16=True`` → ``--fp16``."""
    message = re.sub(r"\bfp16=True\b", "--fp16", message)
    message = re.sub(r"\b(backend|device_id|device|precision)=('?)([^'\s;,)]+)\2",
                     lambda m: f"--{m.group(1).replace('_', '-')} {m.group(3)}", message)
    message = re.sub(r"\bbackend '(\w+)'", r"--backend \1", message)
    message = re.sub(r"(--backend \w+) or '(\w+)'", r"\1 or \2", message)
    return re.sub(r"^(backend|device_id|device|fp16|precision|tf32) ", lambda m: f"--{m.group(1).replace('_', '-')} ", message)


def backend_options(args) -> dict:
    """``backend=…, device=…, device_id=…, fp16=…`` for ``Colorize``/``create_backend``, checked here first:
    a backend that cannot run (``--backend trt`` without TensorRT, CUDA missing) is one line, exit 2."""
    from ..backends import BackendError, resolve_spec
    opts = dict(backend=args.backend, device=args.device, device_id=args.device_id,
                fp16=True if args.fp16 else None, precision=args.precision, tf32=args.tf32)
    try:
        resolve_spec(**opts)
    except BackendError as e:
        raise BackendError(backend_flag_message(str(e))) from None
    return opts


# ---- paths ---------------------------------------------------------------------------------
def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if ``a`` and ``b`` name one file: equal resolved paths (symlinks, ``..``), or ``samefile``
    (hard links, bind mounts) when both exist."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    with contextlib.suppress(OSError):
        if pa.resolve() == pb.resolve():
            return True
    with contextlib.suppress(OSError):
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    return False


def refuse_inputs(path: str | os.PathLike, flag: str, inputs: list[tuple[str, str | os.PathLike | None]]) -> None:
    """Refuse an output ``path`` that is one of ``inputs`` (``[(description, path), ...]``): never write to an input."""
    for what, other in inputs:
        if other is not None and same_path(path, other):
            raise ValueError(f"{flag} {path} is the same file as {what} {other}; "
                             "choose another output name (inputs are never overwritten)")


def check_output_file(path: str | os.PathLike, flag: str, suffixes: tuple[str, ...] | None = None,
                      need_suffix: bool = True) -> Path:
    """An output file name whose folder exists and is writable, that is not a folder, with a suffix
    (one of ``suffixes`` when given; ffmpeg picks the container from it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} must name a {' or '.join(suffixes)} file, got {path}")
    if need_suffix and not path.suffix:
        raise ValueError(f"{flag} {path} has no file extension (such as .mkv or .mp4); ffmpeg picks the "
                         "container from it")
    check_writable_folder(path.parent, f"{flag} {path}: folder")
    return path


def check_writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """An existing folder in which a file can be created (nothing is created: no stray folders)."""
    folder = Path(folder).expanduser() if str(folder) else Path(".")
    if not folder.exists():
        raise ValueError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{what} {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder} is not writable")
    return folder


# ---- reference folders ---------------------------------------------------------------------
def add_ref_mismatch_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-ref-mismatch", action="store_true",
                   help="use a reference folder extracted from another clip (another frame count or picture "
                        "shape); its cuts outside this clip are dropped")


def check_ref_folder_fits(folder_path, clip, allow: bool, flag: str = "--ref", what: str = "INPUT") -> None:
    """Refuse a reference folder made from another clip (frame count, picture shape, cuts), naming both
    clips and the flag that overrides it; nothing is rendered before this check."""
    from ..media.ref_folder import fit_problem, load_reference_folder
    if allow:
        return
    why = fit_problem(load_reference_folder(folder_path), clip.num_frames, clip.width, clip.height, what)
    if why:
        raise ValueError(f"{flag} {why} (--allow-ref-mismatch uses it anyway)")
