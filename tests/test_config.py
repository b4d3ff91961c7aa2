"""Configuration and the manager's driver registry: the spec's layout, and errors that say what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import (
    ConfigError,
    DriverConfig,
    InMemoryDriver,
    KhademLabError,
    QueueFactory,
    QueueManager,
    Simulation,
    SynchronousDriver,
    UnknownDriverError,
)

SPEC_CONFIG: dict[str, Any] = {
    "queue": {
        "default": "memory",
        "drivers": {
            "memory": {"driver": "memory", "track_metrics": True, "use_dlq": True, "max_retries": 3},
            "sync": {"driver": "sync"},
            "quick": {"driver": "memory", "max_retries": 1, "timeout": 30, "track_metrics": False},
        },
    }
}


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


def test_load_from_config_registers_every_driver(sim: Simulation) -> None:
    qm = QueueManager(SPEC_CONFIG, clock=sim.clock)
    assert qm.load_from_config() == ["memory", "sync", "quick"]
    assert qm.driver_names == ["memory", "sync", "quick"]
    assert qm.has_driver("sync") and not qm.has_driver("redis")
    assert qm.default_driver_name == "memory"
    assert isinstance(qm.driver, InMemoryDriver)
    assert isinstance(qm.get_driver("sync"), SynchronousDriver)
    quick = qm.get_driver("quick")
    assert quick.config == DriverConfig(
        name="quick", max_retries=1, default_job_timeout=timedelta(seconds=30), track_metrics=False
    )
    assert quick.metrics is None
    qm.set_default_driver("sync")
    assert qm.driver is qm.get_driver("sync")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_files_in_json_and_yaml(tmp_path: Path, suffix: str, sim: Simulation) -> None:
    path = tmp_path / f"queue{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(SPEC_CONFIG))
    else:
        path.write_text(
            "queue:\n  default: sync\n  drivers:\n"
            "    memory: {driver: memory}\n    sync:\n      driver: sync\n"
        )
    qm = QueueManager(path, clock=sim.clock)
    qm.load_from_config()
    assert "sync" in qm.driver_names and "memory" in qm.driver_names


def test_the_spec_short_form_selects_one_driver(sim: Simulation) -> None:
    qm = QueueManager({"queue": {"driver": "sync"}}, clock=sim.clock)
    qm.load_from_config()
    assert qm.default_driver_name == "sync"
    assert isinstance(qm.driver, SynchronousDriver)


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        (
            {"queue": {"drivers": {"m": {"driver": "memory", "max_retries": -1}}}},
            "queue.drivers.m.max_retries",
            ">= 0",
        ),
        (
            {"queue": {"drivers": {"m": {"track_metrics": "yes"}}}},
            "queue.drivers.m.track_metrics",
            "true or false",
        ),
        ({"queue": {"drivers": {"m": {"timeout": 0}}}}, "queue.drivers.m.timeout", "positive"),
        ({"queue": {"default": "redis", "drivers": {"m": {}}}}, "queue.default", "'m'"),
        ({"queue": {"defualt": "m"}}, "queue.defualt", "'default'"),
        ({"queue": {"drivers": ["memory"]}}, "queue.drivers", "mapping"),
    ],
)
def test_invalid_config_names_the_key_the_value_and_what_is_allowed(
    config: dict[str, Any], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        QueueManager(config)
    message = str(info.value)
    assert key in message and expected in message
    assert info.value.key == key
    assert isinstance(info.value, KhademLabError)


def test_unknown_option_for_a_driver_type_is_refused(sim: Simulation) -> None:
    qm = QueueManager(
        {"queue": {"drivers": {"memory": {"driver": "memory", "pathh": "/tmp"}}}}, clock=sim.clock
    )
    with pytest.raises(ConfigError, match=r"queue\.drivers\.memory\.pathh"):
        qm.load_from_config()


def test_unknown_driver_type_lists_the_known_ones(sim: Simulation) -> None:
    qm = QueueManager({"queue": {"drivers": {"db": {"driver": "database"}}}}, clock=sim.clock)
    with pytest.raises(UnknownDriverError, match=r"'memory'.*'sync'"):
        qm.load_from_config()


def test_unknown_driver_name_lists_the_registered_ones(sim: Simulation) -> None:
    qm = QueueManager(SPEC_CONFIG, clock=sim.clock)
    qm.load_from_config()
    with pytest.raises(UnknownDriverError) as info:
        qm.get_driver("redis")
    assert "'redis'" in str(info.value) and "'memory', 'quick', 'sync'" in str(info.value)
    with pytest.raises(UnknownDriverError):
        qm.set_default_driver("nope")


def test_unreadable_or_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable"):
        QueueManager(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="valid JSON"):
        QueueManager(bad)
    odd = tmp_path / "queue.toml"
    odd.write_text("")
    with pytest.raises(ConfigError, match=r"\.json, \.yaml or \.yml"):
        QueueManager(odd)


def test_driver_config_validates_itself() -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        DriverConfig(name="x", max_retries=-2)
    with pytest.raises(ConfigError, match="lease_time"):
        DriverConfig(name="x", lease_time=timedelta(0))


def test_a_user_driver_registered_with_the_factory_is_selected_by_config(sim: Simulation) -> None:
    class AuditedDriver(InMemoryDriver):
        driver_type = "audited"

    built: list[dict[str, Any]] = []

    def factory(config: DriverConfig, options: dict[str, Any], clock: Any) -> AuditedDriver:
        built.append(options)
        return AuditedDriver(config, clock=clock)

    QueueFactory.register_driver("audited", factory)
    try:
        qm = QueueManager({"queue": {"driver": "audited"}}, clock=sim.clock)
        qm.load_from_config()
        assert isinstance(qm.driver, AuditedDriver) and built == [{}]
    finally:
        QueueFactory.unregister_driver("audited")


def test_a_manager_without_drivers_uses_an_in_memory_one(sim: Simulation) -> None:
    qm = QueueManager(clock=sim.clock)
    assert isinstance(qm.driver, InMemoryDriver)
    assert qm.default_driver_name == "memory"


def test_a_driver_on_another_clock_is_refused(sim: Simulation) -> None:
    with Simulation() as other:
        driver = InMemoryDriver(DriverConfig(name="d"), clock=other.clock)
        with pytest.raises(KhademLabError, match="already runs on"):
            QueueManager(driver=driver, clock=sim.clock)


def test_an_empty_queue_name_is_refused_at_dispatch_and_nothing_is_stored() -> None:
    # before: queue="" silently went to the job's own queue (and a job class with queue = ""
    # to a queue no worker on queues=[...] ever looks at)
    from khadem_lab import KhademLabError, QueueJob, QueueManager, Simulation

    class Report(QueueJob):
        async def handle(self) -> None:
            return None

    class Nowhere(Report):
        queue = ""

    with Simulation() as sim:
        qm = QueueManager(clock=sim.clock)
        with pytest.raises(KhademLabError, match=r"the queue must be a non-empty string, got ''"):
            sim.run(qm.dispatch(Report(), queue=""))
        with pytest.raises(KhademLabError, match=r"dispatch of Nowhere: the queue must be"):
            sim.run(qm.dispatch(Nowhere()))
        assert sim.run(qm.driver.size()) == 0
        sim.run(qm.dispatch(Report(), queue="reports"))
        assert sim.run(qm.driver.size()) == 1
