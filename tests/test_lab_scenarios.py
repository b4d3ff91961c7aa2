"""khadem_lab.lab.scenarios: seeded workloads, failure injection, reproducible runs."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

pd = pytest.importorskip("pandas")

from khadem_lab import ExponentialJitter  # noqa: E402
from khadem_lab.lab import frames  # noqa: E402
from khadem_lab.lab.scenarios import (  # noqa: E402
    Burst,
    Daily,
    ExponentialTime,
    FixedTime,
    Flaky,
    JobType,
    LogNormalTime,
    Outage,
    Poisson,
    Scenario,
    SlowCalls,
    WorkerCrash,
)

BUSY = Scenario(
    arrivals=[Poisson(per_minute=20), Burst(at=timedelta(minutes=5), count=40, spread=timedelta(seconds=20))],
    job_types=[
        JobType("Email", 3, ExponentialTime(2), timeout=timedelta(seconds=20)),
        JobType("Report", 1, LogNormalTime(8), retry_delay=ExponentialJitter(base=5, seed=1)),
    ],
    failures=[Flaky(0.1), Outage(timedelta(minutes=10), timedelta(minutes=1)), SlowCalls(0.05, 60)],
    workers=2,
    concurrency=2,
    seed=11,
)


def test_same_seed_same_frames_row_for_row() -> None:
    first, second = BUSY.run(until=timedelta(minutes=20)), BUSY.run(until=timedelta(minutes=20))
    assert len(first.log) > 500
    for name in ("events", "attempts", "jobs", "depth", "metrics"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    other = Scenario(**{**BUSY.__dict__, "seed": 12}).run(until=timedelta(minutes=20))
    assert not first.jobs["job_type"].equals(other.jobs["job_type"]) or len(first.jobs) != len(other.jobs)


def test_failures_show_in_the_frames_and_metrics_match_the_driver() -> None:
    result = BUSY.run(until=timedelta(minutes=20))
    outcomes = set(result.attempts["outcome"])
    assert {"completed", "failed", "timed_out"} <= outcomes
    outage = result.attempts[result.attempts["error"].str.startswith("ServiceUnavailable: outage", na=False)]
    start = BUSY.start + timedelta(minutes=10)
    assert len(outage)
    assert outage["started"].between(start, start + timedelta(minutes=1), inclusive="left").all()
    last = result.metrics.iloc[-1]
    for column in frames.METRIC_COLUMNS[1:]:
        assert last[column] == result.stats["metrics"][column], column
    assert result.arrivals == last["jobs_queued"]


def crash_scenario(*arrivals: Burst) -> Scenario:
    return Scenario(
        arrivals=[Burst(at=0, count=1), *arrivals],
        job_types=[JobType("Long", service=FixedTime(120))],
        failures=[WorkerCrash(at=timedelta(seconds=30), worker=1)],
        workers=2,
        lease_time=timedelta(minutes=1),
    )


def test_a_crashed_worker_s_job_comes_back_after_its_lease() -> None:
    # worker 1 crashes at 30 s holding job 1 (leased at 0 s for a minute, renewed by its heartbeat
    # at 20 s until 80 s); idle worker 2 takes it back the instant that lease ends (80 s), runs it
    # (2 minutes), then job 2 (arrived at 90 s)
    result = crash_scenario(Burst(at=90, count=1)).run(until=timedelta(minutes=10))
    one = result.attempts[result.attempts["job_id"] == "1"]
    assert one["outcome"].tolist() == ["lease_expired", "completed"]
    assert one["worker"].tolist() == ["worker-1", "worker-2"]
    t0 = pd.Timestamp(result.scenario.start)
    events = result.events
    first = events[(events["job_id"] == "1") & (events["attempt"] == 1)]
    renewed = first[first["kind"] == "lease_renewed"]
    assert renewed["time"].tolist() == [t0 + pd.Timedelta(seconds=20)]
    assert one["ended"].iloc[0] == t0 + pd.Timedelta(seconds=80)
    assert one["started"].iloc[1] == t0 + pd.Timedelta(seconds=80)
    two = result.attempts[result.attempts["job_id"] == "2"]
    assert two["started"].tolist() == [t0 + pd.Timedelta(seconds=200)]
    assert result.jobs["final_state"].tolist() == ["completed", "completed"]


def test_an_idle_worker_takes_back_a_crashed_worker_s_job_when_its_lease_ends() -> None:
    result = crash_scenario().run(until=timedelta(minutes=10))
    assert result.attempts["outcome"].tolist() == ["lease_expired", "completed"]


def test_arrival_patterns_are_seeded() -> None:
    rng = random.Random(1)
    times = Poisson(per_minute=60).times(rng, 0.0, 3600.0)
    assert 3300 < len(times) < 3900 and times == sorted(times)
    assert Burst(at=10, count=4, spread=8).times(rng, 0.0, 100.0) == [10.0, 12.0, 14.0, 16.0]
    night_and_day = Daily([0.0] * 12 + [600.0] * 12)  # nothing before noon UTC
    start = pd.Timestamp("2024-01-01 00:00", tz="UTC").timestamp()
    daily = night_and_day.times(random.Random(2), start, 86400.0)
    assert min(daily) >= 12 * 3600 and 7000 < len(daily) < 7400
    with pytest.raises(ValueError):
        Daily([1.0])


def test_sqlite_driver_and_progress_bar() -> None:
    scenario = Scenario(arrivals=[Poisson(per_minute=30)], driver="sqlite", seed=3)
    result = scenario.run(until=timedelta(minutes=5), progress=True, chunks=5)
    memory = Scenario(arrivals=[Poisson(per_minute=30)], seed=3).run(until=timedelta(minutes=5))
    assert result.stats["driver_name"] == "sqlite"
    assert result.jobs["final_state"].tolist() == memory.jobs["final_state"].tolist()
    assert result.attempts["started"].tolist() == memory.attempts["started"].tolist()
