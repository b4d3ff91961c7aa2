"""khadem_lab.lab.frames: tables checked against hand-computed histories (virtual time only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pd = pytest.importorskip("pandas")

from khadem_lab import (  # noqa: E402
    DEFAULT_START,
    BaseQueueDriver,
    DriverConfig,
    EventLog,
    Exponential,
    ExponentialJitter,
    InMemoryDriver,
    QueueJob,
    QueueManager,
    Simulation,
)
from khadem_lab.lab import frames  # noqa: E402

T0 = DEFAULT_START


def at(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(seconds=seconds))


@dataclass
class Flaky(QueueJob):
    """Runs 5 s; fails its first ``failures`` attempts."""

    failures: int = 2

    async def handle(self) -> None:
        await asyncio.sleep(5)
        if self.attempt <= self.failures:
            raise ConnectionError("boom")


@dataclass
class Slow(QueueJob):
    """Runs a minute under a 10 s timeout, no retries: timed out, then dead-lettered."""

    seconds: float = 60
    timeout = timedelta(seconds=10)
    max_retries = 0

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)


@dataclass
class Instant(QueueJob):
    """Fails at once, its first ``failures`` attempts; exponential backoff."""

    failures: int = 3
    max_retries = 4
    retry_delay = Exponential(base=timedelta(seconds=10), factor=3)

    async def handle(self) -> None:
        if self.attempt <= self.failures:
            raise ConnectionError("down")


@dataclass
class Jittery(QueueJob):
    failures: int = 4
    max_retries = 5
    retry_delay = ExponentialJitter(base=timedelta(seconds=20), factor=2, seed=7)

    async def handle(self) -> None:
        await asyncio.sleep(1.5)
        if self.attempt <= self.failures:
            raise ConnectionError("down")


def config(**options: Any) -> dict[str, Any]:
    driver = {"driver": "memory", "track_metrics": True, "use_dlq": True, **options}
    return {"queue": {"default": "memory", "drivers": {"memory": driver}}}


Setup = Callable[[QueueManager], Coroutine[Any, Any, Any]]


def run(setup: Setup, seconds: float, **options: Any) -> tuple[EventLog, dict[str, Any]]:
    """Run ``setup`` (dispatches, starts workers) then ``seconds`` of virtual time; the log and
    the driver's stats."""
    with Simulation() as sim:
        qm = QueueManager(config(**options), clock=sim.clock)
        qm.load_from_config()
        log = EventLog()
        qm.subscribe(log)
        sim.run(setup(qm))
        sim.advance(seconds=seconds)
        stats = sim.run(qm.driver.get_stats())
        sim.run(qm.stop_workers(graceful=False))
    return log, stats


async def flaky_then_slow(qm: QueueManager) -> None:
    await qm.dispatch(Flaky(2))  # job 1: fails twice, then succeeds
    await qm.dispatch(Flaky(10))  # job 2: fails all 4 attempts: dead-lettered
    await qm.dispatch(Slow())  # job 3: times out, dead-lettered
    await qm.dispatch(Slow(), delay=300)  # job 4: still running at the end
    await qm.start_worker(run_in_background=True, concurrency=2, name="w")


@pytest.fixture(scope="module")
def history() -> tuple[EventLog, dict[str, Any]]:
    return run(flaky_then_slow, 305)


def test_attempts_of_a_job_failing_twice_with_30_s_retry_delay(history: tuple[EventLog, Any]) -> None:
    attempts = frames.attempts(history[0])
    one = attempts[attempts["job_id"] == "1"].reset_index(drop=True)
    assert one["attempt"].tolist() == [1, 2, 3]
    assert one["reserved"].tolist() == [at(0), at(35), at(70)]
    assert one["started"].tolist() == [at(0), at(35), at(70)]
    assert one["ended"].tolist() == [at(5), at(40), at(75)]
    assert one["outcome"].tolist() == ["failed", "failed", "completed"]
    assert one["error"].tolist()[:2] == ["ConnectionError: boom"] * 2
    assert pd.isna(one["error"][2])
    assert one["wait"].tolist() == [0.0, 30.0, 30.0]
    assert one["retry_delay"].tolist()[:2] == [30.0, 30.0]
    assert pd.isna(one["retry_delay"][2])
    assert one["job_type"].tolist() == ["Flaky"] * 3


def test_attempts_dead_lettered_timed_out_and_running(history: tuple[EventLog, Any]) -> None:
    attempts = frames.attempts(history[0]).set_index(["job_id", "attempt"])
    assert attempts.loc[("2", 4), "outcome"] == "failed"
    assert pd.isna(attempts.loc[("2", 4), "retry_delay"])
    slow = attempts.loc[("3", 1)]
    assert slow["outcome"] == "timed_out"
    assert (slow["started"], slow["ended"]) == (at(5), at(15))  # waited for a free slot until 09:00:05
    assert slow["wait"] == 5.0
    assert slow["error"].startswith("JobTimeoutError: ")
    running = attempts.loc[("4", 1)]
    assert running["outcome"] == "running"
    assert running["started"] == at(300)
    assert pd.isna(running["ended"])
    assert running["wait"] == 300.0  # dispatched with a 5 minute delay


def test_jobs(history: tuple[EventLog, Any]) -> None:
    jobs = frames.jobs(history[0])
    assert jobs["job_id"].tolist() == ["1", "2", "3", "4"]
    assert jobs["final_state"].tolist() == ["completed", "dead_lettered", "dead_lettered", "running"]
    assert jobs["attempts"].tolist() == [3, 4, 1, 1]
    assert jobs["dispatched"].tolist() == [at(0)] * 4
    assert jobs["first_start"].tolist() == [at(0), at(0), at(5), at(300)]
    assert jobs["done"].tolist()[:3] == [at(75), at(110), at(15)]
    assert pd.isna(jobs["done"][3])
    assert jobs["wait"].tolist() == [0.0, 0.0, 5.0, 300.0]
    assert jobs["latency"].tolist()[:3] == [75.0, 110.0, 15.0]


def test_depth_at_exact_times(history: tuple[EventLog, Any]) -> None:
    depth = frames.depth(history[0])
    assert list(depth.columns) == ["time", "ready", "delayed", "in_progress", "dead_lettered"]
    rows = [(t, *counts) for t, *counts in depth.itertuples(index=False)]
    assert rows == [
        (at(0), 1, 1, 2, 0),  # 1, 2 running; 3 ready (no free slot); 4 delayed 5 min
        (at(5), 0, 3, 1, 0),  # 1, 2 failed: delayed 30 s; 3 running
        (at(15), 0, 3, 0, 1),  # 3 timed out: dead-lettered
        (at(35), 0, 1, 2, 1),  # 1, 2 became ready at 35 s (no event) and were taken at once
        (at(40), 0, 3, 0, 1),
        (at(70), 0, 1, 2, 1),
        (at(75), 0, 2, 0, 1),  # 1 completed, 2 retried
        (at(105), 0, 1, 1, 1),
        (at(110), 0, 1, 0, 2),  # 2 dead-lettered after 4 attempts
        (at(300), 0, 0, 1, 2),  # 4 due and running
    ]


def test_depth_ready_between_events_and_resampled() -> None:
    async def setup(qm: QueueManager) -> None:
        await qm.dispatch(Flaky(0), delay=90)  # delayed, then ready at 90 s with no worker

    log, _ = run(setup, 200)
    depth = frames.depth(log)
    assert [(t, r, d) for t, r, d, *_ in depth.itertuples(index=False)] == [(at(0), 0, 1), (at(90), 1, 0)]
    grid = frames.depth(log, freq="1min")
    assert grid["time"].tolist() == [at(0), at(60)]
    assert grid["ready"].tolist() == [0, 1]
    assert grid["delayed"].tolist() == [1, 0]


def test_metrics_last_row_matches_queue_metrics(history: tuple[EventLog, dict[str, Any]]) -> None:
    log, stats = history
    metrics = frames.metrics(log)
    last = metrics.iloc[-1]
    expected = stats["metrics"]
    for column in frames.METRIC_COLUMNS[1:]:
        assert last[column] == expected[column], column
    assert metrics["success_rate"].iloc[0] == 1.0  # nothing finished yet
    assert metrics["time"].is_monotonic_increasing and metrics["time"].is_unique


def test_events_columns_and_time_zone(history: tuple[EventLog, Any]) -> None:
    events = frames.events(history[0], tz="Europe/Berlin")
    assert events["time"].iloc[0] == at(0)
    assert str(events["time"].dt.tz) == "Europe/Berlin"
    assert events["time"].iloc[0].hour == 10
    assert events["kind"].iloc[0] == "dispatched"
    assert events["available_at"].iloc[3] == at(300)
    assert events["seq"].is_monotonic_increasing
    completed = events[events["kind"] == "completed"]
    assert completed["duration"].tolist() == [5.0]
    assert events["duration"].isna().sum() == len(events) - 8  # 8 runs ended with a duration
    # any iterable of events works, not only an EventLog
    pd.testing.assert_frame_equal(frames.events(iter(history[0].events), tz="Europe/Berlin"), events)


def test_lease_expired_when_a_worker_crashes() -> None:
    async def setup(qm: QueueManager) -> None:
        await qm.dispatch(Slow(seconds=20))
        worker = await qm.start_worker(run_in_background=True, name="crash")
        await asyncio.sleep(3)
        await worker.stop(graceful=False)  # its job stays reserved until the lease ends
        await qm.start_worker(run_in_background=True, name="next")

    Slow.max_retries = 1
    try:
        log, _ = run(setup, 200, lease_time=timedelta(seconds=60), timeout=10)
    finally:
        Slow.max_retries = 0
    attempts = frames.attempts(log)
    assert attempts["outcome"].tolist() == ["lease_expired", "timed_out"]
    lease_end = attempts["ended"].iloc[0]
    assert attempts["started"].iloc[1] == lease_end  # delivered again as soon as the lease ended
    assert frames.jobs(log)["final_state"].tolist() == ["dead_lettered"]
    depth = frames.depth(log)
    # taken back from the vanished worker and reserved again at the same instant: no change then
    assert depth["in_progress"].tolist() == [1, 0]
    assert depth["time"].iloc[-1] == lease_end + pd.Timedelta(seconds=10)
    assert depth["dead_lettered"].iloc[-1] == 1


def test_empty_log_gives_empty_frames_with_the_same_columns_and_dtypes(
    history: tuple[EventLog, Any],
) -> None:
    for build in (frames.events, frames.attempts, frames.jobs, frames.depth, frames.metrics):
        empty = build(EventLog())
        full = build(history[0])
        assert len(empty) == 0, build.__name__
        assert list(empty.columns) == list(full.columns), build.__name__
        assert empty.dtypes.to_dict() == full.dtypes.to_dict() or all(
            str(a) == str(b) or a.name == b.name == "category"
            for a, b in zip(empty.dtypes, full.dtypes, strict=True)
        ), build.__name__
    assert list(frames.events([]).columns) == list(frames.EVENT_COLUMNS)


def test_retry_plan_before_the_run() -> None:
    plan = frames.retry_plan(Instant)  # every attempt fails: 10 s, 30 s, 90 s, 270 s
    assert plan["attempt"].tolist()[:-1] == [1, 2, 3, 4, 5]
    assert pd.isna(plan["attempt"].iloc[-1])
    assert plan["delay"].tolist()[:-1] == [0.0, 10.0, 30.0, 90.0, 270.0]
    assert plan["at"].tolist() == [at(0), at(10), at(40), at(130), at(400), at(400)]
    assert plan["outcome"].tolist() == ["failed"] * 5 + ["dead_lettered"]
    ok = frames.retry_plan(Instant(), failures=1, start=datetime(2024, 5, 1, tzinfo=UTC), tz="Asia/Tehran")
    assert ok["outcome"].tolist() == ["failed", "completed", "completed"]
    assert ok["at"].iloc[1] == pd.Timestamp("2024-05-01 00:00:10", tz="UTC")
    assert str(ok["at"].dt.tz) == "Asia/Tehran"


@pytest.mark.parametrize(("job", "duration"), [(Instant(3), 0.0), (Jittery(4), 1.5), (Flaky(2), 5.0)])
def test_plan_and_run_agree_to_the_microsecond(job: QueueJob, duration: float) -> None:
    plan = frames.retry_plan(job, failures=getattr(job, "failures", 0), duration=duration)
    if isinstance(job.retry_delay, ExponentialJitter):
        job.retry_delay.reset()  # a fresh stream, as the plan draws it

    async def setup(qm: QueueManager) -> None:
        await qm.dispatch(job)
        await qm.start_worker(run_in_background=True)

    log, _ = run(setup, 3600)
    compared = frames.compare_plan(plan, frames.attempts(log))
    assert compared["attempt"].tolist() == list(range(1, len(plan)))
    assert compared["difference"].tolist() == [0.0] * (len(plan) - 1)
    assert compared["planned_at"].tolist() == compared["observed_at"].tolist()
    assert frames.jobs(log)["done"].iloc[0] == plan["at"].iloc[-1]


def test_event_log_maxlen_keeps_the_latest_in_constant_time(history: tuple[EventLog, Any]) -> None:
    full = history[0]
    bounded = EventLog(maxlen=5)
    for event in full:
        bounded(event)
    assert len(bounded) == 5 and bounded.maxlen == 5 and full.maxlen is None
    assert list(bounded) == full.events[-5:]
    assert bounded.of_kind(*{e.kind for e in full.events[-5:]}) == full.events[-5:]
    assert len(frames.events(bounded)) == 5
    bounded.clear()
    assert len(bounded) == 0 and bounded.maxlen == 5
    with pytest.raises(ValueError):
        EventLog(maxlen=-1)


@pytest.mark.filterwarnings("ignore:'str' is not supported as a fill value")  # pandas on float columns
def test_fillna_blank_works_on_the_whole_frame(history: tuple[EventLog, Any]) -> None:
    # Given the events of a run (a dispatched event has no worker and no error)
    log = history[0]
    events = frames.events(log)
    assert pd.isna(events["worker"].iloc[0]) and pd.isna(events["error"].iloc[0])
    # When the missing values are blanked for display, on the whole frame
    blank = events.fillna("")
    # Then the categorical worker column is blanked too, the other workers kept, still categorical
    assert blank["worker"].iloc[0] == "" and blank["error"].iloc[0] == ""
    assert blank["worker"].dtype.name == "category"
    assert blank["worker"].tolist() == [w if isinstance(w, str) else "" for w in events["worker"]]
    assert events["worker"].value_counts().loc[""] == 0  # "" is a category, but no value
    # the same on a bounded log, whose attempts may have lost the event naming their worker
    bounded = EventLog(maxlen=4)
    bounded.extend(log)
    attempts = frames.attempts(bounded)
    assert attempts["worker"].isna().any()
    assert attempts.fillna("")["worker"].isna().sum() == 0


@dataclass
class Unbounded(QueueJob):
    """Runs 100 s with no timeout: its lease (the driver's lease_time alone) can end under it."""

    seconds: float = 100
    timeout = None
    max_retries = 3

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)


class NoRenewal(InMemoryDriver):
    """A driver that cannot renew leases (a custom driver without renew_records): a live worker's
    lease then runs out under a long run, as it did for every driver before lease renewal."""

    renew_records = BaseQueueDriver.renew_records


def test_wait_after_a_lease_that_ran_out_under_a_live_run() -> None:
    # Given a 100 s job under a 60 s lease that cannot be renewed, on a live worker with two slots
    async def setup(qm: QueueManager) -> None:
        driver = NoRenewal(DriverConfig(name="norenew", lease_time=timedelta(seconds=60)))
        qm.register_driver("norenew", driver)
        qm.set_default_driver("norenew")
        await qm.dispatch(Unbounded())
        await qm.start_worker(run_in_background=True, concurrency=2, name="w")

    # When it runs: each lease ends at 60 s and the other slot runs it again at once, while the
    # first run goes on to 100 s (its settle then changes nothing: lease_lost)
    log, _ = run(setup, 400)
    attempts = frames.attempts(log)
    assert attempts["outcome"].tolist() == ["lease_lost"] * 4
    assert attempts["started"].tolist() == [at(0), at(60), at(120), at(180)]
    assert attempts["ended"].tolist() == [at(100), at(160), at(220), at(280)]
    # Then each retry waited from the moment the job was given back (the lease's end), not from
    # the end of the run that had lost it: no negative waits
    assert attempts["wait"].tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("chunk", [1, 8, 16_384])
def test_frames_of_a_bounded_log_that_dropped_blocks(
    history: tuple[EventLog, Any], chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from khadem_lab import eventlog

    monkeypatch.setattr(eventlog, "CHUNK", chunk)
    full = list(history[0])
    bounded = EventLog(maxlen=13)
    for event in full:
        bounded(event)
    kept = full[-13:]
    # the log's blocks start before its window: the frames see the 13 latest events only
    events = frames.events(bounded)
    assert events["seq"].tolist() == [e.seq for e in kept]
    assert events["job_id"].tolist() == [e.job_id for e in kept]
    for build in (frames.events, frames.attempts, frames.jobs, frames.depth, frames.metrics):
        pd.testing.assert_frame_equal(build(bounded), build(kept))
    assert frames.jobs(bounded)["job_id"].tolist() == list(dict.fromkeys(e.job_id for e in kept))
