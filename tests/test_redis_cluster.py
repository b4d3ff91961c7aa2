"""The Redis driver on a real Redis Cluster: three masters and three replicas started by these
tests (``redis-server --cluster-enabled yes`` on private ports 7100-7199, joined with
``redis-cli --cluster create``), torn down after. The contract suite, four worker processes taking
each job exactly once, and a failover drill: the master holding the queue's slot is killed while
a worker runs, its replica takes over, and the drill reports what was lost (Redis replication is
asynchronous: a write acknowledged by the old master just before it died may never have reached
the replica). Real servers and processes: real-time tests, kept short."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any, ClassVar

import pytest

from khadem_lab import (
    ConfigError,
    DriverConfig,
    JobRegistry,
    QueueJob,
    QueueManager,
    RedisStorageDriver,
    Simulation,
)
from khadem_lab.clock import Clock
from khadem_lab.drivers.base import BaseQueueDriver
from khadem_lab.testing.contract import DriverContract

from .test_processes import read_log, start_worker, stats_of
from .worker_process import Numbered

pytestmark = pytest.mark.realtime
PORTS = range(7100, 7200)
NODE_TIMEOUT_MS = 1000  # how long a master may be silent before its replica takes over
WAIT = 60.0  # seconds: an upper bound on waiting for the cluster, never a measurement


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Cluster:
    """Six redis-servers (three masters, three replicas) in one directory; killed at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ports = [p for p in PORTS if _free(p) and _free(p + 10000)][:6]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def start(self) -> None:
        if len(self.ports) < 6:
            pytest.fail("fewer than six free ports in 7100-7199 for a Redis Cluster")
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir()
            self.servers[port] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                 "--save", "", "--appendonly", "no", "--dir", str(node)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for port in self.ports:
            self._wait(lambda port=port: self.cli(port, "PING") == "PONG")
        subprocess.run(
            ["redis-cli", "--cluster", "create", *self.nodes, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=WAIT,
        )
        self._wait(self._settled)

    def _settled(self) -> bool:
        """Every node says the cluster is ok, and every master has its replica."""
        if not all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO") for p in self.ports):
            return False
        roles = [self.cli(p, "ROLE").split("\n")[0] for p in self.ports]
        return roles.count("master") == 3 and roles.count("slave") == 3

    def cli(self, port: int, *command: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, timeout=WAIT)
        return done.stdout.decode().strip()

    def master_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot (asked of a node that is alive)."""
        alive = next(p for p in self.ports if self.servers[p].poll() is None)
        slot = self.cli(alive, "CLUSTER", "KEYSLOT", key)
        for line in self.cli(alive, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= int(slot) <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no master holds slot {slot}")

    def kill(self, port: int) -> None:
        self.servers[port].send_signal(signal.SIGKILL)
        self.servers[port].wait()

    def stop(self) -> None:
        for server in self.servers.values():
            if server.poll() is None:
                server.kill()
                server.wait()

    @staticmethod
    def _wait(condition: Any) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("the Redis Cluster did not come up")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server and redis-cli are not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    directory = Path(mkdtemp(prefix="khadem-cluster-"))
    running = Cluster(directory)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


_count = iter(range(1, 1_000_000))


def queue_name(label: str) -> str:
    return f"{label}-{os.getpid()}-{next(_count)}"


# ================================================================================ the contract
class TestClusterContract(DriverContract):
    """Every check of the driver contract, on the cluster (a fresh queue name per driver)."""

    nodes: ClassVar[list[str]] = []

    @pytest.fixture(autouse=True)
    def _nodes(self, cluster: Cluster) -> None:
        TestClusterContract.nodes = cluster.nodes

    def make_driver(
        self, config: DriverConfig, clock: Clock, registry: JobRegistry, tmp_path: Path
    ) -> BaseQueueDriver:
        return RedisStorageDriver(
            config, nodes=self.nodes[:2], queue_name=queue_name("contract"), clock=clock, registry=registry
        )


# ================================================================================ processes
def cluster_config(cluster: Cluster, label: str, **extra: Any) -> dict[str, Any]:
    entry = {"driver": "redis", "poll_interval": 0.05, "nodes": cluster.nodes[:3], "queue_name": label}
    return {"queue": {"default": "q", "drivers": {"q": {**entry, **extra}}}}


@pytest.mark.parametrize("prefetch", [1, 20])
def test_four_worker_processes_on_a_cluster_run_each_job_exactly_once(
    cluster: Cluster, prefetch: int, tmp_path: Path
) -> None:
    config = cluster_config(cluster, queue_name("procs"))
    log = tmp_path / "runs.log"
    n = 2_000

    async def dispatch() -> None:
        qm = QueueManager(config)
        qm.load_from_config()
        await qm.dispatch_batch([Numbered(i) for i in range(n)])
        await qm.dispose()

    asyncio.run(dispatch())
    workers = [start_worker(config, log, prefetch=prefetch) for _ in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()
    runs = read_log(log)
    done = Counter(n for kind, n, _ in runs if kind == "done")
    assert sorted(done) == list(range(n))  # none lost
    assert set(done.values()) == {1}  # none run twice
    stats = stats_of(config)
    assert stats["queue_depth"] == 0 and stats["dead_ids"] == []
    assert stats["redis_server"] == "cluster " + ",".join(cluster.nodes[:3])


# ================================================================================ failover
@dataclass
class Step(QueueJob):
    """Records each run (real time: a millisecond of work)."""

    n: int
    runs: ClassVar[list[int]] = []

    async def handle(self) -> None:
        await asyncio.sleep(0.001)
        Step.runs.append(self.n)


def test_failover_drill_the_queue_goes_on_on_the_promoted_replica(cluster: Cluster) -> None:
    """Kill the master that holds the queue's slot while a worker runs; its replica takes over.
    Jobs whose dispatch the replica had confirmed (WAIT) all run, at least once; what the old
    master acknowledged but never replicated is counted and printed (the report's figures)."""
    name = queue_name("failover")
    registry = JobRegistry()
    registry.register(Step)
    Step.runs = []
    n, after = 3_000, 200
    errors: list[BaseException] = []

    async def drill() -> dict[str, Any]:
        driver = RedisStorageDriver(
            DriverConfig(
                name="redis", poll_interval=timedelta(seconds=0.02), lease_time=timedelta(seconds=1)
            ),
            nodes=cluster.nodes[:3],
            queue_name=name,
            registry=registry,
        )
        qm = QueueManager(driver=driver)
        await qm.dispatch_batch([Step(i) for i in range(n)])
        master = cluster.master_of(driver.prefix + "seq")
        # Every job dispatched so far is on the replica too (WAIT: one replica confirms)
        assert cluster.cli(master, "WAIT", "1", "5000") == "1"
        worker = await qm.start_worker(
            run_in_background=True, concurrency=4, on_error=lambda error, _stack: errors.append(error)
        )
        async with asyncio.timeout(WAIT):
            while len(Step.runs) < n // 3:
                await asyncio.sleep(0.001)
        killed_at = len(Step.runs)
        await asyncio.to_thread(cluster.kill, master)  # the worker runs on during the failover
        async with asyncio.timeout(WAIT):  # the replica takes over; the worker goes on
            while len(Step.runs) < killed_at + 100:
                await asyncio.sleep(0.01)
        # New dispatches go to the new master
        await qm.dispatch_batch([Step(i) for i in range(n, n + after)])
        async with asyncio.timeout(WAIT):
            while True:
                stats = await driver.get_stats()
                if stats["queue_depth"] == 0 and stats["processing_count"] == 0:
                    break
                await asyncio.sleep(0.05)
        await worker.stop()
        await driver.dispose()
        return {
            "killed_master": master,
            "runs_when_killed": killed_at,
            "new_master": cluster.master_of(driver.prefix + "seq"),
        }

    facts = asyncio.run(drill())
    runs = Counter(Step.runs)
    # Then every job ran: those confirmed on the replica before the kill, and those after it
    assert sorted(runs) == list(range(n + after))
    assert facts["new_master"] != facts["killed_master"]
    assert errors  # the outage was reported to on_error, and the worker went on
    twice = sorted(job for job, count in runs.items() if count > 1)
    print(
        f"\nfailover drill: master :{facts['killed_master']} killed after {facts['runs_when_killed']} "
        f"of {n} jobs had run; replica :{facts['new_master']} took over; {len(errors)} storage "
        f"errors reported; {len(twice)} jobs ran twice (an ack or reserve the old master had "
        f"not replicated); 0 jobs lost"
    )


def test_failover_drill_through_the_synchronous_client_under_a_simulation(cluster: Cluster) -> None:
    """The same drill through redis-py's synchronous cluster client, which the driver uses on a
    Simulation's clock (every call) and which every driver builds when it is made: a worker on
    virtual time, the master of the queue's slot killed between two advances, the simulation
    stepped on while the replica takes over. Jobs the replica had confirmed all run, at least
    once; new dispatches go to the new master; and a new driver given the same nodes (the dead
    one among them, as a CLI's ``stats`` would be) reads the queue."""
    name = queue_name("failover-sync")
    registry = JobRegistry()
    registry.register(Step)
    Step.runs = []
    n, after = 1_000, 100
    errors: list[BaseException] = []

    def advance_until(done: Any, step: float) -> None:
        """Step virtual time until ``done()``; WAIT real seconds at most (a bound, not a measure)."""
        deadline = time.monotonic() + WAIT
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not done within {WAIT:g} s: {len(Step.runs)} runs, {len(errors)} errors"
                )
            sim.advance(seconds=step)

    # the watchdog stays, with a bound no call through a failover comes near
    with Simulation(stall_timeout=WAIT) as sim:
        driver = RedisStorageDriver(
            DriverConfig(
                name="redis", poll_interval=timedelta(seconds=0.02), lease_time=timedelta(seconds=1)
            ),
            nodes=cluster.nodes[:3],
            queue_name=name,
            clock=sim.clock,
            registry=registry,
        )
        qm = QueueManager(driver=driver, clock=sim.clock)
        sim.run(qm.dispatch_batch([Step(i) for i in range(n)]))
        master = cluster.master_of(driver.prefix + "seq")
        # Every job dispatched so far is on the replica too (WAIT: one replica confirms)
        assert cluster.cli(master, "WAIT", "1", "5000") == "1"
        worker = sim.run(
            qm.start_worker(
                run_in_background=True, concurrency=4, on_error=lambda error, _stack: errors.append(error)
            )
        )
        advance_until(lambda: len(Step.runs) >= n // 3, 0.01)
        killed_at = len(Step.runs)
        cluster.kill(master)  # between two advances: the next calls of the worker meet a dead node
        advance_until(lambda: len(Step.runs) >= killed_at + 100, 0.1)  # the replica takes over
        # New dispatches go to the new master
        sim.run(qm.dispatch_batch([Step(i) for i in range(n, n + after)]))
        stats: dict[str, Any] = {}

        def drained() -> bool:  # every job ran, and none is waiting or held (a second run included)
            stats.update(sim.run(driver.get_stats()))
            return len(set(Step.runs)) == n + after and stats["queue_depth"] == stats["processing_count"] == 0

        advance_until(drained, 0.1)
        sim.run(worker.stop())
        sim.run(driver.dispose())

    async def read_with_a_new_driver() -> dict[str, Any]:
        fresh = RedisStorageDriver(DriverConfig(name="redis"), nodes=cluster.nodes[:3], queue_name=name)
        try:
            return await fresh.get_stats()
        finally:
            await fresh.dispose()

    new_master = cluster.master_of(driver.prefix + "seq")
    runs = Counter(Step.runs)
    # Then every job ran: those confirmed on the replica before the kill, and those after it
    assert sorted(runs) == list(range(n + after))
    assert new_master != master
    assert errors  # the outage was reported to on_error, and the worker went on
    assert stats["queue_depth"] == 0 and stats["processing_count"] == 0
    fresh = asyncio.run(read_with_a_new_driver())
    assert fresh["queue_depth"] == 0 and fresh["processing_count"] == 0
    twice = sorted(job for job, count in runs.items() if count > 1)
    print(
        f"\nfailover drill (synchronous client, Simulation): master :{master} killed after "
        f"{killed_at} of {n} jobs had run; replica :{new_master} took over; {len(errors)} storage "
        f"errors reported; {len(twice)} jobs ran twice (an ack or reserve the old master had not "
        "replicated); 0 jobs lost"
    )


# ================================================================================ options
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"nodes": []}, "nodes"),
        ({"nodes": ["127.0.0.1"]}, "nodes"),
        ({"nodes": ["127.0.0.1:99999"]}, "nodes"),
        ({"nodes": "127.0.0.1:7000"}, "nodes"),
        ({"cluster": "yes"}, "cluster"),
        ({"cluster": True, "db": 2}, "db"),
        ({"nodes": ["127.0.0.1:7000"], "db": 1}, "db"),
    ],
)
def test_a_bad_cluster_option_is_refused_naming_it(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStorageDriver(DriverConfig(name="r"), queue_name="q", **options)
    assert f"queue.drivers.r.{named}" in str(caught.value)
