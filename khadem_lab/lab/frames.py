"""Tables of a run: the event history as pandas DataFrames.

Every function takes ``source``, an :class:`~khadem_lab.events.EventLog` or any iterable of
:class:`~khadem_lab.events.QueueEvent`, and ``tz`` (a ``tzinfo`` or a name such as
``"Europe/Berlin"``; default UTC) in which the time columns are shown. Times are aware
``datetime64[us]`` (exact to the microsecond, like the queue's clock), durations are float seconds
(NaN when absent), ``kind``/``job_type``/``queue``/``driver``/``worker``/``outcome``/``final_state``
are categoricals (``worker``'s include ``""``, so ``fillna("")`` works). An EventLog's columns are
read as arrays straight from its blocks (:mod:`khadem_lab.eventlog`; the reader is
:mod:`khadem_lab.lab.columns`), strings converted once per distinct value, and worked on as
arrays: a million events take a fraction of a second. Other iterables of events are packed the
same way first. The counts of :func:`depth` and :func:`metrics`
are int32 (exact up to 2**31 - 1 events); ids, ``seq`` and ``attempt`` are int64 or strings.

Memory: a frame is built a column at a time, and what a column was made from is let go once it is
made (the events' cached columns, per-attempt lookups), so building one holds little more than the
frame itself (``tests/test_lab_frames_memory.py``; a 1,000,000-job run: ``bench/lab_memory.py``).

- :func:`events`: one row per event.
- :func:`attempts`: one row per attempt (``job_id`` + ``attempt``), in the order they began.
  A retry's ``wait`` counts from when the previous attempt gave the job back: its end, or the end
  of its lease if that ran out while the run went on (the run's own end is ``ended``).
- :func:`jobs`: one row per job, in the order they first appear.
- :func:`depth`: ready / delayed / in-progress / dead-lettered counts over time.
- :func:`metrics`: the counters of :class:`~khadem_lab.metrics.QueueMetrics` over time.
- :func:`retry_plan` / :func:`compare_plan`: when a job's attempts will run, computed from its
  retry strategy before anything runs, and checked against what did run.

A log kept with ``maxlen`` has lost its oldest events: counts in :func:`depth` then start from the
first event kept (they may go below zero), and jobs first seen mid-life have no ``dispatched``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from ..backoff import ExponentialJitter, RetryStrategy, delay_for
from ..clock import to_seconds, to_timestamp
from ..events import EventKind
from ..job import QueueJob
from ..simulation import DEFAULT_START
from .columns import _SLICE, TZ, Source, _category, _Columns, _columns, _in_order, _Strings, _times

__all__ = [
    "ATTEMPT_OUTCOMES",
    "FINAL_STATES",
    "KINDS",
    "attempts",
    "compare_plan",
    "depth",
    "events",
    "jobs",
    "metrics",
    "retry_plan",
]

#: Categories of ``events().kind``, in lifecycle order.
KINDS: tuple[str, ...] = tuple(k.value for k in EventKind)
#: Categories of ``attempts().outcome``.
ATTEMPT_OUTCOMES = ("completed", "failed", "timed_out", "stalled", "lease_expired", "lease_lost", "running")
#: Categories of ``jobs().final_state`` (``purged``: removed from the dead-letter queue).
FINAL_STATES = ("completed", "dead_lettered", "discarded", "pending", "running", "purged")

EVENT_COLUMNS = (
    "time",
    "seq",
    "kind",
    "job_id",
    "job_type",
    "queue",
    "attempt",
    "driver",
    "worker",
    "error",
    "available_at",
    "duration",
)
ATTEMPT_COLUMNS = (
    "job_id",
    "job_type",
    "queue",
    "attempt",
    "worker",
    "reserved",
    "started",
    "ended",
    "outcome",
    "error",
    "wait",
    "retry_delay",
)
JOB_COLUMNS = (
    "job_id",
    "job_type",
    "queue",
    "dispatched",
    "first_start",
    "done",
    "attempts",
    "final_state",
    "wait",
    "latency",
)
DEPTH_COLUMNS = ("time", "ready", "delayed", "in_progress", "dead_lettered")
METRIC_COLUMNS = (
    "time",
    "jobs_queued",
    "jobs_completed",
    "jobs_failed",
    "attempts_failed",
    "jobs_retried",
    "jobs_dead_lettered",
    "success_rate",
    "jobs_started",
    "leases_expired",
    "leases_lost",
)
PLAN_COLUMNS = ("attempt", "delay", "at", "outcome")
COMPARE_COLUMNS = ("attempt", "planned_at", "observed_at", "difference")

# Kind codes (positions in KINDS), for vectorised tests.
_K = {kind: code for code, kind in enumerate(EventKind)}
_DISPATCHED = _K[EventKind.DISPATCHED]
_RESERVED = _K[EventKind.RESERVED]
_STARTED = _K[EventKind.STARTED]
_COMPLETED = _K[EventKind.COMPLETED]
_FAILED = _K[EventKind.FAILED]
_RETRY = _K[EventKind.RETRY_SCHEDULED]
_DEAD = _K[EventKind.DEAD_LETTERED]
_DISCARDED = _K[EventKind.DISCARDED]
_EXPIRED = _K[EventKind.LEASE_EXPIRED]
_LOST = _K[EventKind.LEASE_LOST]
_REQUEUED = _K[EventKind.REQUEUED]
_PURGED = _K[EventKind.PURGED]
_ATTEMPT_KINDS = [_RESERVED, _STARTED, _COMPLETED, _FAILED, _EXPIRED, _LOST]
_ENDERS = [_COMPLETED, _FAILED, _EXPIRED, _LOST]
#: The dtype of the counts in :func:`depth` and :func:`metrics` (exact up to 2**31 - 1 events).
_COUNT = np.int32


# -- events -------------------------------------------------------------------------------------------
def events(source: Source, tz: TZ = None) -> pd.DataFrame:
    """One row per event, in order: time, seq, kind, job_id, job_type, queue, attempt, driver,
    worker, error, available_at, duration (float s; NaN when absent). ``worker``'s categories
    include ``""`` (unused), so that ``fillna("")`` works on the whole frame."""
    c = _columns(source)
    columns: dict[str, Any] = {"time": _times(c.t, tz)}
    c.forget("t")  # each column's source is let go once the column is made
    columns["seq"] = c.seq
    columns["kind"] = pd.Categorical.from_codes(c.kind, categories=pd.Index(KINDS, dtype="str"))
    columns["job_id"] = c.job.strings()
    c.forget("job", "kind")
    for field in ("job_type", "queue"):
        columns[field] = c.strings(field).category()
    columns["attempt"] = c.attempt.astype(np.int64)
    columns["driver"] = c.strings("driver").category()
    columns["worker"] = c.strings("worker").category(extra=("",))
    columns["error"] = c.strings("error").strings()
    columns["available_at"] = _times(c.avail, tz)
    c.forget("avail")
    columns["duration"] = c.duration
    return pd.DataFrame(columns, copy=False)  # the arrays are ours: no second copy of a million rows


# -- attempts -----------------------------------------------------------------------------------------
def attempts(source: Source, tz: TZ = None) -> pd.DataFrame:
    """One row per attempt, in the order they began (key: ``job_id`` + ``attempt``).

    ``reserved``/``started``/``ended`` are times (``ended`` NaT while running); ``outcome`` is
    completed, failed, timed_out (``JobTimeoutError``), stalled (``JobStalledError``),
    lease_expired (its worker vanished), lease_lost (it ended after its delivery was taken away)
    or running; ``error`` the failure's text; ``wait`` (s) is from dispatch to start for the first
    attempt, for the others from when the previous attempt gave the job back (its end, or its
    lease's end if the run outlived its lease) to start; ``retry_delay`` (s) the delay scheduled
    after this attempt (NaN if none).
    """
    return _attempts(_columns(source), tz)


def _attempt_rows(c: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """The attempts, in the order they began: each one's key (:attr:`_Columns.attempt_keys`) and
    the index of its first event."""
    in_attempt = c.is_kind(*_ATTEMPT_KINDS)
    in_attempt &= c.attempt >= 1
    idx = np.flatnonzero(in_attempt)
    del in_attempt
    codes, row_keys = pd.factorize(c.attempt_keys[idx])  # in order of first appearance
    first_event = np.empty(len(row_keys), dtype=np.intp)
    first_event[codes[::-1]] = idx[::-1]  # reversed: the first event is written last
    return np.asarray(row_keys, dtype=np.int64), first_event


def _take(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values[at]`` as floats, NaN where ``at`` is -1."""
    out = np.full(len(at), np.nan)
    found = at >= 0
    out[found] = values[at[found]]
    return out


def _lookup(row_of: np.ndarray, n: int, mask: np.ndarray, *, last: bool = False) -> np.ndarray:
    """For each of ``n`` rows, the index of its first (or last) event selected by ``mask``, given
    each event's row (``row_of``, -1: none); -1 where no event is selected."""
    sel = np.flatnonzero(mask)
    rows = row_of[sel]
    keep = rows >= 0
    rows, sel = rows[keep], sel[keep]
    at = np.full(n, -1, dtype=np.intp)
    if last:
        at[rows] = sel  # the last write wins
    else:
        at[rows[::-1]] = sel[::-1]
    return at


def _attempts(c: _Columns, tz: TZ) -> pd.DataFrame:
    """The attempts frame. Each column is finished before the next one starts, and what it needed
    is let go: the peak stays near the events' own columns plus a few per-attempt arrays."""
    row_keys, first_event = _attempt_rows(c)
    n = len(row_keys)
    position = pd.Index(row_keys)
    row_of = np.empty(c.n, dtype=np.int32 if n < 1 << 31 else np.int64)  # each event's row, or -1
    keys = c.attempt_keys
    for start in range(0, c.n, _SLICE):
        row_of[start : start + _SLICE] = position.get_indexer(keys[start : start + _SLICE])
    previous = position.get_indexer(row_keys - 1)  # the attempt before, in the same generation
    del position, row_keys, keys
    c.forget("attempt_keys")

    res_at = _lookup(row_of, n, c.kind == _RESERVED)
    start_at = _lookup(row_of, n, c.kind == _STARTED)
    workers = c.strings("worker")
    worker_at = np.where(res_at >= 0, res_at, start_at)
    worker = np.where(worker_at >= 0, workers.codes[worker_at], -1)
    worker_column = _Strings(worker, workers.values).category(extra=("",))
    reserved = _times(_take(c.t, res_at), tz)
    started = _take(c.t, start_at)
    del workers, worker_at, worker, res_at, start_at

    end_at = _lookup(row_of, n, c.is_kind(*_ENDERS), last=True)
    final_at = _lookup(row_of, n, c.is_kind(_DEAD, _DISCARDED))
    has_end = end_at >= 0
    only_final = ~has_end & (final_at >= 0)  # dead-lettered or discarded without an end event
    end_kind = np.where(has_end, c.kind[end_at], -1)
    ended = _take(c.t, end_at)
    ended[only_final] = c.t[final_at[only_final]]

    # the error's text, as a code into errors.values (-1: none)
    errors = c.strings("error")
    error = np.full(n, -1, dtype=np.int32)
    error[has_end] = errors.codes[end_at[has_end]]
    error[only_final] = errors.codes[final_at[only_final]]
    error[end_kind == _EXPIRED] = -1
    del end_at, final_at, has_end
    error_names = pd.Series(errors.values, dtype="str")
    timed_out = np.append(error_names.str.startswith("JobTimeoutError").fillna(False).to_numpy(bool), False)
    stalled = np.append(error_names.str.startswith("JobStalledError").fillna(False).to_numpy(bool), False)
    code = ATTEMPT_OUTCOMES.index
    outcome = np.full(n, code("running"), dtype=np.int8)
    outcome[end_kind == _COMPLETED] = code("completed")
    failed = end_kind == _FAILED
    outcome[failed] = code("failed")
    outcome[failed & timed_out[error]] = code("timed_out")
    outcome[failed & stalled[error]] = code("stalled")
    outcome[end_kind == _EXPIRED] = code("lease_expired")
    outcome[end_kind == _LOST] = code("lease_lost")
    outcome[only_final] = code("failed")
    error_column = _Strings(error, errors.values).strings()
    del errors, error, failed, end_kind, only_final

    # wait: attempt 1 since dispatch; later ones since the previous attempt gave the job back: its
    # first end (a lease that ran out under a live run ends the delivery; the run ends later)
    first_end_at = _lookup(row_of, n, c.is_kind(*_ENDERS))
    released = ended.copy()
    found = first_end_at >= 0
    released[found] = c.t[first_end_at[found]]
    del first_end_at
    job_code = c.job_code[first_event]
    attempt_no = c.attempt[first_event].astype(np.int64)
    since = np.full(n, np.nan)
    found = previous >= 0
    since[found] = released[previous[found]]
    del released, previous
    first = attempt_no == 1
    since[first] = c.job_first(c.kind == _DISPATCHED, c.t)[job_code[first]]
    wait = started - since
    del since, first, job_code
    retry_at = _lookup(row_of, n, c.kind == _RETRY)
    retry_delay = np.full(n, np.nan)
    found = retry_at >= 0
    retry_delay[found] = c.avail[retry_at[found]] - c.t[retry_at[found]]
    del retry_at, found, row_of
    c.forget("avail", "t", "kind", "attempt")

    return pd.DataFrame(
        {
            "job_id": c.job.strings(first_event),
            "job_type": c.strings("job_type").category(first_event),
            "queue": c.strings("queue").category(first_event),
            "attempt": attempt_no,
            "worker": worker_column,
            "reserved": reserved,
            "started": _times(started, tz),
            "ended": _times(ended, tz),
            "outcome": pd.Categorical.from_codes(outcome, categories=pd.Index(ATTEMPT_OUTCOMES, dtype="str")),
            "error": error_column,
            "wait": wait,
            "retry_delay": retry_delay,
        },
        copy=False,  # the arrays are ours: no second copy of a million rows
    )


# -- jobs ---------------------------------------------------------------------------------------------
_STATE_OF_KIND = np.full(len(KINDS), -1, dtype=np.int8)
for _kind, _state in (
    (_DISPATCHED, "pending"),
    (_RETRY, "pending"),
    (_EXPIRED, "pending"),
    (_REQUEUED, "pending"),
    (_RESERVED, "running"),
    (_STARTED, "running"),
    (_FAILED, "running"),
    (_COMPLETED, "completed"),
    (_DEAD, "dead_lettered"),
    (_DISCARDED, "discarded"),
    (_PURGED, "purged"),
):
    _STATE_OF_KIND[_kind] = FINAL_STATES.index(_state)
_DONE_STATES = [FINAL_STATES.index(s) for s in ("completed", "dead_lettered", "discarded", "purged")]


def _stale(c: _Columns) -> np.ndarray:
    """Events of runs whose delivery was taken away (a lease that expired or was lost): what they
    report later changes nothing for the job."""
    stale = c.is_kind(_EXPIRED, _LOST)
    if not stale.any():
        return stale
    keys = c.attempt_keys
    lost_keys = np.unique(keys[stale])
    return c.is_kind(_RESERVED, _STARTED, _COMPLETED, _FAILED) & np.isin(keys, lost_keys)


def jobs(source: Source, tz: TZ = None) -> pd.DataFrame:
    """One row per job, in the order they first appear: job_id, job_type, queue, dispatched,
    first_start, done (NaT while pending or running), attempts, final_state (completed,
    dead_lettered, discarded, pending, running; purged if removed from the dead letters), wait
    (s, dispatch to first start), latency (s, dispatch to done)."""
    c = _columns(source)
    first_event = _attempt_rows(c)[1]  # the attempts counted, not built: no attempts frame here
    n_attempts = np.bincount(c.job_code[first_event], minlength=c.n_jobs)
    del first_event
    c.forget("attempt_keys")
    dispatched = c.job_first(c.kind == _DISPATCHED, c.t)
    first_start = c.job_first(c.kind == _STARTED, c.t)
    state_code = _STATE_OF_KIND[c.kind] if c.n else np.empty(0, dtype=np.int8)
    counts = (state_code >= 0) & ~_stale(c)
    last = np.flatnonzero(counts)
    final = np.full(c.n_jobs, FINAL_STATES.index("pending"), dtype=np.int8)
    final_time = np.full(c.n_jobs, np.nan)
    final[c.job_code[last]] = state_code[last]  # later events overwrite earlier ones
    final_time[c.job_code[last]] = c.t[last]
    del state_code, counts, last
    c.forget("t", "kind", "attempt", "attempt_keys")
    done = np.where(np.isin(final, _DONE_STATES), final_time, np.nan)
    del final_time
    first = c.first_of_job
    return pd.DataFrame(
        {
            "job_id": c.job.strings(first),
            "job_type": c.strings("job_type").category(first),
            "queue": c.strings("queue").category(first),
            "dispatched": _times(dispatched, tz),
            "first_start": _times(first_start, tz),
            "done": _times(done, tz),
            "attempts": n_attempts.astype(np.int64),
            "final_state": pd.Categorical.from_codes(final, categories=pd.Index(FINAL_STATES, dtype="str")),
            "wait": first_start - dispatched,
            "latency": done - dispatched,
        },
        copy=False,  # the arrays are ours: no second copy of a million rows
    )


# -- depth --------------------------------------------------------------------------------------------
def depth(source: Source, tz: TZ = None, freq: str | pd.DateOffset | None = None) -> pd.DataFrame:
    """Jobs ready, delayed, in progress (reserved) and dead-lettered over time: one row per
    change, or with ``freq`` (any pandas offset, ``"1min"``) one per bin (last value, carried
    forward). A dispatched or retried job is delayed until its ``available_at``, then ready: that
    moment is a row even though no event marks it."""
    c = _columns(source)
    n = c.n
    d = np.zeros((n, 4), dtype=np.int8)  # ready, delayed, in_progress, dead_lettered
    k = c.kind
    enters = c.is_kind(_DISPATCHED, _RETRY, _REQUEUED)
    later = enters & (c.avail > c.t)
    d[enters & ~later, 0] += 1
    d[later, 1] += 1
    d[k == _RETRY, 2] -= 1
    d[k == _REQUEUED, 3] -= 1
    d[k == _RESERVED, 0] -= 1
    d[k == _RESERVED, 2] += 1
    completed = k == _COMPLETED
    lost = k == _LOST
    if lost.any():  # a completion after the lease was lost changes nothing (job codes only then)
        keys = c.attempt_keys
        completed &= ~np.isin(keys, np.unique(keys[lost]))
    d[completed, 2] -= 1
    del completed, lost
    d[k == _DEAD, 2] -= 1
    d[k == _DEAD, 3] += 1
    d[k == _DISCARDED, 2] -= 1
    d[k == _PURGED, 3] -= 1
    # A lease that ends on the last attempt dead-letters the job (DEAD_LETTERED follows at once):
    # it does not come back to the ready jobs.
    expired = np.flatnonzero(k == _EXPIRED)
    if len(expired):
        following = pd.Series(k).groupby(c.job_code).shift(-1).to_numpy()[expired]
        back = expired[following != _DEAD]
        d[back, 0] += 1
        d[expired, 2] -= 1
        d[expired[following == _DEAD], 2] += 0
        # the DEAD_LETTERED after an expired lease takes it from in_progress: already counted there
    # delayed -> ready when available_at comes (no event marks it): a row before the events of
    # the same instant, each +1 ready, -1 delayed
    ready_at = np.sort(c.avail[later])
    del enters, later
    at: np.ndarray | None = None
    order: np.ndarray | None = None
    if _in_order(c):  # the usual log, written as time went on: the new rows are inserted
        at = np.searchsorted(c.t, ready_at, side="left")
        times = np.insert(c.t, at, ready_at)
    else:  # events out of time order: sorted by (time, new rows first, seq)
        rank = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(len(ready_at), dtype=np.int8)])
        seqs = np.concatenate([c.seq, np.zeros(len(ready_at), dtype=np.int64)])
        times = np.concatenate([c.t, ready_at])
        order = np.lexsort((seqs, rank, times))
        del rank, seqs
        times = times[order]
    del c, k  # the events' columns: not needed any more
    # one row per instant (its last state), and only where something changed
    last_of_instant = np.append(times[1:] != times[:-1], True) if len(times) else np.zeros(0, dtype=bool)
    times = times[last_of_instant]
    counts = np.empty((len(times), 4), dtype=_COUNT)
    for column, ready in enumerate((1, -1, 0, 0)):  # one column at a time: millions of rows
        deltas = _merged(d[:, column], ready, len(ready_at), at, order)
        counts[:, column] = np.cumsum(deltas, dtype=_COUNT)[last_of_instant]
    del d, deltas, last_of_instant
    if len(times):
        changed = np.ones(len(times), dtype=bool)
        changed[1:] = (counts[1:] != counts[:-1]).any(axis=1)
        times, counts = times[changed], counts[changed]
    frame = pd.DataFrame(counts, columns=list(DEPTH_COLUMNS[1:]), dtype=_COUNT, copy=False)
    frame.insert(0, "time", _times(times, tz))
    if freq is not None and len(frame):
        frame = frame.set_index("time").resample(freq).last().ffill().astype(_COUNT).reset_index()
    return frame


def _merged(
    deltas: np.ndarray, ready: int, count: int, at: np.ndarray | None, order: np.ndarray | None
) -> np.ndarray:
    """One :func:`depth` column's changes per event with ``count`` rows of ``ready`` (the delayed
    jobs becoming ready) put in place: inserted before positions ``at``, or appended and then
    sorted by ``order``."""
    if at is not None:
        return np.insert(deltas, at, ready)
    appended: np.ndarray = np.concatenate([deltas, np.full(count, ready, dtype=np.int8)])
    return appended[order]


# -- metrics ------------------------------------------------------------------------------------------
def metrics(source: Source, tz: TZ = None) -> pd.DataFrame:
    """The counters of :class:`~khadem_lab.metrics.QueueMetrics`, with the same definitions, over
    time (one row per instant where one changed): jobs_queued (dispatched), jobs_completed,
    jobs_failed (failed for good: dead-lettered or discarded), attempts_failed, jobs_retried,
    jobs_dead_lettered, success_rate (completed / (completed + failed for good); 1.0 until
    something finished), then jobs_started, leases_expired, leases_lost."""
    c = _columns(source)
    counted = np.isin(c.kind, np.concatenate(list(_METRIC_KINDS.values())))
    kinds = c.kind[counted]  # the events that change a counter: their kinds and times
    times = c.t[counted]
    del counted, c  # the events' columns: not needed any more
    last_of_instant = np.append(times[1:] != times[:-1], True) if len(times) else np.zeros(0, dtype=bool)
    times = times[last_of_instant]
    running = np.empty(len(kinds), dtype=_COUNT)
    counts = {}
    for name, codes in _METRIC_KINDS.items():  # one column at a time: millions of rows
        np.cumsum(np.isin(kinds, codes), dtype=_COUNT, out=running)
        counts[name] = running[last_of_instant]
    del kinds, running, last_of_instant
    completed, finished = counts["jobs_completed"], counts["jobs_completed"] + counts["jobs_failed"]
    rate = np.divide(completed, finished, out=np.ones(len(finished)), where=finished > 0)
    del finished
    columns: dict[str, Any] = {"time": _times(times, tz), **counts, "success_rate": rate}
    # built in its final column order, without a copy: a long run's metrics are millions of rows
    return pd.DataFrame({name: columns[name] for name in METRIC_COLUMNS}, copy=False)


#: The event kinds each counter of :func:`metrics` counts.
_METRIC_KINDS = {
    "jobs_queued": np.array([_DISPATCHED], dtype=np.int8),
    "jobs_completed": np.array([_COMPLETED], dtype=np.int8),
    "jobs_failed": np.array([_DEAD, _DISCARDED], dtype=np.int8),
    "attempts_failed": np.array([_FAILED], dtype=np.int8),
    "jobs_retried": np.array([_RETRY], dtype=np.int8),
    "jobs_dead_lettered": np.array([_DEAD], dtype=np.int8),
    "jobs_started": np.array([_STARTED], dtype=np.int8),
    "leases_expired": np.array([_EXPIRED], dtype=np.int8),
    "leases_lost": np.array([_LOST], dtype=np.int8),
}


# -- retry plans ----------------------------------------------------------------------------------------
def retry_plan(
    job: QueueJob | type[QueueJob],
    failures: int | None = None,
    *,
    seed: int | None = None,
    start: datetime | None = None,
    tz: TZ = None,
    duration: timedelta | float = 0.0,
) -> pd.DataFrame:
    """When ``job``'s attempts will run, from its ``retry_delay`` and ``max_retries``, before
    anything runs.

    One row per attempt (attempt, delay: seconds waited before it, at: when it runs, outcome:
    failed or completed) if the first ``failures`` attempts fail (default: every one), then a
    final row (attempt <NA>) saying how the job ends: ``dead_lettered`` at the last failure, or
    ``completed``. ``start``: when attempt 1 runs (default: a simulation's default start);
    ``duration``: how long each attempt runs before it fails (default 0). A jittered strategy
    (:class:`~khadem_lab.backoff.ExponentialJitter`) is drawn as a fresh copy seeded with ``seed``
    (default: its own seed), as a run of this job alone draws it.
    """
    max_attempts = int(job.max_retries) + 1 if job.should_retry else 1
    failing = max_attempts if failures is None else max(0, int(failures))
    strategy: timedelta | float | RetryStrategy = job.retry_delay
    if isinstance(strategy, ExponentialJitter):
        strategy = replace(strategy, seed=strategy.seed if seed is None else seed)
    now = to_timestamp(start if start is not None else DEFAULT_START)
    run_for = to_seconds(duration)
    numbers: list[Any] = []
    delays: list[float] = []
    times: list[float] = []
    outcomes: list[str] = []
    delay = 0.0
    for attempt in range(1, max_attempts + 1):
        now += delay
        numbers.append(attempt)
        delays.append(delay)
        times.append(now)
        if attempt > failing:
            outcomes.append("completed")
            break
        outcomes.append("failed")
        if attempt < max_attempts:
            delay = delay_for(strategy, attempt)
            now += run_for
    ended_at = times[-1] + run_for
    numbers.append(pd.NA)
    delays.append(np.nan)
    times.append(ended_at)
    outcomes.append("completed" if outcomes[-1] == "completed" else "dead_lettered")
    return pd.DataFrame(
        {
            "attempt": pd.array(numbers, dtype="Int64"),
            "delay": np.array(delays, dtype=np.float64),
            "at": _times(np.array(times), tz),
            "outcome": _category(outcomes, ("failed", "completed", "dead_lettered")),
        }
    )


def compare_plan(plan: pd.DataFrame, attempts_frame: pd.DataFrame, job_id: str | None = None) -> pd.DataFrame:
    """A :func:`retry_plan` next to what ran (:func:`attempts` of one job; ``job_id`` picks it if
    the frame has several): attempt, planned_at, observed_at (when it started; NaT if it did not
    run), difference (float s, observed - planned)."""
    observed = attempts_frame
    ids = observed["job_id"].unique()
    if job_id is not None:
        observed = observed[observed["job_id"] == job_id]
    elif len(ids) > 1:
        raise ValueError(f"the attempts frame holds {len(ids)} jobs; pass job_id= to pick one")
    planned = plan[plan["attempt"].notna()]
    left = pd.DataFrame(
        {"attempt": planned["attempt"].astype(np.int64).to_numpy(), "planned_at": planned["at"].to_numpy()}
    )
    left["planned_at"] = planned["at"].reset_index(drop=True)
    right = pd.DataFrame({"attempt": observed["attempt"].to_numpy(), "observed_at": observed["started"]})
    right = right.reset_index(drop=True)
    if len(right):
        right["observed_at"] = right["observed_at"].dt.tz_convert(left["planned_at"].dt.tz)
    merged = left.merge(right, on="attempt", how="outer", sort=True)
    difference = (merged["observed_at"] - merged["planned_at"]).dt.total_seconds()
    merged["difference"] = difference.astype(np.float64)
    return merged[list(COMPARE_COLUMNS)]
