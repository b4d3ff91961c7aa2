"""Issue 10, found by bench/drills.py: on Redis, a stored payload nested too deep to decode (written
by another program or an older version, never by dispatch, which refuses it) made every read of the
job fail with RecursionError: the worker's reserve, get_stats, the dead-letter list and purge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from khadem_lab import DriverConfig, JobRegistry, RedisStorageDriver, Simulation

from .conftest import REDIS_URL, redis_queue_name
from .support import Invoice

DEEP = "[" * 980 + "0" + "]" * 980


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


def test_a_payload_too_deep_to_decode_is_dead_lettered_and_every_read_copes(sim: Simulation) -> None:
    registry = JobRegistry()
    registry.register(Invoice)
    driver = RedisStorageDriver(
        DriverConfig(name="r", max_retries=0),
        url=REDIS_URL,
        queue_name=redis_queue_name("deep"),
        clock=sim.clock,
        registry=registry,
    )
    # Given a job whose stored payload is nested 980 deep, ahead of a good one
    sim.run(driver.push(Invoice(1)))
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(f"{driver.prefix}job:deep-1", '[null,"default","Invoice","deep",0,0,0]\n' + DEEP)
        client.zadd(f"{driver.prefix}queue:default", {"00000000000000000000:deep-1": 0})
    # When a worker takes what is there
    assert sim.run(driver.process()) is True
    assert sim.run(driver.process()) is True
    # Then the deep one is dead-lettered with the reason, and every read of it works
    (dead,) = sim.run(driver.dead_letters.list())
    assert dead.id == "deep-1" and "SerializationError" in (dead.error or "")
    assert isinstance(dead.payload, str) and dead.payload.startswith("[[[")
    assert sim.run(driver.get_stats())["dlq"]["total_jobs"] == 1
    assert sim.run(driver.dead_letters.purge()) == 1
    assert sim.run(driver.size()) == 0
    sim.run(driver.dispose())
