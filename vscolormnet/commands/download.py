"""download: fetch the official checkpoint into the weights folder, verified and with its licence notice."""
from __future__ import annotations

import argparse
import sys

HELP = "download the official ColorMNet checkpoint (verified, resumable; CC BY-NC-SA 4.0 weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..weights import CHECKPOINT_URL, ENV_WEIGHTS_DIR
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"target folder (default: ${ENV_WEIGHTS_DIR} or the per-user data folder)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="refuse the file unless it has this SHA-256")
    p.add_argument("--url", default=CHECKPOINT_URL, metavar="URL", help="download from here instead")
    p.add_argument("--force", action="store_true", help="download even if a valid file is already there")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds without data (the partial file is kept for a resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:  # noqa: D103
    from ..download import NOTICE_NAME, download_checkpoint, sha256_record_path
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    res = download_checkpoint(args.dir, url=args.url, sha256=args.sha256, force=args.force,
                              timeout=args.timeout, progress=not args.no_progress)
    state = "downloaded and verified" if res.downloaded else "already there, verified"
    print(f"download: {res.path}: {state} (all keys and shapes, {res.size:,} bytes)", file=sys.stderr)
    print(f"download: SHA-256 {res.sha256} (recorded in {sha256_record_path(res.path).name})", file=sys.stderr)
    print(f"download: the weights are CC BY-NC-SA 4.0 (non-commercial, share-alike, credit the ColorMNet "
          f"authors): see {res.path.parent / NOTICE_NAME}", file=sys.stderr)
    return 0
