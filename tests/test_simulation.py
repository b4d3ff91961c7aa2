"""The virtual clock: exact times, ordering, determinism, and the ways it refuses to hang."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from khadem_lab import (
    BackgroundTaskError,
    EventKind,
    EventLog,
    LivelockError,
    QueueJob,
    QueueManager,
    Simulation,
    SimulationError,
    SimulationStalled,
    demo,
)
from khadem_lab.backoff import Exponential

from .support import START, Recorded, at, elapsed


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


def test_default_start_is_a_fixed_date() -> None:
    with Simulation() as sim:
        assert sim.now() == START
    with Simulation(start=datetime(2030, 5, 1)) as sim:
        assert sim.now() == datetime(2030, 5, 1, tzinfo=UTC)


def test_sleeping_tasks_wake_at_exact_virtual_times(sim: Simulation) -> None:
    log: list[tuple[float, str]] = []

    async def sleeper(name: str, every: float) -> None:
        for _ in range(3):
            await asyncio.sleep(every)
            log.append((elapsed(sim), name))

    sim.spawn(sleeper("a", 5))
    sim.spawn(sleeper("b", 7))
    assert sim.advance(seconds=12) == at(12)
    assert log == [(5, "a"), (7, "b"), (10, "a")]
    assert sim.advance(timedelta(minutes=1)) == at(72)
    assert log[3:] == [(14, "b"), (15, "a"), (21, "b")]


def test_advance_accepts_every_unit(sim: Simulation) -> None:
    sim.advance(seconds=1, minutes=1, hours=1, days=1)
    assert sim.elapsed == timedelta(days=1, hours=1, minutes=1, seconds=1)
    with pytest.raises(ValueError, match="negative"):
        sim.advance(seconds=-1)


def test_wait_for_and_timeout_run_on_virtual_time(sim: Simulation) -> None:
    async def slow() -> str:
        try:
            await asyncio.wait_for(asyncio.sleep(3600), timeout=10)
        except TimeoutError:
            return f"timed out at {elapsed(sim)}"
        return "finished"

    started = time.perf_counter()
    assert sim.run(slow()) == "timed out at 10.0"
    assert time.perf_counter() - started < 5  # an hour of virtual time is not waited for


def test_run_until_and_run_until_idle(sim: Simulation) -> None:
    hits: list[float] = []

    async def later(delay: float) -> None:
        await asyncio.sleep(delay)
        hits.append(elapsed(sim))

    sim.spawn(later(30))
    sim.spawn(later(90))
    assert sim.run_until(at(60)) == at(60)
    assert hits == [30]
    assert sim.run_until_idle() == at(90)  # the clock stays at the last thing that happened
    assert hits == [30, 90]
    sim.spawn(later(1000))
    assert sim.run_until_idle(limit=timedelta(seconds=10)) == at(100)
    assert hits == [30, 90]


def test_jobs_due_at_one_instant_run_in_dispatch_order(sim: Simulation) -> None:
    Recorded.reset(sim)
    qm = QueueManager(clock=sim.clock)
    names = [f"job{i}" for i in range(12)]

    async def scenario() -> None:
        for name in reversed(names[6:]):  # dispatched later, due at the same instant
            await qm.dispatch(Recorded(name), delay=timedelta(seconds=100))
        await qm.dispatch_batch([Recorded(n) for n in names[:6]], delay=timedelta(seconds=100))
        await qm.start_worker(run_in_background=True)

    sim.run(scenario())
    sim.advance(minutes=5)
    assert [name for _, name, _ in Recorded.runs] == list(reversed(names[6:])) + names[:6]
    assert {t for t, _, _ in Recorded.runs} == {100.0}


def test_same_seed_gives_the_same_history_row_for_row() -> None:
    first = demo.run(seed=3)
    second = demo.run(seed=3)
    assert first == second
    assert any("retry_scheduled" in line for line in first)
    assert demo.run(seed=4) != first  # the seed matters: work times are drawn from it


def test_a_livelock_raises_instead_of_hanging() -> None:
    with Simulation(livelock_budget=10_000) as sim:

        async def spin() -> None:
            while True:
                await asyncio.sleep(0)

        sim.spawn(spin())
        with pytest.raises(LivelockError, match="without time moving"):
            sim.advance(seconds=1)


def test_a_job_retried_with_backoff_for_centuries_runs_when_due_not_a_livelock() -> None:
    # Given a job that always fails, retried with exponential backoff from 1 s and no ceiling
    class Doomed(QueueJob):
        max_retries = 36
        retry_delay = Exponential(base=timedelta(seconds=1))

        async def handle(self) -> None:
            raise RuntimeError("the service is gone")

    with Simulation(livelock_budget=10_000) as sim:
        qm = QueueManager(clock=sim.clock)
        log = EventLog()
        qm.subscribe(log)
        sim.run(qm.dispatch(Doomed()))
        sim.run(qm.start_worker(run_in_background=True))
        # When the simulation runs through the retries: the last ones are due past the year 2514,
        # where epoch seconds are spaced more than the loop's 1 us apart
        sim.advance(days=365 * 3_000)
        # Then every attempt ran when its retry was due, and the job ended in the dead-letter queue
        started = [e.time for e in log.of_kind(EventKind.STARTED)]
        assert len(started) == 37
        assert [b - a for a, b in itertools.pairwise(started)] == [2.0**k for k in range(36)]
        assert sim.now() == START + timedelta(days=365 * 3_000)  # the year 5022
        assert sim.run(qm.driver.size()) == 0 and len(log.of_kind(EventKind.DEAD_LETTERED)) == 1


def test_a_simulation_far_in_the_future_runs_jobs_at_their_times() -> None:
    with Simulation(datetime(2600, 1, 1, tzinfo=UTC), livelock_budget=10_000) as sim:
        Recorded.reset(sim)
        qm = QueueManager(clock=sim.clock)
        sim.run(qm.dispatch(Recorded("later", work=2), delay=timedelta(seconds=1)))
        sim.run(qm.start_worker(run_in_background=True))
        sim.advance(seconds=10)
        assert Recorded.runs == [(3.0, "later", 1)]  # due at 1 s, then 2 s of work
        assert sim.now() == datetime(2600, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_the_clock_stops_at_the_calendars_end_with_a_clear_error(sim: Simulation) -> None:
    # Given a job due in the year 11024 and one due in 9024, and an idle worker
    qm = QueueManager(clock=sim.clock)
    Recorded.reset(sim)
    sim.run(qm.dispatch(Recorded("after 9999"), delay=timedelta(days=365 * 9_000)))
    sim.run(qm.dispatch(Recorded("before"), delay=timedelta(days=365 * 7_000)))
    sim.run(qm.start_worker(run_in_background=True))
    # When an advance would go past 9999-12-31, it is refused before anything runs
    with pytest.raises(ValueError, match=r"past 9999-12-31 23:59:59 UTC.*nothing was run"):
        sim.advance(days=365 * 8_000)
    assert sim.now() == START and Recorded.runs == []
    # And running until idle runs what the calendar holds, and leaves the clock at its last event
    sim.run_until_idle()
    assert [name for _, name, _ in Recorded.runs] == ["before"]
    assert sim.now() == START + timedelta(days=365 * 7_000)
    assert sim.run(qm.driver.size()) == 1  # the job due after 9999 waits, never run


def test_a_failing_background_task_stops_the_advance_at_its_virtual_time(sim: Simulation) -> None:
    ticks: list[float] = []

    async def broken() -> None:
        await asyncio.sleep(5)
        raise ValueError("disk full")

    async def ticking() -> None:
        while True:
            await asyncio.sleep(1)
            ticks.append(elapsed(sim))

    sim.spawn(ticking())
    sim.spawn(broken())
    with pytest.raises(BackgroundTaskError, match="ValueError: disk full") as info:
        sim.advance(seconds=10)
    assert isinstance(info.value.__cause__, ValueError)
    assert sim.now() == at(5)  # raised where it happened, not at the end of the advance
    assert ticks == [1, 2, 3, 4, 5]
    assert sim.advance(seconds=5) == at(10)  # reported once, not again; the rest goes on
    assert ticks == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_a_library_notice_without_an_error_is_logged_not_fatal(
    sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    # A client of another library garbage-collected while the simulation runs tells the running
    # loop "Unclosed ... client" (redis-py's cluster client does): a notice, not an error of the
    # simulation; it stopped an unrelated advance before.
    async def notice_then_work() -> str:
        asyncio.get_running_loop().call_exception_handler({"message": "Unclosed SomeClient client"})
        await asyncio.sleep(2)
        return "done"

    with caplog.at_level("WARNING", logger="khadem_lab.simulation"):
        assert sim.run(notice_then_work()) == "done"
    assert sim.now() == at(2)
    assert "Unclosed SomeClient client" in caplog.text


def test_waiting_for_what_can_never_happen_is_a_clear_error(sim: Simulation) -> None:
    qm = QueueManager(clock=sim.clock)
    stalled = r"^QueueManager\.start_worker waits .*run_in_background=True"
    with pytest.raises(SimulationStalled, match=stalled):
        sim.run(qm.start_worker())  # no jobs, no max_jobs, no timeout: it would wait forever


def test_advancing_from_inside_the_simulation_is_refused(sim: Simulation) -> None:
    async def inside() -> None:
        sim.advance(seconds=1)

    with pytest.raises(SimulationError, match="from inside itself"):
        sim.run(inside())


def test_a_closed_simulation_refuses_to_run() -> None:
    sim = Simulation()
    sim.close()
    sim.close()  # idempotent
    with pytest.raises(SimulationError, match="closed"):
        sim.advance(seconds=1)


@pytest.mark.realtime
def test_thread_work_holds_virtual_time_still(sim: Simulation) -> None:
    seen: list[tuple[str, float]] = []

    async def io_bound() -> None:
        await asyncio.to_thread(time.sleep, 0.05)  # real work in a thread: time must not jump
        seen.append(("io", elapsed(sim)))

    async def ticker() -> None:
        await asyncio.sleep(30)
        seen.append(("tick", elapsed(sim)))

    sim.spawn(io_bound())
    sim.spawn(ticker())
    sim.advance(minutes=1)
    assert seen == [("io", 0.0), ("tick", 30.0)]


def test_manager_calls_from_another_event_loop_run_on_the_virtual_one(sim: Simulation) -> None:
    """What a notebook cell does: its loop is ipykernel's, the queue lives on the simulation's."""
    Recorded.reset(sim)
    qm = QueueManager(clock=sim.clock)
    log = EventLog()
    qm.subscribe(log)

    async def cell() -> list[float]:
        await qm.dispatch(Recorded("a", work=2))
        await qm.dispatch(Recorded("b", work=2), delay=timedelta(minutes=1))
        worker = await qm.start_worker(run_in_background=True)
        await sim.advance_async(minutes=5)
        stats = await qm.driver.get_stats()
        assert stats["metrics"]["jobs_completed"] == 2
        await worker.stop()
        return [e.time - START.timestamp() for e in log.of_kind(EventKind.COMPLETED)]

    assert asyncio.run(cell()) == [2.0, 62.0]
    assert not qm.workers


def test_job_output_printed_during_an_advance_lands_in_the_caller(
    sim: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    async def chatty() -> None:
        await asyncio.sleep(1)
        print("hello from the virtual loop")

    sim.spawn(chatty())
    sim.advance(seconds=2)
    assert capsys.readouterr().out == "hello from the virtual loop\n"


def test_wallclock_bridge_makes_datetime_now_virtual() -> None:
    seen: list[datetime] = []

    async def reads_the_wall_clock() -> None:
        await asyncio.sleep(90)
        seen.append(datetime.now(UTC))

    with Simulation(wallclock=True) as sim:
        sim.spawn(reads_the_wall_clock())
        sim.advance(minutes=2)
    assert seen == [at(90)]
    assert datetime.now(UTC).year >= 2026  # the bridge is off again outside the simulation


def test_real_socket_data_reaches_a_task_on_the_virtual_loop(sim: Simulation) -> None:
    got: list[tuple[bytes, float]] = []

    async def reads_a_socket() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        theirs.sendall(b"ping")
        got.append((await reader.readexactly(4), elapsed(sim)))
        writer.close()
        theirs.close()

    sim.spawn(reads_a_socket())
    sim.advance(seconds=5)
    assert got == [(b"ping", 0.0)]


def test_a_simulation_shows_time_in_its_time_zone() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    with Simulation(start=datetime(2024, 1, 1, 9, 0, tzinfo=berlin)) as sim:
        assert sim.now() == datetime(2024, 1, 1, 9, 0, tzinfo=berlin)
        assert sim.now().utcoffset() == timedelta(hours=1)  # shown as 09:00+01:00, not 08:00+00:00
        assert sim.advance(hours=2).isoformat() == "2024-01-01T11:00:00+01:00"
        assert sim.clock.now().isoformat() == "2024-01-01T11:00:00+01:00"
        assert repr(sim) == "Simulation(now=2024-01-01T11:00:00+01:00, seed=0)"
        assert sim.time() == datetime(2024, 1, 1, 10, 0, tzinfo=UTC).timestamp()  # inside: UTC seconds
    with Simulation(tz=berlin) as sim:  # the default start, shown in Berlin
        assert sim.now().isoformat() == "2024-01-01T10:00:00+01:00"
