"""The driver contract, run against every driver in ``conftest.DRIVER_CASES``.

The checks ship in the package (``khadem_lab.testing.checks``), so that a driver written elsewhere
runs the same ones: here through :class:`~khadem_lab.testing.contract.DriverContract`, with the
``contract_case`` fixture parametrized over our drivers; in a notebook through
:func:`~khadem_lab.testing.run_contract` (tested below too).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from khadem_lab import DriverConfig, EventKind, EventLog, JobRegistry, QueueFactory, QueueManager, Simulation
from khadem_lab.clock import Clock
from khadem_lab.testing import CHECKS, DriverCase, run_contract
from khadem_lab.testing.checks import Task
from khadem_lab.testing.contract import DriverContract

from .conftest import RowDriver

K = EventKind


class TestDriverContract(DriverContract):
    """Every check of the contract on every driver of ``DRIVER_CASES``."""

    @pytest.fixture
    def contract_case(self, driver_case: DriverCase) -> DriverCase:
        return driver_case


# ============================================================================== custom drivers
def test_a_custom_driver_registered_with_queue_factory_is_selected_by_config() -> None:
    registry = JobRegistry()
    registry.register(Task)
    built: list[tuple[DriverConfig, dict[str, Any]]] = []

    def build(config: DriverConfig, options: dict[str, Any], clock: Clock) -> RowDriver:
        built.append((config, options))
        return RowDriver(config, clock=clock, registry=registry)

    QueueFactory.register_driver("database", build)
    sim = Simulation()
    qm = QueueManager(
        {
            "queue": {
                "default": "db",
                "drivers": {"db": {"driver": "database", "max_retries": 1, "table": "jobs"}},
            }
        },
        clock=sim.clock,
    )
    try:
        assert qm.load_from_config() == ["db"]
        assert isinstance(qm.driver, RowDriver) and qm.driver.name == "db"
        ((config, options),) = built
        assert (config.max_retries, options) == (1, {"table": "jobs"})
        log = EventLog()
        qm.subscribe(log)
        t0 = sim.time()
        job_id = sim.run(qm.dispatch(Task("custom", fail_until=1), delay=5))
        sim.run(qm.start_worker(run_in_background=True))
        sim.advance(30)
        assert [(e.time - t0, e.kind) for e in log.events if e.job_id == job_id][-2:] == [
            (15, K.STARTED),
            (15, K.COMPLETED),
        ]
        stats = sim.run(qm.get_stats())
        assert (stats["driver_type"], stats["metrics"]["jobs_completed"], stats["queue_depth"]) == (
            "rows",
            1,
            0,
        )
    finally:
        QueueFactory.unregister_driver("database")
        sim.run(qm.dispose())
        sim.close()


def test_the_spec_short_form_selects_a_registered_driver_instance() -> None:
    sim = Simulation()
    driver = RowDriver(DriverConfig(name="database"), clock=sim.clock)
    QueueFactory.register_driver("database", driver)  # an instance, as in the spec
    try:
        qm = QueueManager({"queue": {"driver": "database"}}, clock=sim.clock)
        qm.load_from_config()
        assert qm.driver is driver and qm.default_driver_name == "database"
    finally:
        QueueFactory.unregister_driver("database")
        sim.close()


# ============================================================================== the suite without pytest
def test_run_contract_runs_every_check_on_a_driver_and_reports_each() -> None:
    report = run_contract(
        lambda config, clock, registry, _: RowDriver(config, clock=clock, registry=registry)
    )
    expected = [f"{c.name}[{i}]" if i else c.name for c in CHECKS for i, _ in c.cases()]
    assert [r.name for r in report.results] == expected and len(expected) == 59
    assert report.ok and report.driver == "RowDriver"
    assert [(r.check, r.message) for r in report.skipped] == [
        (
            "inline_driver_runs_jobs_inside_dispatch_and_gives_workers_nothing",
            "this driver queues jobs for workers; this is the inline drivers' behaviour",
        ),
        *[
            (
                check,
                "driver 'contract' (RowDriver) does not implement list_records, so it cannot list, show "
                "or cancel single jobs; implement it (see BaseQueueDriver) or use another driver",
            )
            for check in (
                "list_records_gives_waiting_and_reserved_jobs_in_the_order_workers_take_them",
                "get_record_finds_any_job_and_cancel_record_removes_only_waiting_ones",
            )
        ],
    ]
    assert report.summary() == "RowDriver: 59 checks, 56 passed, 0 failed, 3 skipped"


class ReservesEarly(RowDriver):
    """A broken driver: its reserve ignores ``available_at`` (a delayed job is taken at once)."""

    async def reserve_record(self, queues: Any, now: float, worker: str | None) -> Any:
        return await super().reserve_record(queues, float("inf"), worker)


def test_run_contract_reports_the_failing_statement_and_runs_the_other_checks() -> None:
    report = run_contract(
        lambda config, clock, registry, _: ReservesEarly(config, clock=clock, registry=registry),
        name="early",
        only=["delayed_job_becomes_ready_exactly_at_its_time", "ack_removes_the_job_for_good"],
    )
    assert [(r.check, r.outcome) for r in report.results] == [
        ("delayed_job_becomes_ready_exactly_at_its_time", "failed"),
        ("ack_removes_the_job_for_good", "passed"),
    ]
    (failed,) = report.failed
    assert failed.message.startswith("checks.py:") and "assert queue.reserve() is None" in failed.message
    assert report.table(["failed"]).splitlines()[0] == "early: 2 checks, 1 passed, 1 failed, 0 skipped"
    with pytest.raises(ValueError, match="no contract check is called 'nope'"):
        run_contract(lambda config, clock, registry, _: RowDriver(config), only=["nope"])


def test_the_package_and_its_run_contract_do_not_import_pytest() -> None:
    code = "import sys, khadem_lab, khadem_lab.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
