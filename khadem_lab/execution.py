"""Running one reserved job: the single path every driver and worker goes through.

reserve (done by the caller) -> started -> handle() under the job's timeout -> completed (ack), or
failed -> retry scheduled (release) / dead-lettered (bury) / discarded (use_dlq off).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .backoff import delay_for
from .errors import (
    JobStalledError,
    JobTimeoutError,
    PermanentFailure,
    SerializationError,
    UnregisteredJobError,
)
from .events import EventKind
from .job import QueueJob
from .records import JobRecord, JobStatus
from .serialization import decode_job
from .watchdog import Attempts, Preempted, Stall, error_where, stall_caused

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver

log = logging.getLogger(__name__)

OnJobStart = Callable[[QueueJob], Any]
OnJobComplete = Callable[[QueueJob, Any], Any]
OnJobError = Callable[[QueueJob, BaseException, str], Any]
OnError = Callable[[BaseException, str], Any]


class Outcome(StrEnum):
    """What became of one run."""

    COMPLETED = "completed"
    RETRY = "retry"
    DEAD = "dead"  # dead-lettered, or discarded with use_dlq off
    LEASE_LOST = "lease_lost"  # failed after its lease ran out and another delivery took the job

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Hooks:
    """The spec's worker callbacks. Each may be a plain function or a coroutine function.

    ``on_job_error`` is called once a job has failed for good (after its last attempt);
    ``on_error`` for errors outside job code (storage, a broken callback).
    """

    on_job_start: OnJobStart | None = None
    on_job_complete: OnJobComplete | None = None
    on_job_error: OnJobError | None = None
    on_error: OnError | None = None
    #: Called once per error reported (a worker counts them in ``WorkerStats.errors``).
    count_error: Callable[[], None] | None = None


NO_HOOKS = Hooks()


async def call_hook(hooks: Hooks, hook: Callable[..., Any] | None, *args: Any) -> None:
    """Call a callback; a failing callback is reported to ``on_error`` (or logged), never raised."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        await report_error(hooks, exc)


async def report_error(hooks: Hooks, error: BaseException) -> None:
    """Count a worker-level error (a failed callback, storage trouble) and hand it to
    ``on_error``, or log it if there is none."""
    if hooks.count_error is not None:
        hooks.count_error()
    stack = "".join(traceback.format_exception(error))
    if hooks.on_error is None:
        log.error("queue worker error: %s", stack)
        return
    try:
        result = hooks.on_error(error, stack)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("on_error callback failed while reporting %r", error)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


_STARTED, _COMPLETED = EventKind.STARTED, EventKind.COMPLETED  # module constants: no enum lookups
_COMPLETED_OUTCOME = Outcome.COMPLETED


async def execute(
    driver: BaseQueueDriver,
    record: JobRecord,
    *,
    worker: str | None,
    hooks: Hooks = NO_HOOKS,
    deferred_acks: list[JobRecord] | None = None,
    task: asyncio.Task[Any] | None = None,
) -> Outcome:
    """Run the reserved ``record`` once and settle it. Storage errors propagate to the worker.

    With ``deferred_acks`` (a prefetching worker), a completed job is appended there instead of
    acked now; the worker acks them together (:meth:`BaseQueueDriver.settle_acks`). ``task``: the
    task running this (a worker's slot knows it; looked up if not given)."""
    clock = driver.clock
    # The attempt this task runs, for the stall watchdog of a simulation (None on other clocks).
    attempts: Attempts | None = getattr(clock, "attempts", None)
    if attempts is not None:
        if task is None:
            task = asyncio.current_task()
        attempts.running[task] = record  # type: ignore[index]
        attempts.started += 1
    try:
        job = record.job
        if job is None:
            try:
                job = decode_job(record.type, record.payload, driver.registry)
            except (UnregisteredJobError, SerializationError) as exc:
                await report_error(hooks, exc)
                return await _fail_for_good(driver, record, exc, worker, hooks, job=None)
        # The attempt number for `job.attempt` (object.__setattr__: frozen dataclass jobs too). A
        # slots class without the attribute simply cannot see it. (try/except, not contextlib.suppress,
        # on this hot path.)
        try:  # noqa: SIM105
            object.__setattr__(job, "_attempt", record.attempts)
        except AttributeError:
            pass
        if hooks.on_job_start is not None:  # checked here as well: no coroutine per job without a hook
            await call_hook(hooks, hooks.on_job_start, job)
        started = clock.time()
        driver.emit(_STARTED, record, worker=worker, time=started)
        error: BaseException
        try:
            if record.timeout is None:
                result = await job.handle()
            else:
                deadline = asyncio.timeout(record.timeout)
                try:
                    async with deadline:
                        result = await job.handle()
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise JobTimeoutError(
                        f"{record.display_name} ran past its timeout of {record.timeout:g} s "
                        "and was cancelled"
                    ) from None
        except Exception as exc:
            error = exc
        except (asyncio.CancelledError, Preempted) as exc:
            error = _stopped(exc, clock, record)  # stopped by a simulation's stall watchdog (or raise)
        else:
            finished = clock.time()
            if deferred_acks is not None:
                deferred_acks.append(record)
                acked: bool | None = True
            elif driver.ack_now is not None:  # storage that never waits: no coroutine
                acked = driver.ack_now(record)
            else:
                acked = await driver.ack_record(record)
            driver.emit(_COMPLETED, record, worker=worker, duration=finished - started, time=finished)
            if acked is False:
                driver.emit(EventKind.LEASE_LOST, record, worker=worker, time=finished)
            if hooks.on_job_complete is not None:
                await call_hook(hooks, hooks.on_job_complete, job, result)
            return _COMPLETED_OUTCOME

        now = clock.time()
        text = describe(error)
        driver.emit(EventKind.FAILED, record, worker=worker, error=text, duration=now - started, time=now)
        retry = (
            not isinstance(error, PermanentFailure)
            and bool(job.should_retry)
            and record.attempts < record.max_attempts
        )
        delay = delay_for(job.retry_delay, record.attempts) if retry else 0.0
        if retry and delay <= 0:
            stall: Stall | None = getattr(clock, "stall", None)
            if stall is not None and stall.is_retry_of(record.id):  # retried at once, over and over
                error = _retried_at_once(stall, record, text)
                retry = False
        if not retry:
            return await _fail_for_good(driver, record, error, worker, hooks, job=job)
        record.available_at = now + delay
        record.last_error = text
        record.error_type = type(error).__name__
        record.status = JobStatus.PENDING
        record.reserved_until = None
        record.reserved_by = None
        if await driver.release_record(record) is False:
            driver.emit(EventKind.LEASE_LOST, record, worker=worker, error=text, time=now)
            return Outcome.LEASE_LOST
        driver.emit(
            EventKind.RETRY_SCHEDULED,
            record,
            worker=worker,
            error=text,
            available_at=record.available_at,
            time=now,
        )
        driver.notify(record.queue, record.available_at)
        return Outcome.RETRY
    finally:
        if attempts is not None:
            del attempts.running[task]  # type: ignore[arg-type]


def _stopped(error: BaseException, clock: Any, record: JobRecord) -> JobStalledError:
    """The attempt was cancelled or preempted: by the stall watchdog (then it fails, like a
    timeout, and the stall names it), or for another reason (then ``error`` goes on up)."""
    stall: Stall | None = getattr(clock, "stall", None)
    if stall is None or not stall_caused(error, stall):
        raise error
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    stall.where = stall.where or error_where(error)
    where = f" at {stall.where}" if stall.where else ""
    if stall.kind == "interrupt":
        stall.stopped.append(f"{record.describe()} was interrupted{where}; the attempt counts as failed")
        return JobStalledError(f"{record.display_name} was interrupted (Ctrl-C){where}")
    stall.stopped.append(
        f"{record.describe()} kept virtual time from moving{where}; it was stopped and the attempt "
        "counts as failed, like a timeout. A job must wait on the clock (`await asyncio.sleep(...)`) "
        "to let time pass"
    )
    return JobStalledError(
        f"{record.display_name} held virtual time still longer than the simulation's stall_timeout"
        f"{where} and was stopped"
    )


def _retried_at_once(stall: Stall, record: JobRecord, text: str) -> JobStalledError:
    stall.stopped.append(
        f"{record.display_name} (job {record.id}) failed and was retried at once, with no delay, "
        f"again and again (last error: {text}); it was dead-lettered. Give it a retry delay, or "
        "fewer retries"
    )
    return JobStalledError(
        f"{record.display_name} was retried with no delay again and again at one virtual instant "
        f"(last error: {text}); dead-lettered to let the simulation go on"
    )


async def _fail_for_good(
    driver: BaseQueueDriver,
    record: JobRecord,
    error: BaseException,
    worker: str | None,
    hooks: Hooks,
    *,
    job: QueueJob | None,
) -> Outcome:
    now = driver.clock.time()
    text = describe(error)
    record.last_error = text
    record.error_type = type(error).__name__
    record.failed_at = now
    if driver.config.use_dlq:
        record.status = JobStatus.DEAD
        settled = await driver.bury_record(record)
        kind = EventKind.DEAD_LETTERED
    else:
        settled = await driver.ack_record(record)
        kind = EventKind.DISCARDED
    if settled is False:  # another delivery holds the job now: it is not failed for good
        driver.emit(EventKind.LEASE_LOST, record, worker=worker, error=text, time=now)
        return Outcome.LEASE_LOST
    driver.emit(kind, record, worker=worker, error=text, time=now)
    if job is not None:
        stack = "".join(traceback.format_exception(error))
        await call_hook(hooks, hooks.on_job_error, job, error, stack)
    return Outcome.DEAD
