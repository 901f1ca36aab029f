"""verify: check an existing checkpoint (strict structural load, SHA-256 against the recorded one)."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "verify a checkpoint file: all keys and shapes, its SHA-256 and the recorded hash"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="checkpoint (default: where `download` puts the official one)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="also require this SHA-256")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def run(args) -> int:  # noqa: D103
    from ..download import sha256_record_path, verify_checkpoint
    from ..weights import default_checkpoint, resolve_weights
    path = resolve_weights(args.path) if args.path is None else args.path
    res = verify_checkpoint(path, sha256=args.sha256)
    rec = sha256_record_path(res.path).name
    if res.matches_record is None:
        state = f"no recorded hash ({rec} absent)"
    else:
        state = f"matches the recorded hash in {rec}"
    print(f"verify: {res.path}: OK, {res.tensors} tensors with the right shapes, {res.size:,} bytes", file=sys.stderr)
    print(f"verify: SHA-256 {res.sha256}: {state}" + (", and the pinned --sha256" if args.sha256 else ""),
          file=sys.stderr)
    if args.json:
        print(json.dumps({"path": str(res.path), "ok": True, "sha256": res.sha256, "size": res.size,
                          "tensors": res.tensors, "recorded_sha256": res.recorded,
                          "matches_record": res.matches_record,
                          "default_path": str(default_checkpoint())}, indent=2))
    return 0
