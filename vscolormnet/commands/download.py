"""download: fetch the official checkpoint into the weights folder, verified and with its licence notice.

The arguments are checked before anything is fetched: a bad one is one ``download: error:``
line naming the flag, exit 2. A failed transfer or a fetched file that fails a check (HTTP,
network, size, SHA-256, not a usable checkpoint) is one line too, exit 1.
"""
from __future__ import annotations

import argparse
import sys

HELP = "download the official ColorMNet checkpoint (verified, resumable; CC BY-NC-SA 4.0 weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..weights.checkpoint import CHECKPOINT_URL, ENV_WEIGHTS_DIR
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"target folder, created if needed (default: ${ENV_WEIGHTS_DIR} or the per-user data folder)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="refuse the file unless it has this SHA-256 "
                                                                 "(64 hexadecimal digits)")
    p.add_argument("--url", default=CHECKPOINT_URL, metavar="URL", help="download from here instead (http/https)")
    p.add_argument("--force", action="store_true", help="download even if a valid file is already there")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds without data (the partial file is kept for a resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:  # noqa: D103
    from ..weights.checkpoint import sha256_record_path
    from ..weights.download import NOTICE_NAME, DownloadError, download_checkpoint
    from .common import CommandError
    try:
        res = download_checkpoint(args.dir, url=args.url, sha256=args.sha256, force=args.force,
                                  timeout=args.timeout, progress=not args.no_progress)
    except DownloadError as e:
        raise CommandError(str(e)) from None
    except OSError as e:  # what the checks could not foresee (disk full, a folder made read-only meanwhile)
        where = f"{e.filename}: " if e.filename else ""
        raise CommandError(f"{where}{e.strerror or e}") from None
    state = "downloaded and verified" if res.downloaded else "already there, verified"
    print(f"download: {res.path}: {state} (all keys, shapes and finite values, {res.size:,} bytes)",
          file=sys.stderr)
    print(f"download: SHA-256 {res.sha256} (recorded in {sha256_record_path(res.path).name})", file=sys.stderr)
    print(f"download: the weights are CC BY-NC-SA 4.0 (non-commercial, share-alike, credit the ColorMNet "
          f"authors): see {res.path.parent / NOTICE_NAME}", file=sys.stderr)
    return 0
