"""download: fetch the official checkpoint into the weights folder, verified and with its licence notice.

``download`` (or ``download colormnet``) fetches the ColorMNet checkpoint; ``download ddcolor-large``
(``-tiny``, ``-artistic``, ``-paper``) the DDColor weights from the Hugging Face hub (the hub's
address: ``$HF_ENDPOINT``), checked against the hub's LFS SHA-256 (``weights.ddcolor_download``).
The arguments are checked before anything is fetched: a bad one is one ``download: error:``
line naming the flag, exit 2. A failed transfer or a fetched file that fails a check (HTTP,
network, size, SHA-256, not a usable checkpoint) is one line too, exit 1.
"""
from __future__ import annotations

import argparse
import sys

HELP = ("download the official ColorMNet checkpoint (CC BY-NC-SA 4.0 weights) or DDColor weights from the hub "
        "(verified, resumable)")
COLORMNET = "colormnet"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    from ..weights.checkpoint import CHECKPOINT_URL, ENV_WEIGHTS_DIR
    from ..weights.ddcolor_hub import VARIANTS
    p.add_argument("model", nargs="?", default=COLORMNET, metavar="MODEL",
                   help=f"{COLORMNET} (default: the ColorMNet checkpoint) or {', '.join(VARIANTS)} (DDColor weights "
                        "from the Hugging Face hub; $HF_ENDPOINT for a mirror)")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help=f"target folder, created if needed (default: ${ENV_WEIGHTS_DIR} or the per-user data folder)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="refuse the file unless it has this SHA-256 "
                                                                 "(64 hexadecimal digits)")
    p.add_argument("--url", default=None, metavar="URL",
                   help=f"download the ColorMNet checkpoint from here instead (http/https; default {CHECKPOINT_URL})")
    p.add_argument("--force", action="store_true", help="download even if a valid file is already there")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds without data (the partial file is kept for a resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:  # noqa: D103
    from ..weights.checkpoint import CHECKPOINT_URL, sha256_record_path
    from ..weights.download import NOTICE_NAME, DownloadError, download_checkpoint
    from .common import CommandError
    if str(args.model).strip().lower() != COLORMNET:
        return _run_ddcolor(args)
    try:
        res = download_checkpoint(args.dir, url=args.url or CHECKPOINT_URL, sha256=args.sha256, force=args.force,
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


def _run_ddcolor(args) -> int:
    """``download ddcolor-…``: the weights from the hub, checked against its LFS SHA-256."""
    from ..util.errors import UserError
    from ..weights.checkpoint import sha256_record_path
    from ..weights.ddcolor_download import NOTICE_NAME, DownloadError, download_ddcolor, source_path
    from ..weights.ddcolor_hub import VARIANTS, variant_names, variant_of
    from .common import CommandError
    try:
        variant_of(args.model)
    except UserError:
        raise UserError.bad("MODEL", args.model, f"{COLORMNET} or one of {', '.join(variant_names())}") from None
    if args.url is not None:
        raise UserError("--url applies to the ColorMNet checkpoint; the DDColor weights come from the Hugging Face "
                        "hub (set $HF_ENDPOINT for a mirror)", param="--url", value=args.url,
                        accepted=f"no --url with {args.model}")
    try:
        res = download_ddcolor(args.model, args.dir, sha256=args.sha256, force=args.force, timeout=args.timeout,
                               progress=not args.no_progress)
    except DownloadError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise CommandError(f"{where}{e.strerror or e}") from None
    state = "downloaded and verified" if res.downloaded else "already there, verified"
    print(f"download: {res.path}: {state} ({res.variant.name}: {res.variant.model} network, {res.tensors} tensors "
          f"with the right shapes and finite values, {res.size:,} bytes)", file=sys.stderr)
    src = res.source
    hub = (f"the hub's LFS SHA-256 of {src['repo']}/{src['filename']} at {str(src['revision'])[:12]}"
           if src.get("repo") else "its record")
    print(f"download: SHA-256 {res.sha256} = {hub} (recorded in {sha256_record_path(res.path).name}, "
          f"{source_path(res.path).name})", file=sys.stderr)
    variant = VARIANTS[res.variant.name]
    if res.hub is not None:
        print(f"download: licence: {res.hub.licence_line()}; see {res.path.parent / NOTICE_NAME}", file=sys.stderr)
    else:
        card = f"licence: {src['licence']}" if src.get("licence") else "see it for the licence"
        print(f"download: licence: DDColor code Apache-2.0; the weights: the model card {variant.card_url} ({card}); "
              f"see {res.path.parent / NOTICE_NAME}", file=sys.stderr)
    return 0
