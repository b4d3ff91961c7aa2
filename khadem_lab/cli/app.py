"""The ``khadem-lab`` command: its parser, and one-line errors with exit codes.

Each command lives in its own module with an ``add_parser(commands, common)`` that registers it
(and its ``run(args) -> exit code``). Errors end the command with one line on stderr and an exit
code from :mod:`khadem_lab.cli.exits`; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from ..errors import ConfigError, KhademLabError, StorageError, UnknownDriverError
from . import exits

DESCRIPTION = """khadem_lab: job queues on a real or a virtual clock.

examples:
  khadem-lab work queue.yaml --jobs myapp.jobs --burst
  khadem-lab stats queue.yaml
  khadem-lab dlq queue.yaml list
  khadem-lab jobs queue.yaml list --state reserved
  khadem-lab simulate flaky --seed 1 --until 1h --out results/
  khadem-lab demo

`khadem-lab COMMAND --help` shows a command's options and an example."""


def build_parser() -> argparse.ArgumentParser:
    from . import inspection, lab, simulate, work

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    parser = argparse.ArgumentParser(
        prog="khadem-lab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    work.add_parser(commands, common)
    inspection.add_parsers(commands, common)
    simulate.add_parser(commands, common)
    lab.add_parsers(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except KeyboardInterrupt:
        print("khadem-lab: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"khadem-lab {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return exit_code(exc)


def exit_code(error: BaseException) -> int:
    """The exit code an error ends the command with."""
    if isinstance(error, exits.CommandError):
        return error.code
    if isinstance(error, (ConfigError, UnknownDriverError)):
        return exits.USAGE
    if isinstance(error, StorageError):
        return exits.UNAVAILABLE
    return exits.FAILED


def one_line(error: BaseException) -> str:
    """The error's message on one line; an error from outside khadem_lab is named by its type."""
    text = " ".join(str(error).split())
    if not isinstance(error, KhademLabError):
        text = f"{type(error).__name__}: {text} (run with --verbose for the traceback)"
    return text
