"""Run the driver contract without pytest: in a notebook, a script or a REPL.

``run_contract(make_driver)`` runs every check of :data:`~khadem_lab.testing.checks.CHECKS` on
fresh drivers made by ``make_driver`` and returns a :class:`ContractReport`: one row per check (and
per case of a check with params), passed, failed (with the reason) or skipped (with the reason).
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import textwrap
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

from . import checks as checks_module
from .checks import CHECKS, Check
from .harness import DriverBuilder, DriverCase, QueueMaker, SkipCheck

if TYPE_CHECKING:
    import pandas as pd

Outcome = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """How one check (one case of it) went: ``message`` says why it failed or was skipped."""

    check: str
    case: str
    outcome: Outcome
    message: str = ""

    @property
    def name(self) -> str:
        """The check's name, with its case in brackets as pytest shows it (``name[case]``)."""
        return f"{self.check}[{self.case}]" if self.case else self.check


@dataclass(frozen=True)
class ContractReport:
    """The results of :func:`run_contract`, in the order the checks ran."""

    driver: str
    results: tuple[CheckResult, ...]

    def of(self, outcome: Outcome) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def passed(self) -> list[CheckResult]:
        return self.of("passed")

    @property
    def failed(self) -> list[CheckResult]:
        return self.of("failed")

    @property
    def skipped(self) -> list[CheckResult]:
        return self.of("skipped")

    @property
    def ok(self) -> bool:
        """True if no check failed (skipped ones do not count against the driver)."""
        return not self.failed

    def summary(self) -> str:
        """``'rows: 50 checks, 50 passed, 0 failed, 0 skipped'``."""
        return (
            f"{self.driver}: {len(self.results)} checks, {len(self.passed)} passed, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped"
        )

    def table(self, outcomes: Iterable[Outcome] = ("passed", "failed", "skipped"), width: int = 110) -> str:
        """A plain-text table, one line per check with ``outcomes`` (all by default), the reason
        under each failed or skipped one (cut to ``width`` characters a line)."""
        wanted = set(outcomes)
        lines = [self.summary()]
        for r in self.results:
            if r.outcome not in wanted:
                continue
            lines.append(f"{r.outcome:<8} {r.name}")
            for line in r.message.splitlines():
                lines.append(_cut(f"         {line}", width))
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The results as a pandas DataFrame (columns check, case, outcome, message); needs pandas
        (the ``lab`` extra)."""
        import pandas as pd

        return pd.DataFrame(
            [(r.check, r.case, r.outcome, r.message) for r in self.results],
            columns=["check", "case", "outcome", "message"],
        )

    def __str__(self) -> str:
        return self.table()


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def run_contract(
    make_driver: DriverBuilder,
    *,
    name: str | None = None,
    runs_inline: bool = False,
    only: Sequence[str] | None = None,
) -> ContractReport:
    """Run the driver contract on drivers made by ``make_driver(config, clock, registry, tmp_path)``.

    ``make_driver`` must build a new, empty driver each call, with that :class:`DriverConfig`, on
    that clock and with that job registry (``tmp_path``: a fresh empty directory it may keep files
    in). ``runs_inline``: jobs run inside dispatch (as the sync driver's): the checks about a queue
    that workers take from are skipped. ``only``: names of the checks to run (all by default).
    ``name``: the driver's name in the report (default: the name of the type ``make_driver``
    builds, found on the first check).

    Each check runs on its own simulations, closed when it ends; an exception fails the check with
    its message (for a bare ``assert``: the statement that failed), and the other checks still run.
    """
    case = DriverCase(name or "this driver", make_driver, runs_inline=runs_inline)
    chosen = [c for c in CHECKS if only is None or c.name in only]
    unknown = sorted(set(only or ()) - {c.name for c in chosen})
    if unknown:
        raise ValueError(f"no contract check is called {', '.join(map(repr, unknown))}; see CHECKS")
    results: list[CheckResult] = []
    driver_name = name
    for check in chosen:
        for case_id, kwargs in check.cases():
            with QueueMaker(case) as make_queue:
                results.append(_run_one(check, case_id, kwargs, make_queue))
                if driver_name is None and make_queue.made:
                    driver_name = type(make_queue.made[0].driver).__name__
    return ContractReport(driver_name or case.name, tuple(results))


def _run_one(check: Check, case_id: str, kwargs: Any, make_queue: QueueMaker) -> CheckResult:
    try:
        check.function(make_queue, **kwargs)
    except SkipCheck as exc:
        return CheckResult(check.name, case_id, "skipped", str(exc))
    except Exception as exc:
        return CheckResult(check.name, case_id, "failed", _reason(exc))
    return CheckResult(check.name, case_id, "passed")


def _reason(exc: BaseException) -> str:
    """What went wrong: the exception's type and message; for a bare ``assert``, the statement
    that failed in the check (with its line in ``checks.py``)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    statement = _failing_statement(exc.__traceback__)
    if isinstance(exc, AssertionError) and statement is not None:
        return statement if not str(exc) else f"{statement}\n{text}"
    return text if statement is None else f"{text}\n(at {statement.splitlines()[0]})"


def _failing_statement(tb: TracebackType | None) -> str | None:
    """The source of the innermost statement of a check that the exception went through, and its
    line number: ``checks.py:123: assert queue.reserve() is None``."""
    found: tuple[int, str] | None = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == checks_module.__file__:
            found = (lineno, frame.f_code.co_filename)
    if found is None:
        return None
    lineno, filename = found
    for node in ast.walk(_module_tree(checks_module)):
        if isinstance(node, ast.stmt) and not isinstance(node, _COMPOUND):
            end = node.end_lineno or node.lineno
            if node.lineno <= lineno <= end:
                source = "\n".join(
                    linecache.getline(filename, n).rstrip() for n in range(node.lineno, end + 1)
                )
                return f"checks.py:{node.lineno}: " + textwrap.dedent(source).strip()
    return f"checks.py:{lineno}: {linecache.getline(filename, lineno).strip()}"


_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.Match,
)


@functools.cache
def _module_tree(module: ModuleType) -> ast.Module:
    return ast.parse(inspect.getsource(module))
