"""khadem_lab.lab.frames on long runs: narrow dtypes that keep every value, and memory while building.

The frames of a 1,000,000-job run are measured by ``bench/lab_memory.py``; these tests keep the
two properties that make them fit: the counts are int32 with the same values as a plain count of
the events, and building a frame holds little more than the frame itself (tracemalloc bytes, which
do not depend on the machine's speed or load).
"""

from __future__ import annotations

import gc
import tracemalloc
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from khadem_lab import EventLog  # noqa: E402
from khadem_lab.events import EventKind, QueueEvent  # noqa: E402
from khadem_lab.lab import frames  # noqa: E402
from khadem_lab.lab.scenarios import (  # noqa: E402
    Burst,
    ExponentialTime,
    Flaky,
    JobType,
    Outage,
    Poisson,
    Scenario,
    SlowCalls,
)

BUILDERS = (frames.events, frames.attempts, frames.jobs, frames.depth, frames.metrics)

#: What each counter of frames.metrics counts, written out plainly (the reference).
COUNTED = {
    "jobs_queued": {EventKind.DISPATCHED},
    "jobs_completed": {EventKind.COMPLETED},
    "jobs_failed": {EventKind.DEAD_LETTERED, EventKind.DISCARDED},
    "attempts_failed": {EventKind.FAILED},
    "jobs_retried": {EventKind.RETRY_SCHEDULED},
    "jobs_dead_lettered": {EventKind.DEAD_LETTERED},
    "jobs_started": {EventKind.STARTED},
    "leases_expired": {EventKind.LEASE_EXPIRED},
    "leases_lost": {EventKind.LEASE_LOST},
}


@pytest.fixture(scope="module")
def busy_log() -> EventLog:
    """A run with retries, timeouts, an outage and dead letters."""
    scenario = Scenario(
        arrivals=[
            Poisson(per_minute=30),
            Burst(at=timedelta(minutes=3), count=60, spread=timedelta(seconds=10)),
        ],
        job_types=[
            JobType("Email", 3, ExponentialTime(2), timeout=timedelta(seconds=20)),
            JobType("Report", 1, ExponentialTime(8), max_retries=1, retry_delay=timedelta(seconds=45)),
        ],
        failures=[Flaky(0.15), Outage(timedelta(minutes=6), timedelta(minutes=1)), SlowCalls(0.05, 60)],
        workers=2,
        concurrency=2,
        seed=5,
    )
    return scenario.run(until=timedelta(minutes=12)).log


def test_metrics_counts_are_int32_with_the_values_of_a_plain_count(busy_log: EventLog) -> None:
    # Given the counters tallied one event at a time, the last value of each instant kept
    totals = dict.fromkeys(COUNTED, 0)
    rows: dict[float, dict[str, Any]] = {}
    for event in busy_log:
        counted = [name for name, kinds in COUNTED.items() if event.kind in kinds]
        for name in counted:
            totals[name] += 1
        if counted:
            done = totals["jobs_completed"] + totals["jobs_failed"]
            rate = totals["jobs_completed"] / done if done else 1.0
            rows[event.time] = {**totals, "success_rate": rate}
    # When the metrics frame is built
    metrics = frames.metrics(busy_log)
    # Then it has the same rows and values, the counts as int32
    assert metrics["jobs_dead_lettered"].iloc[-1] > 0 and metrics["attempts_failed"].iloc[-1] > 0
    expected = pd.DataFrame(list(rows.values()))
    micros = [round(t * 1e6) for t in rows]  # the nearest microsecond, as every time column
    expected.insert(0, "time", pd.to_datetime(micros, unit="us", utc=True).as_unit("us"))
    expected = expected[list(frames.METRIC_COLUMNS)]
    pd.testing.assert_frame_equal(metrics, expected, check_dtype=False)
    for name in COUNTED:
        assert metrics[name].dtype == np.int32, name
    assert metrics["success_rate"].dtype == np.float64


def test_depth_in_time_order_equals_the_sorted_merge(
    busy_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a log in time order, whose delayed jobs become ready between events
    depth = frames.depth(busy_log)
    assert (depth["delayed"] > 0).any()
    # When the same frame is made by the general path (every row sorted by time, new rows first, seq)
    monkeypatch.setattr(frames, "_in_order", lambda c: False)
    sorted_merge = frames.depth(busy_log)
    # Then the rows, values and dtypes are the same; the counts are int32, also resampled
    pd.testing.assert_frame_equal(depth, sorted_merge)
    assert set(depth.dtypes.iloc[1:]) == {np.dtype(np.int32)}
    resampled = frames.depth(busy_log, freq="1min")
    assert set(resampled.dtypes.iloc[1:]) == {np.dtype(np.int32)}
    assert resampled.iloc[-1, 1:].tolist() == depth.iloc[-1, 1:].tolist()


def test_times_are_exact_microseconds_in_any_time_zone(busy_log: EventLog) -> None:
    events = frames.events(busy_log, tz="Europe/Berlin")
    micros = events["time"].dt.tz_convert("UTC").dt.tz_localize(None).astype("int64").to_numpy()
    assert events["time"].dtype == pd.DatetimeTZDtype("us", "Europe/Berlin")
    assert micros.tolist() == [round(e.time * 1e6) for e in busy_log]
    assert events["available_at"].isna().tolist() == [e.available_at is None for e in busy_log]


def synthetic_log(jobs: int) -> EventLog:
    """``jobs`` jobs, one every 0.5 s, each run once for 2 s by one of 4 workers; one in ten fails
    its first attempt and is retried 30 s later. Built directly (no simulation): fast."""
    rows: list[tuple[Any, ...]] = []
    for i in range(jobs):
        t, job, job_type, worker = 1.7e9 + i * 0.5, str(i + 1), ("Work", "Mail")[i % 2], f"w{i % 4}"
        rows.append((t, EventKind.DISPATCHED, job, job_type, 0, None, None, t, None))
        attempt, start = 1, t + 0.25
        if i % 10 == 3:
            error = "ConnectionError: boom"
            rows.append((start, EventKind.RESERVED, job, job_type, 1, worker, None, None, None))
            rows.append((start, EventKind.STARTED, job, job_type, 1, worker, None, None, None))
            rows.append((start + 1, EventKind.FAILED, job, job_type, 1, worker, error, None, 1.0))
            retry = (start + 1, EventKind.RETRY_SCHEDULED, job, job_type, 1, worker, error, start + 31, None)
            rows.append(retry)
            attempt, start = 2, start + 31
        rows.append((start, EventKind.RESERVED, job, job_type, attempt, worker, None, None, None))
        rows.append((start, EventKind.STARTED, job, job_type, attempt, worker, None, None, None))
        rows.append((start + 2, EventKind.COMPLETED, job, job_type, attempt, worker, None, None, 2.0))
    rows.sort(key=lambda row: row[0])
    log = EventLog()
    log.extend(
        QueueEvent(t, seq, kind, job, job_type, "default", attempt, "memory", *rest)
        for seq, (t, kind, job, job_type, attempt, *rest) in enumerate(rows, 1)
    )
    return log


#: Bytes per event that building one frame may hold above the finished frame (measured: at most
#: about 50; before the frames were built column by column, 110 for attempts and jobs).
TRANSIENT_PER_EVENT = 64


def test_building_a_frame_holds_little_more_than_the_frame() -> None:
    # Given 20,000 jobs: 88,000 events
    log = synthetic_log(20_000)
    n = len(log)
    for build in BUILDERS:  # warm up: what pandas imports or caches on first use is not the frame's
        build(synthetic_log(50))
    kept = []
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        overall = 0
        for build in BUILDERS:
            # When each frame is built (and kept, as bench/lab_memory.py keeps all five)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            kept.append(build(log))
            gc.collect()
            after, peak = tracemalloc.get_traced_memory()
            overall = max(overall, peak - start)
            # Then the temporaries of building it stay under a fixed number of bytes per event
            assert peak - after <= TRANSIENT_PER_EVENT * n, (build.__name__, (peak - after) / n)
            assert after > before
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # and the peak of building all five is the five frames plus at most one frame's temporaries
    assert overall <= held + TRANSIENT_PER_EVENT * n
