"""``python -m vscolormnet COMMAND ...``: each command lives in ``vscolormnet.commands.<module>``.

A command module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Nothing is written to stdout except what a command is asked to print (e.g. ``--json``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = {
    "colorize-frames": "vscolormnet.commands.colorize_frames",
    "colorize": "vscolormnet.commands.colorize",
    "bench": "vscolormnet.commands.bench",
    "export": "vscolormnet.commands.export",
    "download": "vscolormnet.commands.download",
    "verify": "vscolormnet.commands.verify",
    "refs": "vscolormnet.commands.refs",
    "eval": "vscolormnet.commands.eval",
}


def main(argv=None) -> int:
    """Parse the command line and run one command; user errors exit 2 with a one-line message."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m vscolormnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue  # command not built yet
            raise
        modules[name] = module
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
