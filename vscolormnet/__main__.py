"""``python -m vscolormnet COMMAND ...``: each command lives in ``vscolormnet.commands.<module>``.

A command module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Nothing is written to stdout except what a command is asked to print (e.g. ``--json``).
Exit codes and messages come from ``util.cli.run_cli`` (shared with ``python -m vscolormnet.film``):
a user's mistake is one line naming the flag (exit 2); a failure after work began is one line
(exit 1); Ctrl-C/SIGTERM exit 130/143 after cleanup; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .util.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, run_cli
from .util.offline import default_offline

COMMANDS = {
    "colorize-frames": "vscolormnet.commands.colorize_frames",
    "colorize": "vscolormnet.commands.colorize",
    "colorize-image": "vscolormnet.commands.colorize_image",
    "bench": "vscolormnet.commands.bench",
    "export": "vscolormnet.commands.export",
    "download": "vscolormnet.commands.download",
    "verify": "vscolormnet.commands.verify",
    "refs": "vscolormnet.commands.refs",
    "eval": "vscolormnet.commands.eval",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: the flag, what is accepted, exit 2."""

    def error(self, message):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _exit_now_if_frames_in_flight(code: int) -> None:
    """After an interrupt or a failed render, VapourSynth would finish the frames in flight before
    the interpreter exits (minutes for a slow network); everything is cleaned up, so leave at once."""
    encode = sys.modules.get("vscolormnet.media.encode")
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) or (code != 0 and encode is not None and encode.ABANDONED.is_set()):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def main(argv=None) -> int:
    """Parse the command line and run one command; returns the exit code.

    Called as a program (``argv`` None) it exits at once after an interrupt instead of waiting for
    frames in flight; called with ``argv`` (tests, scripts) it always returns.
    """
    default_offline()  # nothing downloads weights at run time; `download` lifts this default, not a user's own
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = _Parser(prog="python -m vscolormnet", description=__doc__.splitlines()[0])
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
    module = modules[args.command]
    code = run_cli(args.command, lambda: module.run(args))
    if argv is None:
        _exit_now_if_frames_in_flight(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
