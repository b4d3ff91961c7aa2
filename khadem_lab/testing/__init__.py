"""The driver contract, shipped with the package, for your own drivers too.

Two ways to run it on a driver, with the same checks (:data:`CHECKS`):

- in a notebook or a script, without pytest: ``report = run_contract(make_driver)``, then
  ``print(report)`` (a table of passed, failed and skipped checks with the reasons),
  ``report.ok`` or ``report.to_frame()``;
- under pytest: subclass :class:`khadem_lab.testing.contract.DriverContract` in a test module and
  define ``make_driver`` (that module imports pytest; this one does not).

``make_driver(config, clock, registry, tmp_path)`` builds a new, empty driver each call.
"""

from __future__ import annotations

import sys

if "pytest" in sys.modules:  # under pytest: its detailed assertion messages in the checks too
    import pytest

    pytest.register_assert_rewrite("khadem_lab.testing.checks")

from .checks import CHECKS, Check, check
from .harness import DriverBuilder, DriverCase, MakeQueue, QueueHarness, QueueMaker, SkipCheck, needs_queue
from .runner import CheckResult, ContractReport, run_contract

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "ContractReport",
    "DriverBuilder",
    "DriverCase",
    "MakeQueue",
    "QueueHarness",
    "QueueMaker",
    "SkipCheck",
    "check",
    "needs_queue",
    "run_contract",
]
