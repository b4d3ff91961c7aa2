"""A dispatch whose reply was lost is not a failed dispatch (issue 10).

Reproduced with real parts: a private redis-server (ports 7200-7299) killed with SIGTERM and
SIGKILL during a large ``dispatch_batch``; a real TCP connection that the server's reply never
comes back on (a relay that forwards the command, lets the server run it, and closes the
connection instead of passing the reply on); real SQLite and file stores written by a process
that is SIGKILLed while it dispatches. In every case the caller learns what to do, and a retry
with the same ``job_id``\\s stores every job exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from khadem_lab import DispatchOutcomeUnknown, JobIdConflict, QueueJob, QueueManager, StorageError, queue_job
from khadem_lab.drivers.file import FileStorageDriver
from khadem_lab.drivers.redis import RedisStorageDriver
from khadem_lab.drivers.sqlite import SQLiteDriver
from khadem_lab.testing.redis_server import RedisServer, free_port

from .worker_process import Numbered

pytestmark = pytest.mark.realtime
PORTS = range(7200, 7300)  # this suite's private redis-server ports


@queue_job
@dataclass
class Order(QueueJob):
    """An order to take; it always succeeds."""

    n: int

    async def handle(self) -> None:
        return None


# ============================================================================== real servers
@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (appendonly, fsync every second, in ``tmp_path``)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    if free_port(PORTS) is None:
        pytest.skip("no free port in 7200-7299 for a private redis-server")
    private = RedisServer(tmp_path, ports=PORTS)
    private.start()
    try:
        yield private
    finally:
        private.close()


class ReplyDropper:
    """A TCP relay to a Redis server that, once ``armed``, passes the client's commands on and
    closes the client's connection when the server answers, without passing the answer on: the
    command ran, its reply was lost."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.armed = False
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if replies and self.armed:
                    self.dropped += 1
                    break
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def manager(url: str, name: str) -> QueueManager:
    qm = QueueManager(
        {"queue": {"default": "r", "drivers": {"r": {"driver": "redis", "url": url, "queue_name": name}}}}
    )
    qm.load_from_config()
    return qm


async def stored_ids(qm: QueueManager) -> list[str]:
    """Every job id the queue holds, by taking them all (a worker's reserve)."""
    ids = []
    while (record := await qm.driver.reserve(None, worker="count")) is not None:
        ids.append(record.id)
    return ids


def redis_holds_each_once(qm: QueueManager, ids: list[str], size: int) -> None:
    """Each of ``ids`` is stored (its ``job:ID`` key exists) and the queue lists ``size`` jobs in
    all: no id is listed twice (a second copy would be a second member of the waiting set)."""
    driver = qm.driver
    assert isinstance(driver, RedisStorageDriver)
    pipe = driver.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(f"{driver.prefix}job:{job_id}")
    assert sum(pipe.execute()) == len(ids)
    assert asyncio.run(driver.size()) == size


# ============================================================================== lost replies
def test_a_lost_reply_is_outcome_unknown_and_the_retry_with_the_same_ids_stores_nothing_twice(
    server: RedisServer,
) -> None:
    relay = ReplyDropper(server.port)
    jobs = [Numbered(n) for n in range(2000)]
    ids = [f"order-{n}" for n in range(2000)]

    async def run() -> None:
        qm = manager(relay.url, "lost")
        direct = manager(server.url, "lost")
        try:
            await qm.dispatch(Numbered(-1), job_id="warm-up")  # the scripts are loaded, the reply comes
            # Given a connection whose next reply is lost after the server ran the command
            relay.armed = True
            # When a batch is dispatched through it
            with pytest.raises(DispatchOutcomeUnknown) as caught:
                await qm.dispatch_batch(jobs, job_ids=ids)
            # Then the caller is told the outcome is unknown, which ids to check, that a retry is
            # safe, and not that nothing was written
            text = str(caught.value)
            assert "'order-0'" in text and "2000 in all" in text and "is safe" in text
            assert "half-written" not in text and caught.value.job_ids == ids
            assert relay.dropped == 1
            # The jobs were stored (the server ran the command)...
            assert await direct.driver.size() == 2001
            # ... and the retry, on a working connection, stores none of them again
            assert await direct.dispatch_batch(jobs, job_ids=ids) == ids
            assert await direct.driver.size() == 2001
            taken = await stored_ids(direct)
            assert sorted(taken) == sorted(["warm-up", *ids])
        finally:
            relay.armed = False
            await direct.dispose()
            with contextlib.suppress(Exception):
                await qm.dispose()

    try:
        asyncio.run(run())
    finally:
        relay.close()


def test_a_lost_reply_without_job_ids_says_a_retry_may_store_the_jobs_twice(server: RedisServer) -> None:
    relay = ReplyDropper(server.port)

    async def run() -> None:
        qm = manager(relay.url, "lost-auto")
        try:
            await qm.dispatch(Numbered(-1))
            relay.armed = True
            with pytest.raises(DispatchOutcomeUnknown) as caught:
                await qm.dispatch_batch([Numbered(1), Numbered(2)])
            text = str(caught.value)
            assert caught.value.job_ids is None and "2 job(s)" in text
            assert "may store them twice" in text and "job_id" in text
        finally:
            relay.armed = False
            with contextlib.suppress(Exception):
                await qm.dispose()

    try:
        asyncio.run(run())
    finally:
        relay.close()


def test_a_server_that_cannot_be_reached_is_not_outcome_unknown(tmp_path: Path) -> None:
    """Nothing was sent: the plain StorageError (start the server), not "outcome unknown"."""
    port = free_port()

    async def run() -> None:
        qm = manager(f"redis://127.0.0.1:{port}/0", "down")
        with pytest.raises(StorageError) as caught:
            await qm.dispatch(Numbered(1), job_id="order-1")
        assert not isinstance(caught.value, DispatchOutcomeUnknown)
        assert "Start redis-server" in str(caught.value)

    asyncio.run(run())


# ============================================================================== killed server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_server_killed_during_a_large_dispatch_batch_then_retried_stores_each_job_once(
    server: RedisServer, sig: int
) -> None:
    """Whenever the kill lands (before, during or after the script), the caller gets an answer it
    can act on, and retrying with the same ids until it works stores every job exactly once."""
    count = 20_000
    jobs = [Numbered(n) for n in range(count)]
    ids = [f"item-{n}" for n in range(count)]
    outcome: list[BaseException | None] = []

    async def dispatch_once() -> None:
        qm = manager(server.url, "killed")
        try:
            await qm.dispatch_batch(jobs, job_ids=ids)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            with contextlib.suppress(Exception):
                await qm.dispose()

    thread = threading.Thread(target=asyncio.run, args=(dispatch_once(),))
    thread.start()
    time.sleep(0.3)  # the batch is being sent or run (any moment will do: see the docstring)
    server.stop(sig)
    thread.join(60)
    assert not thread.is_alive()
    (error,) = outcome
    if error is not None:  # (None: the batch got through before the kill)
        assert isinstance(error, StorageError | DispatchOutcomeUnknown), repr(error)
        if isinstance(error, DispatchOutcomeUnknown):
            assert error.job_ids == ids and "is safe" in str(error)
    server.start()  # the AOF brings back what the server had written (all of a script or none)

    async def retry() -> None:
        qm = manager(server.url, "killed")
        try:
            assert await qm.dispatch_batch(jobs, job_ids=ids) == ids
        finally:
            await qm.dispose()

    asyncio.run(retry())
    qm = manager(server.url, "killed")
    redis_holds_each_once(qm, ids, count)
    asyncio.run(qm.dispose())


# ============================================================================== SQLite and file
DISPATCHER = """
import asyncio, sys
from khadem_lab import QueueManager
from tests.worker_process import Numbered

async def main():
    qm = QueueManager({"queue": {"default": "q", "drivers": {"q": %r}}})
    qm.load_from_config()
    for batch in range(200):
        jobs = [Numbered(batch * 50 + n) for n in range(50)]
        await qm.dispatch_batch(jobs, job_ids=[f"b{batch}-{n}" for n in range(50)])
        print(batch, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_a_dispatcher_killed_mid_batch_then_rerun_stores_each_job_once(tmp_path: Path, kind: str) -> None:
    entry: dict[str, Any] = {
        "driver": kind,
        "path": str(tmp_path / ("q.sqlite3" if kind == "sqlite" else "q")),
    }
    # Given a process that dispatches 200 batches of 50 jobs with ids, killed with SIGKILL midway
    process = subprocess.Popen(
        [sys.executable, "-c", DISPATCHER % entry],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert process.stdout is not None
    for _ in range(5):  # a few batches are surely stored
        assert process.stdout.readline(), process.stderr.read() if process.stderr else ""
    process.send_signal(signal.SIGKILL)
    process.wait()

    # When a new process runs the whole dispatch again
    async def rerun() -> tuple[int, list[str]]:
        qm = QueueManager({"queue": {"default": "q", "drivers": {"q": entry}}})
        qm.load_from_config()
        try:
            before = await qm.driver.size()
            for batch in range(200):
                jobs = [Numbered(batch * 50 + n) for n in range(50)]
                await qm.dispatch_batch(jobs, job_ids=[f"b{batch}-{n}" for n in range(50)])
            return before, await stored_ids(qm)
        finally:
            await qm.dispose()

    before, taken = asyncio.run(rerun())
    # Then every job is stored exactly once: what the killed process stored is not stored again
    assert before >= 250 and before % 50 == 0  # whole batches only: each is one commit
    assert len(taken) == 10_000 and len(set(taken)) == 10_000


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_remembered_ids_survive_a_reopen_and_a_compaction(tmp_path: Path, kind: str) -> None:
    """A completed job's id stays taken for another process, after a restart and (file) a
    compaction; a different job under it is refused there too."""

    def make() -> SQLiteDriver | FileStorageDriver:
        if kind == "sqlite":
            return SQLiteDriver(path=tmp_path / "q.sqlite3")
        return FileStorageDriver(storage_path=tmp_path / "q")

    async def run() -> None:
        first = make()
        qm = QueueManager(driver=first)
        await qm.dispatch(Order(7), job_id="order-7")
        assert await qm.process() is True  # completed: the job is gone, its id remembered
        await qm.dispose()
        second = make()
        if isinstance(second, FileStorageDriver):
            await second.compact()
            await second.dispose()
            second = make()
        qm = QueueManager(driver=second)
        try:
            assert await qm.dispatch(Order(7), job_id="order-7") == "order-7"
            assert await qm.driver.size() == 0
            with pytest.raises(JobIdConflict, match="order-7"):
                await qm.dispatch(Order(8), job_id="order-7")
            assert await qm.driver.size() == 0
        finally:
            await qm.dispose()

    asyncio.run(run())
