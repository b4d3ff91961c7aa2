"""On the system clock the Redis driver awaits its round trips (redis-py's asyncio client), so they
overlap: many coroutines dispatching at once are in flight together while the event loop goes on
(their jobs in one call), and a worker's slots that want a job at the same moment reserve in one
call. Shown
with a proxy between the driver and Redis that holds every script reply until told: the calls in
flight are counted there, so the tests do not depend on timing or machine load."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from khadem_lab import (
    DispatchOutcomeUnknown,
    DriverConfig,
    JobRegistry,
    QueueJob,
    QueueManager,
    RedisStorageDriver,
    StorageError,
)

from .conftest import REDIS_URL, redis_queue_name

pytestmark = pytest.mark.realtime
WAIT = 30.0  # seconds: an upper bound on waiting for a condition, never a measurement


class HoldingProxy:
    """A TCP proxy to the test Redis that holds a connection's replies once it has sent a script
    call (EVALSHA), until :meth:`release`; counts the connections whose script calls are held."""

    def __init__(self) -> None:
        target = urlsplit(REDIS_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.db = target.path or "/0"
        self.released = asyncio.Event()
        self.holding = 0  # connections that sent a script call and await its reply
        self.held_calls: list[bytes] = []  # what each of those sent first with its script call
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> HoldingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self.db}"

    def release(self) -> None:
        self.released.set()

    async def held(self, count: int) -> None:
        """Wait until ``count`` connections have a script call held."""
        async with asyncio.timeout(WAIT):
            while self.holding < count:
                await asyncio.sleep(0.001)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        called = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if b"EVALSHA" in data and not called.is_set() and not self.released.is_set():
                    called.set()
                    self.holding += 1
                    self.held_calls.append(data)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if called.is_set():
                    await self.released.wait()
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError):
            writer.close()
            up_writer.close()


@dataclass
class Note(QueueJob):
    n: int
    done: ClassVar[list[int]] = []

    async def handle(self) -> None:
        Note.done.append(self.n)


def manager(url: str, name: str) -> tuple[QueueManager, RedisStorageDriver]:
    registry = JobRegistry()
    registry.register(Note)
    driver = RedisStorageDriver(DriverConfig(name="redis"), url=url, queue_name=name, registry=registry)
    return QueueManager(driver=driver), driver


def test_concurrent_dispatches_are_in_flight_together_and_each_stores_its_job() -> None:
    async def run() -> tuple[list[str], int]:
        async with HoldingProxy() as proxy:
            qm, driver = manager(proxy.url, redis_queue_name("overlap"))
            # When 20 coroutines dispatch at once
            sends = [asyncio.ensure_future(qm.dispatch(Note(n))) for n in range(20)]
            # Then all 20 are in flight together (none has had its reply), in one script call
            # that carries the 20 jobs (before issue 11's last step: 20 calls side by side)
            await proxy.held(1)
            assert not any(send.done() for send in sends)
            (call,) = proxy.held_calls
            assert call.count(b"EVALSHA") == 1 and call.count(b'"n":') == 20
            proxy.release()
            ids = await asyncio.gather(*sends)
            size = await driver.size()
            await driver.dispose()
            return ids, size

    ids, size = asyncio.run(run())
    # And each stored its own job, under its own id
    assert sorted(ids, key=int) == [str(n) for n in range(1, 21)] and size == 20


def test_a_workers_slots_reserve_together_in_one_round_trip() -> None:
    Note.done = []
    name = redis_queue_name("slots")

    async def run() -> None:
        qm, driver = manager(REDIS_URL, name)
        await qm.dispatch_batch([Note(n) for n in range(40)])
        await driver.dispose()
        async with HoldingProxy() as proxy:
            qm, driver = manager(proxy.url, name)
            # When a worker with 4 slots starts on a queue of 40 jobs
            worker = await qm.start_worker(run_in_background=True, concurrency=4, max_jobs=40)
            # Then the 4 slots' reserves are in flight together: one script call, made for all 4,
            # each reserving in its own slot's name (issue 11: one round trip for the slots that
            # want a job at the same moment; before, 4 calls in flight side by side)
            await proxy.held(1)
            assert Note.done == []
            (call,) = proxy.held_calls
            assert call.count(b"EVALSHA") == 1
            assert all(f"={worker.name}.{slot}".encode() in call for slot in range(1, 5))
            proxy.release()
            async with asyncio.timeout(WAIT):
                stats = await worker.wait()
            assert stats.completed == 40
            await driver.dispose()

    asyncio.run(run())
    # And every job ran once
    assert sorted(Note.done) == list(range(40))


def test_the_driver_works_from_one_event_loop_after_another() -> None:
    # A driver made once, used by two asyncio.run calls in turn (a script, then a test, ...):
    # each loop gets its own connections
    registry = JobRegistry()
    registry.register(Note)
    driver = RedisStorageDriver(
        DriverConfig(name="redis"), url=REDIS_URL, queue_name=redis_queue_name("loops"), registry=registry
    )
    qm = QueueManager(driver=driver)
    assert asyncio.run(qm.dispatch(Note(1))) == "1"
    assert asyncio.run(qm.dispatch(Note(2))) == "2"
    assert asyncio.run(driver.size()) == 2
    asyncio.run(driver.dispose())


@pytest.fixture
def script_sends(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write of the asyncio client that carries script calls (one per round trip)."""
    import redis.asyncio.connection

    sent: list[bytes] = []
    send = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counting(self: Any, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        if b"EVALSHA" in (data.encode() if isinstance(data, str) else data):
            sent.append(data if isinstance(data, bytes) else data.encode())
        await send(self, command, check_health)

    monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def test_a_default_worker_makes_one_round_trip_per_job_and_acks_the_last_on_its_way_out(
    script_sends: list[bytes],
) -> None:
    Note.done = []

    async def run() -> tuple[int, Any]:
        qm, driver = manager(REDIS_URL, redis_queue_name("trips"))
        await qm.dispatch_batch([Note(n) for n in range(30)])
        script_sends.clear()
        # When a worker with the defaults (one slot, no prefetch) works 30 jobs
        worker = await qm.start_worker(run_in_background=True, max_jobs=30)
        async with asyncio.timeout(WAIT):
            stats = await worker.wait()
        trips = len(script_sends)
        counts = await driver.counts(driver.clock.time())
        await driver.dispose()
        return stats.completed, (trips, counts)

    completed, (trips, counts) = asyncio.run(run())
    # Then each job cost one round trip (its ack went with the next reserve), plus one for the
    # last ack, sent before the worker ended: nothing is left reserved, nothing runs twice
    assert completed == 30 and sorted(Note.done) == list(range(30))
    assert trips == 31
    assert counts == (0, 0, 0)


def test_a_call_without_a_reply_within_socket_timeout_fails_and_the_late_reply_is_never_read() -> None:
    """The asyncio client's calls are timed by the driver (one timer a call, not redis-py's per
    read and per write): a call cut short drops its connection, so the reply that comes late is
    not taken for the next call's."""
    name = redis_queue_name("timeout")

    async def run() -> tuple[str, int]:
        async with HoldingProxy() as proxy:
            registry = JobRegistry()
            registry.register(Note)
            driver = RedisStorageDriver(
                DriverConfig(name="redis"),
                url=proxy.url,
                queue_name=name,
                registry=registry,
                socket_timeout=1.0,  # the held reply never comes; the later calls have a margin
            )
            qm = QueueManager(driver=driver)
            # When the reply to two dispatches made at once (one shared call) does not come
            # within socket_timeout, each fails, counting its own job
            sends = await asyncio.gather(qm.dispatch(Note(1)), qm.dispatch(Note(0)), return_exceptions=True)
            for error in sends:
                assert isinstance(error, DispatchOutcomeUnknown) and "Timeout" in str(error)
                assert error.count == 1 and error.job_ids is None
            # Then the next call, once replies flow, gets its own reply, not the late one
            proxy.release()
            second = await qm.dispatch(Note(2))  # ids 1 and 2 went to the jobs of the lost reply
            size = await driver.size()
            await driver.clear()
            await driver.dispose()
            return second, size

    # And the first two jobs were stored after all (their outcome was unknown, as the errors say)
    assert asyncio.run(run()) == ("3", 3)


def test_dispatches_made_at_once_share_a_call_only_within_one_queue() -> None:
    """A queue whose keys hold another type fails its own dispatches, never another queue's."""
    name = redis_queue_name("shared")

    async def run() -> tuple[list[object], list[str]]:
        qm, driver = manager(REDIS_URL, name)
        client = driver._async_client()
        await client.set(driver.prefix + "ready:other", "not ours")
        # When four coroutines dispatch at once, two to a queue whose ready list is not the driver's
        sends = await asyncio.gather(
            qm.dispatch(Note(1)),
            qm.dispatch(Note(2), queue="other"),
            qm.dispatch(Note(3)),
            qm.dispatch(Note(4), queue="other"),
            return_exceptions=True,
        )
        stored = [record.id for record in await driver.list_records("pending", 0.0)]
        await client.delete(driver.prefix + "ready:other")
        await driver.clear()
        await driver.dispose()
        return sends, stored

    sends, stored = asyncio.run(run())
    # Then the two dispatches to "default" are stored, one after the other, and the other two fail
    assert sends[0] == "1" and sends[2] == "2" and stored == ["1", "2"]
    assert all(
        isinstance(sends[i], StorageError) and "ready:other holds a string" in str(sends[i]) for i in (1, 3)
    )
