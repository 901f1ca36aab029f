"""``python -m vscolormnet.film INPUT --ref REFS_DIR -o OUT.mkv --workers N ...``: the film run on its own.

The same as ``python -m vscolormnet colorize ... --workers N``; kept so a film can be rendered
(and the tests can kill and rerun a driver) without the rest of the command. Exit codes: 0 done,
1 failed after work began, 2 bad arguments, 130/143 interrupted (after cleanup).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from ..util.cli import run_cli
from .options import add_film_arguments, film_kwargs


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python -m vscolormnet.film", description=__doc__.splitlines()[0])
    p.add_argument("input", metavar="INPUT")
    p.add_argument("--ref", required=True, nargs="+", metavar="REFS_DIR")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--size", default="512", type=str.lower, choices=("384", "512", "640", "native"))
    p.add_argument("--weights", default=None, metavar="CKPT")
    p.add_argument("--backend", default="torch", choices=("torch", "ort", "trt", "auto"))
    p.add_argument("--device", default=None, choices=("cpu", "cuda", "auto"))
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio from INPUT")
    p.add_argument("--allow-ref-mismatch", action="store_true", help="use a reference folder made from another clip")
    p.add_argument("--keep-work", action="store_true", help="keep the segments after the join")
    p.add_argument("--no-progress", action="store_true")
    add_film_arguments(p)
    args = p.parse_args(argv)
    if args.workers is None:
        p.error("--workers N is required")

    def work() -> None:
        from .driver import run_film
        run_film(**film_kwargs(args), keep_work=args.keep_work, progress=not args.no_progress)
    return run_cli("colorize", work)

if __name__ == "__main__":
    sys.exit(main())
