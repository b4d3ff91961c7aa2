"""``khadem-lab lab`` (JupyterLab on the course notebooks) and ``khadem-lab demo``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import exits

LAB_EXAMPLE = """example:
  khadem-lab lab                      # the notebooks of this checkout
  khadem-lab lab --notebooks ~/course --port 8899"""
DEMO_EXAMPLE = """example:
  khadem-lab demo --seed 3 --minutes 30"""


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    lab = commands.add_parser(
        "lab",
        parents=[common],
        help="open JupyterLab on the course notebooks",
        description="Start JupyterLab in the course's notebooks folder (needs the lab extra).",
        epilog=LAB_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab.add_argument(
        "--notebooks", metavar="DIR", help="the notebooks folder (default: the checkout's notebooks/)"
    )
    lab.add_argument("--port", type=int, help="port for JupyterLab (default: its own choice)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.set_defaults(run=run_lab)
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the headless demo scenario on the virtual clock",
        description="A small shop's background jobs on the virtual clock: what ran when, and the stats.",
        epilog=DEMO_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--minutes", type=float, default=15, help="virtual minutes to run (default 15)")
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import main as demo_main

    demo_main(args.seed, args.minutes)
    return exits.OK


def notebooks_folder(given: str | None) -> Path:
    """The folder to open: ``given``, or the checkout's ``notebooks/`` beside the package."""
    folder = Path(given) if given else Path(__file__).resolve().parents[2] / "notebooks"
    if not folder.is_dir():
        raise exits.CommandError(
            f"no notebooks folder at {folder}: give one with --notebooks DIR "
            "(the course notebooks come with a checkout of the repository)",
            exits.USAGE,
        )
    return folder


def run_lab(args: argparse.Namespace) -> int:
    folder = notebooks_folder(args.notebooks)
    if importlib.util.find_spec("jupyterlab") is None:
        raise exits.CommandError("JupyterLab is not installed: pip install 'khadem-lab[lab]'", exits.USAGE)
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}"]
    if args.port is not None:
        command.append(f"--port={args.port}")
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # a container's root (Docker, CI): Jupyter refuses it
        command.append("--allow-root")
    return subprocess.call(command)
