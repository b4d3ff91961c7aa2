"""The ``khadem-lab`` command (also ``python -m khadem_lab``).

Commands: ``work`` (a worker process), ``stats``, ``dlq``, ``jobs`` (look at a queue and mend
it), ``simulate`` (a lab scenario headless), ``lab`` (JupyterLab on the course notebooks) and
``demo``. Exit codes: :mod:`khadem_lab.cli.exits`. The CLI depends on the core, never the reverse.
"""

from __future__ import annotations

from .app import build_parser, main

__all__ = ["build_parser", "main"]
