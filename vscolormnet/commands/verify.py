"""verify: check an existing checkpoint (keys, shapes, finite values, SHA-256 against the recorded one).

ColorMNet and DDColor checkpoints alike: a DDColor file (recognised by its ConvNeXt stem) is
reported with its model size; its SHA-256 is compared with the hub's LFS hash recorded at
download, and with the hub's current one only with ``--hub`` (verify never goes online unasked).
``PATH`` may also be a model name (``ddcolor-large``, ``colormnet``): its downloaded file.
``--sha256`` and ``PATH`` are checked before the file is read; every failure is one
``verify: error:`` line naming the argument, exit 2, and nothing on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "verify a checkpoint (ColorMNet or DDColor): keys and shapes, finite values, its SHA-256 and the recorded hash"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="checkpoint file, or a model name (colormnet, ddcolor-large, …) for its downloaded file "
                        "(default: where `download` puts the ColorMNet one)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="also require this SHA-256 (64 hexadecimal digits)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--hub", action="store_true",
                   help="DDColor: also ask the Hugging Face hub for its current SHA-256 of the file ($HF_ENDPOINT)")


def _check_path(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"PATH {path} does not exist (expected a checkpoint file)")
    if path.is_dir():
        from ..weights.checkpoint import CHECKPOINT_NAME
        raise ValueError(f"PATH {path} is a folder, not a checkpoint file (e.g. {path / CHECKPOINT_NAME})")
    if not path.is_file():
        raise ValueError(f"PATH {path} is not a regular file (expected a checkpoint file)")
    return path


def run(args) -> int:  # noqa: D103
    from ..weights.checkpoint import (
        CheckpointError,
        default_checkpoint,
        normalise_sha256,
        resolve_weights,
        sha256_record_path,
        verify_checkpoint,
    )
    from ..weights.ddcolor_download import is_ddcolor_checkpoint
    from ..weights.ddcolor_hub import find_variant, resolve_ddcolor_weights
    normalise_sha256(args.sha256)
    named = args.path is not None and not Path(args.path).expanduser().exists()
    if named and find_variant(args.path) is not None:
        return _verify_ddcolor(args, resolve_ddcolor_weights(None, args.path, "PATH"), f"the {args.path} weights")
    if named and args.path.strip().lower() == "colormnet":
        args.path = None
    path = resolve_weights(None) if args.path is None else _check_path(args.path)
    what = "PATH" if args.path is not None else "the default checkpoint"
    if is_ddcolor_checkpoint(path):
        return _verify_ddcolor(args, path, what)
    if args.hub:
        raise ValueError("--hub applies to DDColor weights (the hub holds them); this is a ColorMNet checkpoint")
    try:
        res = verify_checkpoint(path, sha256=args.sha256)
    except CheckpointError as e:
        raise ValueError(f"{what}: {e}") from None
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    rec = sha256_record_path(res.path).name
    if res.matches_record is None:
        state = f"no recorded hash ({rec} absent)"
    else:
        state = f"matches the recorded hash in {rec}"
    print(f"verify: {res.path}: OK, {res.tensors} tensors with the right shapes and finite values, "
          f"{res.size:,} bytes", file=sys.stderr)
    print(f"verify: SHA-256 {res.sha256}: {state}" + (", and the pinned --sha256" if args.sha256 else ""),
          file=sys.stderr)
    if args.json:
        print(json.dumps({"path": str(res.path), "ok": True, "sha256": res.sha256, "size": res.size,
                          "tensors": res.tensors, "recorded_sha256": res.recorded,
                          "matches_record": res.matches_record,
                          "default_path": str(default_checkpoint())}, indent=2))
    return 0


def _verify_ddcolor(args, path: Path, what: str) -> int:
    """A DDColor file: size, tensors, finiteness, SHA-256 vs the record (the hub's at download) and, on request,
    the hub's current hash."""
    from ..weights.checkpoint import CheckpointError, sha256_record_path
    from ..weights.ddcolor_download import DownloadError, verify_ddcolor
    from ..weights.ddcolor_hub import default_ddcolor_weights
    try:
        res = verify_ddcolor(path, args.sha256, ask_hub=args.hub)
    except DownloadError as e:
        from .common import CommandError
        raise CommandError(f"--hub: {e}") from None
    except CheckpointError as e:
        raise ValueError(f"{what}: {e}") from None
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    src = res.source
    if res.matches_record is None:
        recorded = f"no recorded hash ({sha256_record_path(path).name} absent)"
    elif src.get("repo"):
        recorded = (f"matches the hub's LFS SHA-256 of {src['repo']}/{src.get('filename')} at "
                    f"{str(src.get('revision'))[:12]}, recorded at download")
    else:
        recorded = f"matches the recorded hash in {sha256_record_path(path).name}"
    if res.hub is None:
        hub = "the hub's current hash: not checked offline (--hub asks the hub)"
    elif res.hub_match:
        hub = f"the hub's current hash: the same ({res.hub_match})"
    else:
        hub = ("the hub's current hash: differs (" + ", ".join(f"{r} has {h[:16]}…" for r, h in res.hub.items())
               + "): not the hub's file, or replaced there since")
    print(f"verify: {res.path}: OK, {res.model} weights ({res.encoder}), {res.tensors} tensors with the right shapes "
          f"and finite values, {res.size:,} bytes", file=sys.stderr)
    print(f"verify: SHA-256 {res.sha256}: {recorded}" + (", and the pinned --sha256" if args.sha256 else "")
          + f"; {hub}", file=sys.stderr)
    if args.json:
        print(json.dumps({"path": str(res.path), "ok": True, "kind": "ddcolor", "model": res.model,
                          "encoder": res.encoder, "sha256": res.sha256, "size": res.size, "tensors": res.tensors,
                          "finite": True, "recorded_sha256": res.recorded, "matches_record": res.matches_record,
                          "source": src or None, "hub_checked": res.hub is not None, "hub_sha256": res.hub,
                          "matches_hub": None if res.hub is None else res.hub_match is not None,
                          "default_path": str(default_ddcolor_weights(src.get("model") or res.model))}, indent=2))
    return 0
