"""Command line: ``python -m khadem_lab demo [--seed N] [--minutes M]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="khadem-lab", description="khadem_lab: queues on a virtual clock")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the headless demo scenario on the virtual clock")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--minutes", type=float, default=15, help="virtual minutes to run (default 15)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        demo_main(args.seed, args.minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
