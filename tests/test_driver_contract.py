"""The driver contract, run against every driver in ``conftest.DRIVER_CASES``.

The checks ship in the package (``khadem_lab.testing.checks``), so that a driver written elsewhere
runs the same ones: here through :class:`~khadem_lab.testing.contract.DriverContract`, with the
``contract_case`` fixture parametrized over our drivers; in a notebook through
:func:`~khadem_lab.testing.run_contract` (tested below too).
"""

from __future__ import annotations

from typing import Any

import pytest

from khadem_lab import DriverConfig, EventKind, EventLog, JobRegistry, QueueFactory, QueueManager, Simulation
from khadem_lab.clock import Clock
from khadem_lab.testing import DriverCase
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

