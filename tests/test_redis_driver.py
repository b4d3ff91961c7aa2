"""The Redis driver's own promises: determinism under a Simulation, restart, faults, bad input, keys,
config. (The contract suite in test_driver_contract.py and the process tests in test_processes.py
cover the rest.) Each test has its own queue name, so its own key prefix; only those keys are
deleted afterwards. Tests that start their own redis-server are real-time tests, kept short."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import strategies as st
from hypothesis.stateful import rule

from khadem_lab import (
    Clock,
    ConfigError,
    DriverConfig,
    EventKind,
    EventLog,
    Exponential,
    JobRegistry,
    PermanentFailure,
    QueueJob,
    QueueManager,
    RedisStorageDriver,
    Simulation,
    SQLiteDriver,
    StorageError,
    UnregisteredJobError,
)
from khadem_lab.testing.redis_server import RedisServer

from . import conftest
from .conftest import REDIS_URL, require_redis
from .support import Invoice
from .test_property import LEASE, QUEUES, MemoryDriverMachine, ModelJob, Noop, StoredNoops, machine_settings


@dataclass
class Flaky(QueueJob):
    """Works ``work`` virtual seconds; its first ``fail_until`` attempts fail."""

    n: int
    work: float = 1.0
    fail_until: int = 0
    permanent: bool = False
    max_retries = 2
    retry_delay = Exponential(base=timedelta(seconds=5), factor=3)

    async def handle(self) -> None:
        await asyncio.sleep(self.work)
        if self.permanent:
            raise PermanentFailure(f"job {self.n} has bad data")
        if self.attempt <= self.fail_until:
            raise ConnectionError(f"job {self.n}: attempt {self.attempt} failed")


@dataclass
class Counted(QueueJob):
    """Real-time job: records each completion."""

    n: int
    done: ClassVar[list[int]] = []

    async def handle(self) -> None:
        await asyncio.sleep(0.001)
        Counted.done.append(self.n)


_names: list[str] = []  # the queue names this test made: their keys are deleted at its teardown


def redis_queue_name(label: str = "test") -> str:
    """A queue name no other test uses; its keys (``khadem:{NAME}:*``) go at teardown."""
    name = conftest.redis_queue_name(label)
    _names.append(name)
    return name


def redis_keys(queue_name: str) -> list[str]:
    """Every key of the queue (SCAN, never KEYS)."""
    with redis.Redis.from_url(REDIS_URL) as client:
        return sorted(k.decode() for k in client.scan_iter(match=f"khadem:{{{queue_name}}}:*", count=1000))


@pytest.fixture(autouse=True)
def _delete_own_keys() -> Iterator[None]:
    yield
    with redis.Redis.from_url(REDIS_URL) as client:
        while _names:
            keys = list(client.scan_iter(match=f"khadem:{{{_names.pop()}}}:*", count=1000))
            if keys:
                client.delete(*keys)


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


@pytest.fixture
def registry() -> JobRegistry:
    jobs = JobRegistry()
    jobs.register(Invoice)
    jobs.register(Flaky)
    return jobs


def make(
    sim: Simulation, registry: JobRegistry, queue_name: str, url: str = REDIS_URL, **config: Any
) -> RedisStorageDriver:
    return RedisStorageDriver(
        DriverConfig(name="redis", **config),
        url=url,
        queue_name=queue_name,
        clock=sim.clock,
        registry=registry,
    )


# ================================================================================ determinism
def run_scenario(kind: str, seed: int, tmp_path: Path) -> list[dict[str, Any]]:
    """Forty jobs of seeded random work, failures and delays on two queues, a worker with
    concurrency 2, ten virtual minutes; returns the event history."""
    rng = random.Random(seed)
    with Simulation(seed=seed) as sim:
        registry = JobRegistry()
        registry.register(Flaky)
        config = DriverConfig(name="q", poll_interval=timedelta(seconds=1))
        driver: RedisStorageDriver | SQLiteDriver
        if kind == "redis":
            driver = RedisStorageDriver(
                config, url=REDIS_URL, queue_name=redis_queue_name("det"), clock=sim.clock, registry=registry
            )
        else:
            path = Path(mkdtemp(dir=tmp_path)) / "queue.sqlite3"
            driver = SQLiteDriver(config, path=path, clock=sim.clock, registry=registry)
        qm = QueueManager(driver=driver, clock=sim.clock)
        log = EventLog()
        qm.subscribe(log)

        async def main() -> Any:
            for n in range(40):
                job = Flaky(
                    n,
                    work=round(rng.uniform(0.5, 8.0), 1),
                    fail_until=rng.choice([0, 0, 0, 1, 2, 3]),
                    permanent=rng.random() < 0.05,
                )
                delay = rng.choice([0.0, 0.0, 2.5, 10.0, 30.0])
                await qm.dispatch(job, delay=delay, queue=rng.choice(["high", "low"]))
            return await qm.start_worker(run_in_background=True, concurrency=2, queues=["high", "low"])

        worker = sim.run(main())
        sim.advance(minutes=10)
        sim.run(worker.stop())
        sim.run(driver.dispose())
        return log.rows()


def test_the_same_seeded_scenario_gives_the_same_history_row_for_row(tmp_path: Path) -> None:
    # Given a scenario with seeded randomness, retries, delays and a concurrency-2 worker
    # When it runs twice against Redis (each time on a fresh key prefix)
    first = run_scenario("redis", 11, tmp_path)
    second = run_scenario("redis", 11, tmp_path)
    # Then both histories are identical, row for row, and the scenario did exercise the queue
    assert first == second
    kinds = {row["kind"] for row in first}
    assert {"completed", "retry_scheduled", "dead_lettered"} <= kinds
    finished = {row["job_id"] for row in first if row["kind"] in ("completed", "dead_lettered")}
    assert len(finished) == 40
    # And it is the very history the SQLite driver gives (same ordering, same ids from a counter)
    assert first == run_scenario("sqlite", 11, tmp_path)


# ================================================================================ restart
def test_jobs_attempts_and_dead_letters_survive_a_new_driver(sim: Simulation, registry: JobRegistry) -> None:
    name = redis_queue_name("restart")
    first = make(sim, registry, name)
    sim.run(first.push(Invoice(1)))
    sim.run(first.push(Invoice(2), delay=timedelta(hours=1)))
    sim.run(first.push(Invoice(3, fail=True)))
    sim.run(first.push(Invoice(4, fail=True)))
    assert sim.run(first.process()) and sim.run(first.process())  # 1 done, 3 failed once: retry
    sim.advance(seconds=10)
    sim.run(first.process())  # 4 fails its first attempt
    sim.run(first.process())  # 3 fails its last attempt: dead
    sim.run(first.dispose())

    again = make(sim, registry, name)  # a new client, as in a restarted process
    stats = sim.run(again.get_stats())
    assert (stats["ready_jobs"], stats["delayed_jobs"], stats["processing_count"]) == (0, 2, 0)
    assert stats["dlq"] == {"total_jobs": 1, "jobs_by_type": {"Invoice": 1}}
    dead = sim.run(again.dead_letters.list())
    assert [(d.id, d.payload, d.attempts, d.error) for d in dead] == [
        ("3", {"number": 3, "fail": True}, 2, "RuntimeError: invoice 3 failed")
    ]
    sim.advance(seconds=10)  # job 4's retry is due: it comes back with its attempt counted
    record = sim.run(again.reserve(None, worker="w"))
    assert record is not None and record.payload == {"number": 4, "fail": True} and record.attempts == 2


def test_ids_are_unique_across_drivers_on_one_queue(sim: Simulation, registry: JobRegistry) -> None:
    name = redis_queue_name("ids")
    a, b = make(sim, registry, name), make(sim, registry, name)
    ids = [
        sim.run(a.push(Invoice(1))),
        sim.run(b.push(Invoice(2))),
        *sim.run(a.push_many([Invoice(3), Invoice(4)])),
    ]
    assert ids == ["1", "2", "3", "4"]  # from the queue's counter: unique, and the same every run
    taken = [sim.run(d.reserve(None, worker="w")) for d in (b, a, b, a, b)]
    assert [r.id if r else None for r in taken] == ["1", "2", "3", "4", None]


def test_a_settle_for_a_reservation_that_is_gone_changes_nothing(
    sim: Simulation, registry: JobRegistry
) -> None:
    driver = make(sim, registry, redis_queue_name("settle"), lease_time=timedelta(seconds=30))
    sim.run(driver.push(Invoice(1)))
    old = sim.run(driver.reserve(None, worker="slow"))
    sim.advance(seconds=30)  # the lease runs out: another worker takes the job (attempt 2)
    new = sim.run(driver.reserve(None, worker="fast"))
    assert old is not None and new is not None and (old.attempts, new.attempts) == (1, 2)
    assert sim.run(driver.ack_record(old)) is False  # the slow worker's late ack
    old.available_at = sim.time()
    assert sim.run(driver.release_record(old)) is False  # or its late retry
    assert sim.run(driver.bury_record(old)) is False  # or its late dead-lettering
    assert sim.run(driver.counts(sim.time())) == (0, 0, 1)  # still reserved by the fast worker
    assert sim.run(driver.dead_records()) == []
    assert sim.run(driver.ack_record(new)) is True
    assert sim.run(driver.size()) == 0


def test_a_batch_dispatch_is_one_round_trip(sim: Simulation, registry: JobRegistry) -> None:
    driver = make(sim, registry, redis_queue_name("batch"))
    calls: list[object] = []
    evalsha = driver.client.evalsha

    def counting(*args: Any) -> Any:
        calls.append(args[0])
        return evalsha(*args)

    driver.client.evalsha = counting  # type: ignore[method-assign]
    ids = sim.run(driver.push_many([Invoice(n) for n in range(200)]))
    assert ids == [str(n) for n in range(1, 201)] and len(calls) == 1
    assert sim.run(driver.size()) == 200


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write redis-py makes to a server (a command, a script call or a whole pipeline)."""
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def test_a_reserve_is_one_round_trip_lease_recovery_included(
    sim: Simulation, registry: JobRegistry, round_trips: list[bytes]
) -> None:
    driver = make(sim, registry, redis_queue_name("trips"), lease_time=timedelta(seconds=30))
    log = EventLog()
    driver.subscribe(log)
    sim.run(driver.push_many([Invoice(1), Invoice(2)]))
    assert sim.run(driver.reserve(None, worker="gone")).id == "1"  # type: ignore[union-attr]
    sim.advance(seconds=31)  # that worker vanished: the lease of job 1 has ended
    round_trips.clear()
    record = sim.run(driver.reserve(None, worker="w"))
    assert len(round_trips) == 1
    # job 1 came back (due now, so after job 2, which was due earlier) and job 2 was reserved
    assert record is not None and record.id == "2"
    assert [(e.kind, e.job_id) for e in log.events[-2:]] == [
        (EventKind.LEASE_EXPIRED, "1"),
        (EventKind.RESERVED, "2"),
    ]


def test_a_prefetching_worker_sends_its_acks_with_its_next_reserve(
    sim: Simulation, registry: JobRegistry, round_trips: list[bytes]
) -> None:
    driver = make(sim, registry, redis_queue_name("prefetch"))
    qm = QueueManager(driver=driver, clock=sim.clock)
    sim.run(qm.dispatch_batch([Invoice(n) for n in range(10)]))
    round_trips.clear()
    worker = sim.run(qm.start_worker(max_jobs=10, prefetch=5))
    # take 5; run them; ack those 5 and take 5 more; run them; ack the last 5 on the way out
    assert len(round_trips) == 3
    assert worker.stats.completed == 10 and sim.run(driver.size()) == 0


def test_the_slots_that_want_a_job_together_reserve_in_one_round_trip_one_job_each(
    sim: Simulation, registry: JobRegistry, round_trips: list[bytes]
) -> None:
    # Given two jobs held by two slots, and two more waiting
    driver = make(sim, registry, redis_queue_name("each"))
    log = EventLog()
    driver.subscribe(log)
    sim.run(driver.push_many([Invoice(n) for n in range(4)]))
    first = sim.run(driver.reserve(None, worker="w.1"))
    second = sim.run(driver.reserve(None, worker="w.2"))
    assert first is not None and second is not None
    round_trips.clear()
    # When three slots want a job at once, two of them with an ack to send
    taken = sim.run(driver.reserve_each(None, [("w.1", [first]), ("w.2", [second]), ("w.3", [])]))
    # Then one round trip acks both and reserves one job for each slot while jobs last, in its name
    assert len(round_trips) == 1
    assert [(r.id, r.reserved_by) if r else None for r in taken] == [("3", "w.1"), ("4", "w.2"), None]
    assert sim.run(driver.counts(sim.time())) == (0, 0, 2)  # 1 and 2 acked; nothing beyond a job a slot
    reserved = [(e.job_id, e.worker) for e in log.of_kind(EventKind.RESERVED)]
    assert reserved[-2:] == [("3", "w.1"), ("4", "w.2")]


# ================================================================================ faults
def test_redis_down_at_dispatch_is_a_storage_error_and_workers_back_off(
    sim: Simulation, registry: JobRegistry
) -> None:
    driver = RedisStorageDriver(
        DriverConfig(name="redis"), host="127.0.0.1", port=1, clock=sim.clock, registry=registry
    )
    log = EventLog()
    driver.subscribe(log)
    # When a job is dispatched while nothing listens at the address
    with pytest.raises(
        StorageError, match=r"Redis server 127\.0\.0\.1:1/0 .*cannot be used.*Start redis-server"
    ):
        sim.run(driver.push(Invoice(1)))
    # Then nothing was announced (the script never ran: all or nothing)
    assert log.events == []
    # And a worker reports each failed reserve and backs off, doubling from poll_interval (1 s)
    qm = QueueManager(driver=driver, clock=sim.clock)
    failures: list[tuple[float, str]] = []
    t0 = sim.time()
    sim.run(
        qm.start_worker(
            run_in_background=True,
            on_error=lambda error, _stack: failures.append((sim.time() - t0, type(error).__name__)),
        )
    )
    sim.advance(seconds=10)
    assert failures == [
        (0.0, "StorageError"),
        (1.0, "StorageError"),
        (3.0, "StorageError"),
        (7.0, "StorageError"),
    ]


def test_a_payload_that_is_not_json_is_dead_lettered_and_the_worker_goes_on(
    sim: Simulation, registry: JobRegistry
) -> None:
    name = redis_queue_name("badjson")
    driver = make(sim, registry, name)
    qm = QueueManager(driver=driver, clock=sim.clock)
    log = EventLog()
    qm.subscribe(log)
    sim.run(qm.dispatch_batch([Invoice(1), Invoice(2), Invoice(3)]))
    with redis.Redis.from_url(REDIS_URL) as client:
        key = f"khadem:{{{name}}}:job:"
        head, payload = client.get(key + "1").split(b"\n")  # the header line, the payload
        assert payload == b'{"number":1,"fail":false}'
        client.set(key + "1", head + b"\n{broken")  # the payload damaged
        client.set(key + "2", b"[garbled")  # the whole body damaged, header included
    sim.run(qm.start_worker(max_jobs=3))
    dead = sim.run(driver.dead_letters.list())
    assert [(d.id, d.type, d.error_type) for d in dead] == [
        ("1", "Invoice", "SerializationError"),
        ("2", "", "SerializationError"),
    ]
    assert "stored Invoice job has a payload that is not a JSON object: '{broken'" in (dead[0].error or "")
    assert "stored job (its type unreadable) has a payload that is not a JSON object: '[garbled'" in (
        dead[1].error or ""
    )
    assert [e.job_id for e in log.of_kind(EventKind.COMPLETED)] == ["3"]
    # what is kept can still be purged or requeued (to the queue the job was taken from)
    assert sim.run(driver.dead_letters.requeue("2")) is True
    assert sim.run(driver.size()) == 1


def test_an_unregistered_stored_type_is_dead_lettered_with_the_reason(
    sim: Simulation, registry: JobRegistry
) -> None:
    name = redis_queue_name("unregistered")
    sim.run(make(sim, registry, name).push_many([Invoice(1), Invoice(2)]))
    stranger = make(sim, JobRegistry(), name)  # a process that never registered Invoice
    sim.run(QueueManager(driver=stranger, clock=sim.clock).start_worker(max_jobs=2))
    dead = sim.run(stranger.dead_letters.list())
    assert [(d.id, d.error_type) for d in dead] == [
        ("1", "UnregisteredJobError"),
        ("2", "UnregisteredJobError"),
    ]
    assert "register_queue_jobs([Invoice])" in (dead[0].error or "")


def test_dispatching_an_unregistered_type_fails_before_anything_is_written(sim: Simulation) -> None:
    name = redis_queue_name("undispatched")
    driver = make(sim, JobRegistry(), name)
    with pytest.raises(UnregisteredJobError):
        sim.run(driver.push(Invoice(1)))
    assert redis_keys(name) == []


# ================================================================================ config
def test_config_selects_it_with_its_options_and_refuses_bad_ones(sim: Simulation) -> None:
    name = redis_queue_name("config")
    qm = QueueManager(
        {"queue": {"drivers": {"r": {"driver": "redis", "url": REDIS_URL, "queue_name": name}}}},
        clock=sim.clock,
    )
    qm.load_from_config()
    assert isinstance(qm.driver, RedisStorageDriver) and qm.driver.prefix == f"khadem:{{{name}}}:"
    stats = sim.run(qm.driver.get_stats())
    assert stats["key_prefix"] == f"khadem:{{{name}}}:" and stats["redis_server"] == "127.0.0.1:6379/0"
    tls = RedisStorageDriver(DriverConfig(name="tls"), url="rediss://cache.example.com:6380/2")
    assert tls.address == "cache.example.com:6380/2"  # built lazily: nothing is contacted yet
    assert tls.client.connection_pool.connection_class.__name__ == "SSLConnection"
    for options, message in [
        ({"port": "6379x"}, r"queue\.drivers\.r\.port.*'6379x'.*1 to 65535"),
        ({"url": "http://localhost"}, r"queue\.drivers\.r\.url.*redis://, rediss:// \(TLS\)"),
        ({"db": -1}, r"queue\.drivers\.r\.db.*-1.*>= 0"),
        ({"queue_name": ""}, r"queue_name"),
        (
            {"hots": "x"},
            r"queue\.drivers\.r\.hots.*options of a .redis. driver: host, port, password, db, url, "
            r"queue_name",
        ),
    ]:
        bad = QueueManager({"queue": {"drivers": {"r": {"driver": "redis", **options}}}}, clock=sim.clock)
        with pytest.raises(ConfigError, match=message):
            bad.load_from_config()


def test_without_redis_py_the_package_works_and_the_driver_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    with pytest.raises(ConfigError, match=r"redis-py to be installed: pip install 'khadem-lab\[redis\]'"):
        RedisStorageDriver(DriverConfig(name="r"))


# ================================================================================ private servers
def all_keys(server: RedisServer) -> list[str]:
    with redis.Redis.from_url(server.url) as client:
        return sorted(k.decode() for k in client.scan_iter(count=1000))


def restart(server: RedisServer, downtime: float) -> None:
    server.stop(signal.SIGKILL)
    time.sleep(downtime)  # the outage, in real time: the server is down while the worker runs on
    server.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(tmp_path, appendfsync="always")  # its data survives a kill and a restart
    server.start()
    yield server
    server.close()


@pytest.mark.realtime
def test_a_run_touches_only_keys_under_its_prefix_and_clear_and_purge_remove_them(
    sim: Simulation, registry: JobRegistry, private_redis: RedisServer
) -> None:
    driver = make(sim, registry, "shop", url=private_redis.url)
    qm = QueueManager(driver=driver, clock=sim.clock)
    sim.run(qm.dispatch_batch([Invoice(1), Invoice(2, fail=True), Invoice(3, fail=True)], queue="billing"))
    sim.run(qm.dispatch(Invoice(4), delay=timedelta(hours=1)))
    worker = sim.run(qm.start_worker(run_in_background=True))
    sim.advance(seconds=60)  # 1 done; 2 and 3 fail twice: dead; 4 still delayed
    assert [d.id for d in sim.run(driver.dead_letters.list())] == ["2", "3"]
    sim.run(driver.dead_letters.requeue("2"))
    sim.advance(seconds=11)  # 2 fails again, is retried 10 s later, fails again: dead again
    keys = all_keys(private_redis)
    assert keys and all(k.startswith("khadem:{shop}:") for k in keys), keys
    sim.run(worker.stop())
    assert sim.run(driver.clear()) == 1
    assert sim.run(driver.dead_letters.purge()) == 2
    assert all_keys(private_redis) == ["khadem:{shop}:seq"]  # only the id counter stays


@pytest.mark.realtime
def test_pipelined_scripts_are_loaded_again_after_a_script_flush(
    sim: Simulation, registry: JobRegistry, private_redis: RedisServer, round_trips: list[bytes]
) -> None:
    driver = make(sim, registry, "flush", url=private_redis.url)
    sim.run(driver.push_many([Invoice(n) for n in range(4)]))
    taken = sim.run(driver.reserve_many(None, worker="w", limit=2))
    with redis.Redis.from_url(private_redis.url) as client:
        client.script_flush()  # as a server restart does: every script is gone
    round_trips.clear()
    more = sim.run(driver.reserve_many(None, worker="w", limit=2, acks=taken))
    # refused (NOSCRIPT), the scripts loaded, the refused calls run again: each exactly once
    assert [r.id for r in more] == ["3", "4"]
    # one script (take.lua) does the acks, the lease recovery and the reserves: loaded once
    assert sum(b"SCRIPT" in sent and b"LOAD" in sent for sent in round_trips) == 1
    assert sim.run(driver.counts(sim.time())) == (0, 0, 2)  # 1 and 2 acked, 3 and 4 held


@pytest.mark.realtime
def test_a_pipeline_with_a_script_the_server_has_not_loaded_yet_loses_no_reservation(
    sim: Simulation, registry: JobRegistry, private_redis: RedisServer
) -> None:
    driver = make(sim, registry, "fresh", url=private_redis.url)
    sim.run(driver.push_many([Invoice(n) for n in range(3)]))
    first = sim.run(driver.reserve(None, worker="w"))  # loads the lease recovery and reserve scripts
    assert first is not None
    # The first ack goes with the next reserve: the server has the reserve script, not the ack's
    taken = sim.run(driver.reserve_many(None, worker="w", limit=1, acks=[first]))
    # The reserve that ran while the ack was refused is the one returned, and nothing else is held
    assert [r.id for r in taken] == ["2"]
    assert sim.run(driver.counts(sim.time())) == (1, 0, 1)  # job 3 waiting, job 2 held, job 1 acked


@pytest.mark.realtime
def test_a_redis_restart_during_a_run_loses_no_job(registry: JobRegistry, private_redis: RedisServer) -> None:
    """Real time: a worker works 300 jobs while its server is killed and restarted (its AOF brings
    the data back). Every job completes, at least once; the worker reports the outage and goes on."""
    registry.register(Counted)
    Counted.done = []
    n = 300

    async def run() -> tuple[int, list[BaseException]]:
        driver = RedisStorageDriver(
            DriverConfig(
                name="redis", poll_interval=timedelta(seconds=0.02), lease_time=timedelta(seconds=0.5)
            ),
            url=private_redis.url,
            queue_name="restart",
            registry=registry,
        )
        qm = QueueManager(driver=driver)
        await qm.dispatch_batch([Counted(i) for i in range(n)])
        errors: list[BaseException] = []
        worker = await qm.start_worker(
            run_in_background=True, concurrency=2, on_error=lambda error, _stack: errors.append(error)
        )
        while len(Counted.done) < n // 3:
            await asyncio.sleep(0.001)
        await asyncio.to_thread(restart, private_redis, 0.2)  # the worker runs on during the outage
        deadline = time.monotonic() + 30
        while (set(Counted.done) != set(range(n)) or await driver.size()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await worker.stop()
        depth = await driver.size()
        await driver.dispose()
        return depth, errors

    depth, errors = asyncio.run(run())
    assert set(Counted.done) == set(range(n)) and depth == 0  # none lost
    assert errors and all(isinstance(e, StorageError) for e in errors)  # the outage was seen
    assert len(Counted.done) - n <= 2  # a job runs again only if its ack was lost (two slots)


def test_jobs_are_taken_in_due_order_across_the_ready_list_and_the_delayed_set(
    sim: Simulation, registry: JobRegistry
) -> None:
    """Due jobs dispatched in order go to the ready list, the others to the sorted set; a reserve
    must still take them by (available_at, seq), whichever structure holds them."""
    name = redis_queue_name("order")
    driver = make(sim, registry, name)
    t0 = sim.time()
    sim.run(driver.push(Invoice(1), timedelta(seconds=1)))  # delayed: the sorted set
    sim.run(driver.push(Invoice(2), timedelta(seconds=3)))  # delayed: the sorted set
    sim.advance(seconds=2)
    sim.run(driver.push_many([Invoice(3), Invoice(4)]))  # due: the ready list
    with redis.Redis.from_url(REDIS_URL) as client:
        assert client.llen(f"khadem:{{{name}}}:ready:default") == 2
        assert client.zcard(f"khadem:{{{name}}}:queue:default") == 2
    assert sim.run(driver.next_available_at(None)) == t0 + 1
    assert tuple(sim.run(driver.counts(sim.time()))) == (3, 1, 0)
    taken = [sim.run(driver.reserve(None, worker="w")) for _ in range(2)]
    assert [r.id for r in taken if r is not None] == ["1", "3"]  # 1 came due first, then 3 and 4
    sim.advance(seconds=2)  # 2 is due now too, but later than 4
    assert sim.run(driver.reserve(["default"], worker="w")).id == "4"  # type: ignore[union-attr]
    assert sim.run(driver.reserve(None, worker="w")).id == "2"  # type: ignore[union-attr]
    assert sim.run(driver.reserve(None, worker="w")) is None


# ================================================================================ model checks
class ClockAhead:
    """The simulation's clock as seen by a machine whose clock runs ``skew`` seconds ahead."""

    def __init__(self, clock: Clock, skew: float) -> None:
        self.clock, self.skew = clock, skew

    def time(self) -> float:
        return self.clock.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(self.clock, name)


SKEW = 1.5


class RedisDriverMachine(MemoryDriverMachine):
    """The memory driver's model checks (tests/test_property.py) on Redis, with a second driver on
    the same keys (another process) that must agree after every step, and a third that dispatches
    from a clock running ahead: its due jobs sit in the ready list before they are due for the
    others, so the reserve order, the counts and the next due time must still follow the model."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_name = redis_queue_name("model")
        self.driver = self._open(self.sim.clock)
        self.log = EventLog()
        self.driver.subscribe(self.log)
        self.other = self._open(self.sim.clock)
        self.ahead = self._open(ClockAhead(self.sim.clock, SKEW))

    def _open(self, clock: Any) -> RedisStorageDriver:
        return RedisStorageDriver(
            DriverConfig(name="prop", lease_time=timedelta(seconds=LEASE)),
            url=REDIS_URL,
            queue_name=self.queue_name,
            clock=clock,
            registry=StoredNoops(),
        )

    def teardown(self) -> None:
        for driver in (self.driver, self.other, self.ahead):
            self.sim.run(driver.dispose())
        super().teardown()

    @rule(queue=st.sampled_from(QUEUES), count=st.integers(1, 3))
    def dispatch_from_a_clock_ahead(self, queue: str, count: int) -> None:
        ids = self.sim.run(self.ahead.push_many([Noop(1) for _ in range(count)], queue=queue))
        for job_id in ids:
            self.jobs[job_id] = ModelJob(job_id, queue, 1, self.now + SKEW, self._new_seq())


RedisDriverMachine.TestCase.settings = machine_settings(60)


class TestRedisDriverAgainstModel(RedisDriverMachine.TestCase):  # type: ignore[name-defined,misc]
    def setUp(self) -> None:
        require_redis()


def test_the_driver_packs_a_script_call_byte_for_byte_as_redis_py_does() -> None:
    import redis.asyncio.connection

    from khadem_lab.drivers.redisconn import pack_evalsha

    keys = ["khadem:{q}:seq", "khadem:{q}:job:é"]
    args: list[str | int] = ["1.5", 0, 12, "=worker.1", "", "x" * 70_000, '{"n":1}']
    theirs = b"".join(
        redis.asyncio.connection.Connection().pack_command("EVALSHA", "ab" * 20, 2, *keys, *args)
    )
    assert pack_evalsha("ab" * 20, keys, args) == theirs
    with pytest.raises(TypeError, match="float"):
        pack_evalsha("ab" * 20, keys, [1.5])
