"""QueueMonitor: periodic checks on the injected clock, alerts that fire once and clear once.

Virtual time gives exact moments: each alert is asserted with the simulated second it fired.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from khadem_lab import InMemoryDriver, PermanentFailure, QueueJob, QueueManager, Simulation
from khadem_lab.monitor import Alert, Limit, QueueMonitor, Thresholds


@dataclass
class Work(QueueJob):
    seconds: float = 0.0
    fails: bool = False

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)
        if self.fails:
            raise PermanentFailure("bad input")


def timeline(sim: Simulation, alerts: list[Alert]) -> list[tuple[float, str, bool, float]]:
    start = sim.start.timestamp()
    return [(a.time.timestamp() - start, a.check, a.firing, a.value) for a in alerts]


def test_a_depth_alert_fires_once_and_clears_once_past_its_clear_level() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        seen: list[Alert] = []

        def broken(alert: Alert) -> None:
            raise RuntimeError("the pager is down")

        thresholds = Thresholds(success_rate=None, queue_depth=Limit(5, clear=2))
        monitor = sim.run(
            QueueMonitor(qm, interval=20, thresholds=thresholds, on_alert=[broken, seen.append]).start()
        )
        # Given ten jobs of 6.5 s at t=30 and one worker: the depth is 9 at 40, 6 at 60, 3 at 80, 0 at 100
        sim.advance(seconds=30)
        sim.run(qm.dispatch_batch([Work(6.5) for _ in range(10)]))
        sim.run(qm.start_worker(run_in_background=True))
        sim.advance(seconds=90)
        # Then it fired at 40 (once, though still high at 60), stayed on at 80 (3: above the clear
        # level 2) and cleared at 100; a failing callback did not stop the others
        assert timeline(sim, seen) == [(40, "queue_depth", True, 9), (100, "queue_depth", False, 0)]
        assert monitor.history == seen and monitor.active == {}
        assert seen[0].message == "[memory] ALERT: queue depth 9, above 5"
        assert seen[1].message == "[memory] cleared: queue depth 0 (back within 2)"
        sim.run(monitor.stop())
        sim.run(qm.dispatch_batch([Work(1000) for _ in range(10)]))
        sim.advance(minutes=5)
        assert len(seen) == 2  # stopped: no more checks


def test_the_recent_success_rate_fires_on_an_outage_that_the_cumulative_rate_hides() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        monitor = sim.run(QueueMonitor(qm, interval=60, thresholds=Thresholds(success_rate=0.9)).start())
        sim.run(qm.start_worker(run_in_background=True))
        sim.run(qm.dispatch_batch([Work(0.1) for _ in range(100)]))  # a busy, healthy minute
        sim.advance(minutes=1)
        sim.run(qm.dispatch_batch([Work(1, fails=True) for _ in range(5)]))  # then an outage
        sim.advance(minutes=1)
        sim.advance(minutes=1)  # nothing finished: not measured, the alert stays
        sim.run(qm.dispatch_batch([Work(1) for _ in range(10)]))  # the service is back
        sim.advance(minutes=1)
        # 100 of 105 (95 %) overall never crossed 90 %; the last minute's 0 % did
        assert timeline(sim, monitor.history) == [
            (120, "recent_success_rate", True, 0.0),
            (240, "recent_success_rate", False, 1.0),
        ]
        assert monitor.last is not None and monitor.last.values["success_rate"] == 110 / 115
        assert (
            monitor.history[0].message
            == "[memory] ALERT: success rate since the last check 0.0%, below 90.0%"
        )


def test_the_success_rate_alert_fires_below_the_limit_and_clears_above_its_clear_level() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        monitor = sim.run(
            QueueMonitor(
                qm,
                interval=60,
                thresholds=Thresholds(
                    success_rate=Limit(0.9, clear=0.95), recent_success_rate=None, queue_depth=None
                ),
            ).start()
        )
        sim.run(qm.start_worker(run_in_background=True))
        sim.run(qm.dispatch_batch([Work(1, fails=i < 2) for i in range(10)]))  # 8 of 10 succeed
        sim.advance(minutes=1)
        sim.run(qm.dispatch_batch([Work(1) for _ in range(10)]))  # 18 of 20: 0.9, not yet clear
        sim.advance(minutes=1)
        sim.run(qm.dispatch_batch([Work(1) for _ in range(20)]))  # 38 of 40: 0.95
        sim.advance(minutes=1)
        assert timeline(sim, monitor.history) == [
            (60, "success_rate", True, 0.8),
            (180, "success_rate", False, 0.95),
        ]
        assert monitor.history[0].message == "[memory] ALERT: success rate 80.0%, below 90.0%"


def test_old_ready_jobs_and_no_activity_fire_at_the_simulated_moment_and_clear_when_a_worker_comes() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        thresholds = Thresholds(oldest_ready=timedelta(minutes=2), idle=timedelta(minutes=3))
        monitor = sim.run(QueueMonitor(qm, interval=60, thresholds=thresholds).start())
        sim.run(qm.dispatch_batch([Work(1) for _ in range(3)]))  # no worker yet
        sim.advance(seconds=250)
        sim.run(qm.start_worker(run_in_background=True))
        sim.advance(seconds=50)
        assert timeline(sim, monitor.history) == [
            (180, "oldest_ready", True, 180),
            (240, "idle", True, 240),
            (300, "oldest_ready", False, 0),
            (300, "idle", False, 0),
        ]
        assert (
            monitor.history[1].message
            == "[memory] ALERT: time without a finished job while jobs wait 240 s, above 180 s"
        )


def test_jobs_whose_lease_expired_fire_until_they_are_back_and_done() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)  # lease: 5 minutes
        monitor = sim.run(QueueMonitor(qm, interval=60, thresholds=Thresholds(expired_leases=0)).start())
        sim.run(qm.dispatch(Work(1)))
        taken = sim.run(qm.driver.reserve(None, worker="gone"))  # its worker vanishes
        assert taken is not None
        sim.advance(seconds=370)
        sim.run(qm.start_worker(run_in_background=True))  # brings it back (a lease expiry) and runs it
        sim.advance(seconds=110)
        # fired at 300 (the lease ended), still on at 420 (the expiry counted since the last check)
        assert timeline(sim, monitor.history) == [
            (300, "expired_leases", True, 1),
            (480, "expired_leases", False, 0),
        ]


def test_check_runs_one_check_now_and_bad_thresholds_are_refused() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        monitor = QueueMonitor(qm, thresholds=Thresholds(queue_depth=0))
        sim.run(qm.dispatch(Work(1)))
        [alert] = sim.run(monitor.check())
        assert (alert.check, alert.firing, alert.value) == ("queue_depth", True, 1)
        assert monitor.last is not None and monitor.last.values["queue_depth"] == 1
        with pytest.raises(
            Exception, match=r"Thresholds.queue_depth must be a number, a Limit or None, got 'x'"
        ):
            QueueMonitor(qm, thresholds=Thresholds(queue_depth="x"))  # type: ignore[arg-type]
        with pytest.raises(Exception, match="interval must be positive"):
            QueueMonitor(qm, interval=0)


@pytest.mark.realtime
def test_on_the_system_clock_beside_a_worker() -> None:
    async def main() -> list[tuple[str, bool]]:
        qm = QueueManager(driver=InMemoryDriver())
        changed: asyncio.Queue[Alert] = asyncio.Queue()
        monitor = await QueueMonitor(
            qm, interval=0.02, thresholds=Thresholds(queue_depth=Limit(2)), on_alert=changed.put_nowait
        ).start()
        await qm.dispatch_batch([Work() for _ in range(5)])
        fired = await asyncio.wait_for(changed.get(), timeout=60)
        await qm.start_worker(run_in_background=True)
        cleared = await asyncio.wait_for(changed.get(), timeout=60)
        await monitor.stop()
        await qm.dispose()
        return [(fired.check, fired.firing), (cleared.check, cleared.firing)]

    assert asyncio.run(main()) == [("queue_depth", True), ("queue_depth", False)]
