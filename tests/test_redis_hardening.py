"""Issue 10, the Redis part: what a Redis queue does with data it did not write, scripts that must
not half-apply, keys that must not collide, and error messages that fit the cause and keep
passwords out. Each test first reproduced its fault against a real Redis (the shared server, on the
test's own key prefix, or a private redis-server for anything destructive)."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from khadem_lab import (
    ConfigError,
    DriverConfig,
    EventKind,
    EventLog,
    JobRegistry,
    QueueManager,
    RedisStorageDriver,
    Simulation,
    StorageError,
)

from .conftest import REDIS_URL, redis_queue_name
from .support import Invoice

_prefixes: list[str] = []  # the key prefixes this test used: their keys are deleted at teardown


@pytest.fixture(autouse=True)
def _delete_own_keys() -> Iterator[None]:
    yield
    with redis.Redis.from_url(REDIS_URL) as client:
        while _prefixes:
            keys = list(client.scan_iter(match=_glob(_prefixes.pop()) + "*", count=1000))
            if keys:
                client.delete(*keys)


def _glob(text: str) -> str:
    """``text`` as a literal in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


@pytest.fixture
def registry() -> JobRegistry:
    jobs = JobRegistry()
    jobs.register(Invoice)
    return jobs


def make(
    sim: Simulation, registry: JobRegistry, name: str, url: str = REDIS_URL, **config: Any
) -> RedisStorageDriver:
    driver = RedisStorageDriver(
        DriverConfig(name="redis", **config), url=url, queue_name=name, clock=sim.clock, registry=registry
    )
    _prefixes.append(driver.prefix)
    return driver


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with redis.Redis.from_url(REDIS_URL) as c:
        yield c


def keys_of(client: redis.Redis, driver: RedisStorageDriver) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=_glob(driver.prefix) + "*", count=1000))


# ================================================================================ foreign entries
def test_a_foreign_entry_at_the_head_of_a_ready_list_is_skipped_and_reported(
    sim: Simulation, registry: JobRegistry, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: 0 of 200 jobs ran, every reserve failing with a Lua arithmetic error (and the advice
    to start redis-server)."""
    driver = make(sim, registry, redis_queue_name("foreign"))
    qm = QueueManager(driver=driver, clock=sim.clock)
    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch_batch([Invoice(n) for n in range(200)]))
    client.lpush(driver.prefix + "ready:default", "garbage")
    errors: list[BaseException] = []
    with caplog.at_level(logging.WARNING, logger="khadem_lab.drivers.redis"):
        sim.run(qm.start_worker(run_in_background=True, on_error=lambda e, _s: errors.append(e)))
        sim.advance(minutes=2)
    assert errors == []
    assert len(log.of_kind(EventKind.COMPLETED)) == 200
    stats = sim.run(driver.get_stats())
    assert stats["foreign_entries"] == 1 and stats["queue_depth"] == 0
    assert any("garbage" in r.getMessage() and "ready:default" in r.getMessage() for r in caplog.records)
    # what was skipped is kept aside to inspect, not lost
    assert [b"garbage" in e for e in client.lrange(driver.prefix + "foreign", 0, -1)] == [True]


def test_foreign_members_of_the_waiting_sets_are_skipped_and_reported(
    sim: Simulation, registry: JobRegistry, client: redis.Redis
) -> None:
    driver = make(sim, registry, redis_queue_name("foreignz"))
    sim.run(driver.push(Invoice(1), delay=timedelta(seconds=5)))  # the sorted set
    client.zadd(driver.prefix + "queue:default", {"not-a-member": 0})
    client.zadd(driver.prefix + "reserved", {"also not ours": 0})
    client.rpush(driver.prefix + "ready:default", "1|2", "x|00000000000000000009:9")
    sim.advance(seconds=5)
    record = sim.run(driver.reserve(None, worker="w"))
    assert record is not None and record.id == "1"
    assert sim.run(driver.reserve(None, worker="w")) is None
    assert sim.run(driver.get_stats())["foreign_entries"] == 4
    assert sim.run(driver.next_available_at(None)) is None


def test_a_foreign_queue_name_with_a_string_at_its_keys_is_skipped_and_reported(
    sim: Simulation, registry: JobRegistry, client: redis.Redis
) -> None:
    """Was: WRONGTYPE on every reserve and on get_stats."""
    driver = make(sim, registry, redis_queue_name("foreignq"))
    sim.run(driver.push_many([Invoice(1), Invoice(2)]))
    client.sadd(driver.prefix + "queues", "other")
    client.set(driver.prefix + "ready:other", "x")
    stats = sim.run(driver.get_stats())
    assert stats["ready_jobs"] == 2
    assert [r.id for r in sim.run(driver.reserve_many(None, worker="w", limit=3))] == ["1", "2"]
    assert sim.run(driver.get_stats())["foreign_entries"] == 1
    assert sim.run(driver.next_available_at(["other", "default"])) is None
    assert sim.run(driver.reserve(["other"], worker="w")) is None
    # a dispatch to that queue cannot be stored: it says which key is in the way, and writes nothing
    with pytest.raises(StorageError, match=r"ready:other holds a string, not a list") as caught:
        sim.run(driver.push(Invoice(3), queue="other"))
    assert "Start redis-server" not in str(caught.value)
    assert client.get(driver.prefix + "seq") == b"2" and sim.run(driver.size()) == 2
    assert client.get(driver.prefix + "ready:other") == b"x"  # not ours: left as it was


def test_a_header_field_that_cannot_be_read_is_dead_lettered_and_every_read_copes(
    sim: Simulation, registry: JobRegistry, client: redis.Redis
) -> None:
    """Was: a raw ValueError on reserve; once dead-lettered, get_stats, dead_letters.list and
    purge failed every time."""
    driver = make(sim, registry, redis_queue_name("header"))
    qm = QueueManager(driver=driver, clock=sim.clock)
    sim.run(qm.dispatch_batch([Invoice(1), Invoice(2), Invoice(3)]))
    body = client.get(driver.prefix + "job:1")
    head, payload = body.split(b"\n")
    fields = head.split(b",")
    fields[4] = b'"x"'  # max_retries
    client.set(driver.prefix + "job:1", b",".join(fields) + b"\n" + payload)
    client.hset(driver.prefix + "state:3", mapping={"attempts": "many", "seq": "?", "available_at": "soon"})
    errors: list[BaseException] = []
    sim.run(qm.start_worker(run_in_background=True, on_error=lambda e, _s: errors.append(e)))
    sim.advance(minutes=1)
    assert [type(e).__name__ for e in errors] == ["SerializationError"]  # reported, and dead-lettered
    dead = sim.run(driver.dead_letters.list())
    assert [(d.id, d.error_type) for d in dead] == [("1", "SerializationError"), ("3", "StorageError")]
    assert 'state:3 has attempts "many"' in (dead[1].error or "")
    assert "max_retries" in (dead[0].error or "") or '"x"' in (dead[0].error or "")
    stats = sim.run(driver.get_stats())
    assert stats["dlq"]["total_jobs"] == 2 and stats["queue_depth"] == 0
    assert sim.run(driver.dead_letters.get("1")) is not None
    assert sim.run(driver.dead_letters.requeue("1")) is True
    sim.advance(seconds=1)
    assert sim.run(driver.dead_letters.purge()) == 2  # job 1 failed again: its header is still bad
    assert sim.run(driver.get_stats())["dlq"]["total_jobs"] == 0


# ================================================================================ no half-applied script
def test_a_foreign_state_value_does_not_strand_its_job(
    sim: Simulation, registry: JobRegistry, client: redis.Redis
) -> None:
    """Was: the reserve popped job 2 off the ready list, then failed with WRONGTYPE: job 2 was
    stored, not listed and not dead, and the error came back on the next reserve too."""
    driver = make(sim, registry, redis_queue_name("state"))
    qm = QueueManager(driver=driver, clock=sim.clock)
    sim.run(qm.dispatch_batch([Invoice(1), Invoice(2), Invoice(3)]))
    client.set(driver.prefix + "state:2", "x")
    errors: list[BaseException] = []
    sim.run(qm.start_worker(run_in_background=True, on_error=lambda e, _s: errors.append(e)))
    sim.advance(minutes=1)
    assert errors == []
    dead = sim.run(driver.dead_letters.list())
    assert [(d.id, d.type, d.error_type) for d in dead] == [("2", "Invoice", "StorageError")]
    assert "state:2" in (dead[0].error or "") and "string" in (dead[0].error or "")
    assert sim.run(driver.dead_letters.requeue("2")) is True  # and it runs, once requeued
    sim.advance(seconds=1)
    assert sim.run(driver.size()) == 0 and sim.run(driver.dead_letters.count()) == 0


@pytest.mark.parametrize("key", ["reserved", "queues", "dead", "seq"])
def test_a_foreign_value_at_a_fixed_key_fails_the_script_before_it_changes_anything(
    sim: Simulation, registry: JobRegistry, client: redis.Redis, key: str
) -> None:
    driver = make(sim, registry, redis_queue_name("fixed"))
    sim.run(driver.push_many([Invoice(1), Invoice(2)]))
    taken = sim.run(driver.reserve(None, worker="w"))
    assert taken is not None
    before = {k: client.dump(k) for k in keys_of(client, driver)}
    client.delete(driver.prefix + key)
    client.rpush(driver.prefix + key, "not", "ours")  # a list where the driver keeps something else
    before[driver.prefix + key] = client.dump(driver.prefix + key)
    taken.available_at = sim.time()
    calls = [
        lambda: driver.reserve(None, worker="w"),
        lambda: driver.reserve(["default"], worker="w"),
        lambda: driver.release_record(taken),
        lambda: driver.bury_record(taken),
        lambda: driver.push(Invoice(3)),
        lambda: driver.reclaim_expired(sim.time() + 3600),
        lambda: driver.dead_letters.requeue_all(),
    ]
    failed = 0
    for call in calls:
        try:
            sim.run(call())
        except StorageError as error:
            failed += 1
            assert f"{driver.prefix}{key} holds a list" in str(error)
            assert "Start redis-server" not in str(error)
        assert {k: client.dump(k) for k in keys_of(client, driver)} == before  # nothing half-applied
    assert failed == len(calls)


# ================================================================================ keys
@pytest.mark.parametrize(
    ("first", "second", "queue"),
    [
        ("", ":ready", "seq"),  # queue `col:ready` owned the key of queue `col`'s job queue `seq`
        ("", ":queue", "reserved"),  # `col2:queue` swallowed a delayed job of `col2`
        ("", ":queue", "x:seq"),
        ("{a}", "{b}", "default"),
        ("%3A", ":", "%7B"),
    ],
)
def test_queue_names_never_share_a_key(
    sim: Simulation, registry: JobRegistry, client: redis.Redis, first: str, second: str, queue: str
) -> None:
    base = redis_queue_name("col")
    one = make(sim, registry, base + first)
    two = make(sim, registry, base + second)
    sim.run(one.push(Invoice(1), delay=timedelta(seconds=5), queue=queue))
    sim.run(one.push(Invoice(2), queue=queue))
    sim.run(one.push(Invoice(3), queue=queue + ":ready"))
    sim.run(two.push_many([Invoice(4), Invoice(5)], queue=queue))
    assert sim.run(two.reclaim_expired(sim.time() + 3600)) == []
    assert sim.run(two.reserve(None, worker="w")) is not None
    keys_one, keys_two = set(keys_of(client, one)), set(keys_of(client, two))
    assert keys_one and keys_two and not keys_one & keys_two
    for keys in (keys_one, keys_two):  # one Redis Cluster slot per queue
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    sim.advance(seconds=5)
    assert [r.payload["number"] for r in sim.run(one.reserve_many(None, worker="w", limit=5))] == [2, 3, 1]  # type: ignore[index]
    assert sim.run(two.size()) == 2


def test_the_key_prefix_encodes_the_queue_name_in_a_hash_tag(sim: Simulation, registry: JobRegistry) -> None:
    base = redis_queue_name("tag")
    assert make(sim, registry, base).prefix == "khadem:{" + base + "}:"
    assert make(sim, registry, base + ":{x}%").prefix == "khadem:{" + base + "%3A%7Bx%7D%25}:"


# ================================================================================ error messages
@pytest.mark.parametrize(
    "options",
    [
        {"url": "redis://:secret-pw@127.0.0.1:1/0"},
        {"url": "redis://alice:secret-pw@127.0.0.1:1/0"},
        {"host": "127.0.0.1", "port": 1, "password": "secret-pw"},
    ],
)
def test_a_password_never_appears_in_an_error(
    sim: Simulation, registry: JobRegistry, options: dict[str, Any]
) -> None:
    driver = RedisStorageDriver(DriverConfig(name="r"), clock=sim.clock, registry=registry, **options)
    with pytest.raises(StorageError) as caught:
        sim.run(driver.push(Invoice(1)))
    text = str(caught.value)
    assert "127.0.0.1:1" in text and "Start redis-server" in text
    assert "secret-pw" not in text and "secret-pw" not in repr(driver)


@pytest.mark.parametrize(
    "options",
    [
        {"url": "http://:secret-pw@127.0.0.1:1/0"},
        {"url": "redis://:secret-pw@127.0.0.1:notaport/0"},
        {"password": 12345},
    ],
)
def test_a_bad_option_is_reported_without_the_password(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStorageDriver(DriverConfig(name="r"), **options)
    assert "secret-pw" not in str(caught.value) and "12345" not in str(caught.value)


def test_a_data_error_names_the_key_and_does_not_say_start_redis_server(
    sim: Simulation, registry: JobRegistry, client: redis.Redis
) -> None:
    driver = make(sim, registry, redis_queue_name("dataerr"))
    client.set(driver.prefix + "seq", "not a number")
    with pytest.raises(StorageError) as caught:
        sim.run(driver.push(Invoice(1)))
    text = str(caught.value)
    assert f"{driver.prefix}seq" in text and "127.0.0.1:6379/0" in text
    assert "Start redis-server" not in text and "delete" in text


@pytest.mark.realtime
def test_a_server_loading_its_data_says_so_not_start_redis_server(
    tmp_path: Path, registry: JobRegistry
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"

    def start(*extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(tmp_path), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    server = start()
    try:
        with redis.Redis.from_url(url) as c:
            deadline = time.monotonic() + 10
            while True:
                try:
                    c.ping()
                    break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            c.mset({f"k{i}": "v" for i in range(3000)})
            c.save()  # an RDB file, loaded key by key at the next start
        server.terminate()
        server.wait()
        server = start("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")  # 3 s
        driver = RedisStorageDriver(DriverConfig(name="r"), url=url, queue_name="loading", registry=registry)
        deadline = time.monotonic() + 5
        while True:
            try:
                driver.client.ping()
            except redis.BusyLoadingError:
                break
            except redis.ConnectionError:
                pass
            else:
                pytest.fail("the server was up before it could be seen loading")
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(StorageError) as caught:
            sim_push(driver)
        text = str(caught.value)
        assert "loading" in text and f"127.0.0.1:{port}/0" in text
        assert "Start redis-server" not in text
    finally:
        server.kill()
        server.wait()


def sim_push(driver: RedisStorageDriver) -> None:
    with Simulation() as sim:
        driver.bind_clock(sim.clock)
        sim.run(driver.push(Invoice(1)))
