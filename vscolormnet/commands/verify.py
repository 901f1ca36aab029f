"""verify: check an existing checkpoint (keys, shapes, finite values, SHA-256 against the recorded one).

``--sha256`` and ``PATH`` are checked before the file is read; every failure is one
``verify: error:`` line naming the argument, exit 2, and nothing on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "verify a checkpoint file: all keys and shapes, finite values, its SHA-256 and the recorded hash"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="checkpoint file (default: where `download` puts the official one)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="also require this SHA-256 (64 hexadecimal digits)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


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
    normalise_sha256(args.sha256)
    path = resolve_weights(None) if args.path is None else _check_path(args.path)
    what = "PATH" if args.path is not None else "the default checkpoint"
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
