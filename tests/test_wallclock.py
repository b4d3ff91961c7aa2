"""The wall-clock bridge: virtual time for the attached thread only, real time for every other one.

Real threads, a real `Simulation` and real IPython kernels; no mocks. Values read on an attached
thread are compared exactly with a fixed virtual time; values read elsewhere are compared with
real readings taken around them.
"""

from __future__ import annotations

import asyncio
import calendar
import concurrent.futures
import datetime as dtmod
import json
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from time import time as clock_alias  # a name bound before any attach: the scan must swap it
from typing import Any, TypeVar

import pytest

from khadem_lab import Simulation, wallclock

from .kernel import Kernel

T = TypeVar("T")

# The real objects, taken when this module is imported (no bridge is installed then). Kept in
# containers or as classes: the install scan swaps module globals that are real time functions.
TIME_NAMES = ("time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime")
REAL_TIME_FUNCTIONS = {name: getattr(time, name) for name in TIME_NAMES}
REAL_DATETIME, REAL_DATE = dtmod.datetime, dtmod.date
REAL_CLASS_METHODS = {
    "now": REAL_DATETIME.__dict__["now"],
    "utcnow": REAL_DATETIME.__dict__["utcnow"],
    "today": REAL_DATE.__dict__["today"],
}
REAL_MONOTONIC, REAL_PERF_COUNTER = time.monotonic, time.perf_counter

VIRTUAL = 1704099690.25  # 2024-01-01 09:01:30.25 UTC
VIRTUAL_UTC = datetime(2024, 1, 1, 9, 1, 30, 250000, tzinfo=UTC)
TEHRAN = timezone(timedelta(hours=3, minutes=30))


def fixed(seconds: float = VIRTUAL) -> Callable[[], float]:
    return lambda: seconds


def assert_process_unpatched() -> None:
    assert not wallclock.installed()
    for name, real in REAL_TIME_FUNCTIONS.items():
        assert getattr(time, name) is real, name
        assert isinstance(real, types.BuiltinFunctionType)
    assert dtmod.datetime is REAL_DATETIME and dtmod.date is REAL_DATE
    for name, descriptor in REAL_CLASS_METHODS.items():
        owner = REAL_DATE if name == "today" else REAL_DATETIME
        assert owner.__dict__[name] is descriptor, name
    assert globals()["clock_alias"] is REAL_TIME_FUNCTIONS["time"]
    assert globals()["datetime"] is REAL_DATETIME


@pytest.fixture(autouse=True)
def _unpatched_before_and_after() -> Iterator[None]:
    assert_process_unpatched()  # nothing left over from another test
    yield
    assert_process_unpatched()


class Helper:
    """A thread of our own (as a Simulation has one) that runs what we give it."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wallclock-test")
        self.ident: int = self._pool.submit(threading.get_ident).result()

    def call(self, fn: Callable[[], T]) -> T:
        return self._pool.submit(fn).result(timeout=10)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@contextmanager
def attached(now: Callable[[], float] | None = None) -> Iterator[Helper]:
    helper = Helper()
    detach = wallclock.attach(helper.ident, now or fixed())
    try:
        yield helper
    finally:
        detach()
        helper.close()


def read_everything() -> dict[str, Any]:
    """Every reading the bridge answers, plus the same names reached other ways."""
    return {
        "time": time.time(),
        "time_ns": time.time_ns(),
        "alias": clock_alias(),
        "now": datetime.now(),
        "now_utc": datetime.now(UTC),
        "now_tz": datetime.now(tz=TEHRAN),
        "module_now": dtmod.datetime.now(dtmod.UTC),
        "utcnow": datetime.utcnow(),
        "datetime_today": datetime.today(),
        "date_today": date.today(),
        "localtime": time.localtime(),
        "gmtime": time.gmtime(),
        "ctime": time.ctime(),
        "asctime": time.asctime(),
        "strftime": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


# -- on an attached thread --------------------------------------------------------------------------
def test_an_attached_thread_reads_exact_virtual_time_from_every_function() -> None:
    with attached() as helper:
        seen = helper.call(read_everything)
    local = REAL_DATETIME.fromtimestamp(VIRTUAL)  # naive local time at that instant, as now() gives
    assert seen == {
        "time": VIRTUAL,
        "time_ns": 1_704_099_690_250_000_000,
        "alias": VIRTUAL,
        "now": local,
        "now_utc": VIRTUAL_UTC,
        "now_tz": datetime(2024, 1, 1, 12, 31, 30, 250000, tzinfo=TEHRAN),
        "module_now": VIRTUAL_UTC,
        "utcnow": datetime(2024, 1, 1, 9, 1, 30, 250000),
        "datetime_today": local,
        "date_today": local.date(),
        "localtime": REAL_TIME_FUNCTIONS["localtime"](VIRTUAL),
        "gmtime": REAL_TIME_FUNCTIONS["gmtime"](VIRTUAL),
        "ctime": REAL_TIME_FUNCTIONS["ctime"](VIRTUAL),
        "asctime": REAL_TIME_FUNCTIONS["ctime"](VIRTUAL),
        "strftime": local.strftime("%Y-%m-%d %H:%M:%S"),
    }
    assert tuple(seen["gmtime"])[:6] == (2024, 1, 1, 9, 1, 30)
    # plain datetime/date values, not a subclass: pandas, json and pickle see what they expect
    for key in ("now", "now_utc", "utcnow", "datetime_today", "module_now"):
        assert type(seen[key]) is REAL_DATETIME
    assert type(seen["date_today"]) is REAL_DATE
    assert pickle.loads(pickle.dumps(seen["now_utc"])) == VIRTUAL_UTC


def test_naive_now_is_virtual_time_in_the_local_time_zone() -> None:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "KHD-3:30"  # a POSIX zone (UTC+3:30) that needs no tz database
    time.tzset()
    try:
        with attached() as helper:
            now, today, hour = helper.call(lambda: (datetime.now(), date.today(), time.strftime("%H:%M")))
            real_before = REAL_DATETIME.now()
            real_now = datetime.now()  # this thread: real local time, also in that zone
            real_after = REAL_DATETIME.now()
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert now == datetime(2024, 1, 1, 12, 31, 30, 250000)
    assert today == date(2024, 1, 1)
    assert hour == "12:31"
    assert real_before <= real_now <= real_after


def test_calls_with_a_time_argument_are_unchanged_on_an_attached_thread() -> None:
    moment = (2000, 2, 29, 12, 0, 0, 1, 60, 0)
    with attached() as helper:
        seen = helper.call(
            lambda: (
                time.localtime(0),
                time.gmtime(86400),
                time.ctime(0),
                time.asctime(moment),
                time.strftime("%Y-%m-%d", moment),
                datetime.fromtimestamp(0, UTC),
            )
        )
    assert seen == (
        REAL_TIME_FUNCTIONS["localtime"](0),
        REAL_TIME_FUNCTIONS["gmtime"](86400),
        REAL_TIME_FUNCTIONS["ctime"](0),
        "Tue Feb 29 12:00:00 2000",
        "2000-02-29",
        datetime(1970, 1, 1, tzinfo=UTC),
    )


def test_each_read_asks_the_source_again() -> None:
    moments = [VIRTUAL]
    with attached(lambda: moments[-1]) as helper:
        first = helper.call(time.time)
        moments.append(VIRTUAL + 3600)
        second = helper.call(lambda: datetime.now(UTC))
    assert first == VIRTUAL
    assert second == VIRTUAL_UTC + timedelta(hours=1)


def test_two_attached_threads_each_see_their_own_source() -> None:
    later = VIRTUAL + 86400 * 366  # 2025-01-01 09:01:30.25
    with attached(fixed(VIRTUAL)) as one, attached(fixed(later)) as two:
        assert wallclock.attached_threads() == {one.ident, two.ident}
        barrier = threading.Barrier(2)

        def read() -> tuple[float, datetime]:
            barrier.wait(timeout=10)  # both read at the same moment
            return time.time(), datetime.now(UTC)

        pending: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in "12"]
        threads = [
            threading.Thread(target=lambda h=h, f=f: f.set_result(h.call(read)))
            for h, f in zip((one, two), pending, strict=True)
        ]
        for thread in threads:
            thread.start()
        results = [f.result(timeout=10) for f in pending]
    assert results == [(VIRTUAL, VIRTUAL_UTC), (later, datetime(2025, 1, 1, 9, 1, 30, 250000, tzinfo=UTC))]


def test_attaching_an_attached_thread_again_stacks() -> None:
    helper = Helper()
    try:
        outer = wallclock.attach(helper.ident, fixed(VIRTUAL))
        inner = wallclock.attach(helper.ident, fixed(VIRTUAL + 60))
        assert helper.call(time.time) == VIRTUAL + 60
        inner()
        assert helper.call(time.time) == VIRTUAL
        assert wallclock.installed()
        outer()
    finally:
        helper.close()


def test_subclasses_of_datetime_keep_their_own_type() -> None:
    class Stamp(datetime):
        pass

    with attached() as helper:
        virtual = helper.call(lambda: (Stamp.now(UTC), Stamp.utcnow(), Stamp.today()))
        before = REAL_DATETIME.now(UTC)
        real = Stamp.now(UTC)
        after = REAL_DATETIME.now(UTC)
    assert [type(v) for v in virtual] == [Stamp, Stamp, Stamp]
    assert virtual[0] == VIRTUAL_UTC
    assert virtual[1] == datetime(2024, 1, 1, 9, 1, 30, 250000)
    assert type(real) is Stamp and before <= real <= after


# -- on every other thread ----------------------------------------------------------------------------
def read_with_bounds() -> tuple[dict[str, Any], float, float]:
    before = REAL_TIME_FUNCTIONS["time"]()
    seen = read_everything()
    after = REAL_TIME_FUNCTIONS["time"]()
    return seen, before, after


def assert_real(seen: dict[str, Any], before: float, after: float) -> None:
    """Each reading lies between two real readings taken around it (at the unit's resolution)."""
    lo, hi = REAL_DATETIME.fromtimestamp(before), REAL_DATETIME.fromtimestamp(after)
    lo_utc, hi_utc = REAL_DATETIME.fromtimestamp(before, UTC), REAL_DATETIME.fromtimestamp(after, UTC)
    assert before <= seen["time"] <= after
    assert before <= seen["alias"] <= after
    assert int(before * 1e6) - 1 <= seen["time_ns"] // 1000 <= int(after * 1e6) + 1
    assert lo <= seen["now"] <= hi and lo <= seen["datetime_today"] <= hi
    assert lo_utc <= seen["now_utc"] <= hi_utc and lo_utc <= seen["module_now"] <= hi_utc
    assert lo_utc <= seen["now_tz"] <= hi_utc
    assert lo_utc.replace(tzinfo=None) <= seen["utcnow"] <= hi_utc.replace(tzinfo=None)
    assert lo.date() <= seen["date_today"] <= hi.date()
    whole_seconds = range(int(before), int(after) + 1)
    assert time.mktime(seen["localtime"]) in whole_seconds
    assert calendar.timegm(seen["gmtime"]) in whole_seconds
    texts = {REAL_TIME_FUNCTIONS["ctime"](second) for second in whole_seconds}
    assert seen["ctime"] in texts and seen["asctime"] in texts
    stamp = REAL_DATETIME.strptime(seen["strftime"], "%Y-%m-%d %H:%M:%S")
    assert lo.replace(microsecond=0) <= stamp <= hi


def test_other_threads_keep_real_time_while_the_bridge_is_installed() -> None:
    with attached():
        assert wallclock.installed()
        assert time.time is not REAL_TIME_FUNCTIONS["time"]  # the bridge is really in place
        assert globals()["clock_alias"] is time.time  # the alias bound before attach was swapped
        assert_real(*read_with_bounds())  # this (main) thread
        other = concurrent.futures.ThreadPoolExecutor(1)
        try:
            assert_real(*other.submit(read_with_bounds).result(timeout=10))  # another thread
        finally:
            other.shutdown()
        # The classes themselves never change: isinstance, exact type checks and pickling as usual.
        assert datetime is REAL_DATETIME and dtmod.datetime is REAL_DATETIME
        value = datetime(2024, 5, 1, 12, 0)
        assert type(value) is dtmod.datetime and isinstance(value, dtmod.date)
        assert pickle.loads(pickle.dumps(value)) == value
        # interval clocks are never touched
        assert time.monotonic is REAL_MONOTONIC and time.perf_counter is REAL_PERF_COUNTER


def test_a_new_thread_that_gets_an_ended_threads_id_reads_real_time() -> None:
    release = threading.Event()
    ended = threading.Thread(target=release.wait)
    ended.start()
    assert ended.ident is not None
    got: list[tuple[int, float, float, float]] = []

    def read() -> None:
        before = REAL_TIME_FUNCTIONS["time"]()
        got.append((threading.get_ident(), time.time(), before, REAL_TIME_FUNCTIONS["time"]()))

    detach = wallclock.attach(ended.ident, fixed())  # attached while it runs, then it ends
    release.set()
    ended.join()
    try:
        for _ in range(2000):  # glibc soon hands a freed thread id out again
            reader = threading.Thread(target=read)
            reader.start()
            reader.join()
            ident, value, before, after = got.pop()
            if ident == ended.ident:
                assert before <= value <= after
                break
        else:
            raise AssertionError("no new thread got the ended thread's id in 2000 tries")
    finally:
        detach()


# -- installing and removing ----------------------------------------------------------------------------
def test_detach_restores_every_original_object_and_aliases_bound_meanwhile() -> None:
    probe = types.ModuleType("wallclock_probe")  # a module imported while the bridge is in place
    skipped = types.ModuleType("khadem_lab._wallclock_probe")  # one the scan must leave alone
    exec("from time import time, localtime as lt", vars(skipped))
    sys.modules[skipped.__name__] = skipped
    own = dict(vars(wallclock))  # the bridge's own module keeps its bridges and real objects
    try:
        with attached() as helper:
            assert globals()["clock_alias"] is time.time is not REAL_TIME_FUNCTIONS["time"]
            assert vars(skipped)["time"] is REAL_TIME_FUNCTIONS["time"]  # untouched
            assert globals()["datetime"] is REAL_DATETIME  # the class is never replaced
            exec("from time import time, gmtime as gm\nfrom datetime import datetime", vars(probe))
            sys.modules[probe.__name__] = probe
            assert vars(probe)["time"] is time.time  # picked the bridge up
            assert helper.call(vars(probe)["time"]) == VIRTUAL
            assert helper.call(lambda: vars(probe)["datetime"].now(UTC)) == VIRTUAL_UTC
        assert vars(probe)["time"] is REAL_TIME_FUNCTIONS["time"]
        assert vars(probe)["gm"] is REAL_TIME_FUNCTIONS["gmtime"]
        assert vars(skipped)["lt"] is REAL_TIME_FUNCTIONS["localtime"]
        assert all(vars(wallclock)[name] is value for name, value in own.items())
    finally:
        sys.modules.pop(probe.__name__, None)
        sys.modules.pop(skipped.__name__, None)


def test_installed_at_the_first_attach_removed_at_the_last_detach_which_is_idempotent() -> None:
    one, two = Helper(), Helper()
    try:
        detach_one = wallclock.attach(one.ident, fixed())
        detach_two = wallclock.attach(two.ident, fixed(VIRTUAL + 1))
        detach_one()
        detach_one()  # idempotent: does not take the second attachment's count
        assert wallclock.installed() and wallclock.attached_threads() == {two.ident}
        assert one.call(time.time) != VIRTUAL and two.call(time.time) == VIRTUAL + 1
        detach_two()
        detach_two()
        assert not wallclock.installed() and wallclock.attached_threads() == set()
    finally:
        one.close()
        two.close()
    with pytest.raises(TypeError, match="callable"):
        wallclock.attach(threading.get_ident(), VIRTUAL)  # type: ignore[arg-type]


def test_the_last_detach_may_come_from_another_thread() -> None:
    helper = Helper()
    try:
        detach = wallclock.attach(helper.ident, fixed())
        closer = threading.Thread(target=detach)
        closer.start()
        closer.join(timeout=10)
        assert not closer.is_alive()
        assert helper.call(time.time) != VIRTUAL
    finally:
        helper.close()


def test_attach_and_detach_from_many_threads_at_once_never_hang_or_leak() -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn() -> None:
        try:
            for i in range(15):
                with attached(fixed(VIRTUAL + i)) as helper:
                    assert helper.call(time.time) == VIRTUAL + i
                    assert helper.call(lambda: datetime.now(UTC)) == VIRTUAL_UTC + timedelta(seconds=i)
        except BaseException as error:
            errors.append(error)

    def watch() -> None:  # a bystander thread: always real time, whatever is being installed
        try:
            while not stop.is_set():
                before = REAL_TIME_FUNCTIONS["time"]()
                value, now = time.time(), datetime.now(UTC).timestamp()
                after = REAL_TIME_FUNCTIONS["time"]()
                assert before <= value <= after and before - 2e-6 <= now <= after + 2e-6
        except BaseException as error:
            errors.append(error)

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=churn) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    stop.set()
    watcher.join(timeout=10)
    assert not any(t.is_alive() for t in [*workers, watcher]), "attach/detach hung"
    assert errors == []


# -- through Simulation(wallclock=True) -------------------------------------------------------------------
def test_job_code_on_a_wallclock_simulation_reads_virtual_time_and_other_threads_do_not() -> None:
    start = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
    seen: list[tuple[datetime, float, date, datetime]] = []
    ticks: list[float] = []

    async def job() -> None:
        await asyncio.sleep(90)
        seen.append((datetime.now(UTC), time.time(), date.today(), datetime.now()))
        for _ in range(3000):  # keeps the loop thread busy for a while, in real time
            await asyncio.sleep(1)
            ticks.append(time.time())

    bystander: list[datetime] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            bystander.append(datetime.now())
            time.sleep(0.001)

    with Simulation(start, wallclock=True) as sim:
        sim.spawn(job())
        watcher = threading.Thread(target=watch)
        before = datetime.now()
        watcher.start()
        sim.advance(hours=1)
        stop.set()
        watcher.join(timeout=10)
        after = datetime.now()
    moment = start + timedelta(seconds=90)
    local = REAL_DATETIME.fromtimestamp(moment.timestamp())
    assert seen == [(moment, moment.timestamp(), date(2024, 1, 1), local)]
    assert ticks == [moment.timestamp() + k for k in range(1, 3001)]
    assert bystander, "the watching thread never ran"
    assert all(before <= reading <= after for reading in bystander)
    assert all(reading.year != 2024 for reading in bystander)


def test_two_wallclock_simulations_advanced_at_once_each_see_their_own_time() -> None:
    starts = [datetime(2024, 1, 1, 9, 0, tzinfo=UTC), datetime(2030, 6, 1, 0, 0, tzinfo=UTC)]
    seen: list[list[datetime]] = [[], []]

    async def job(out: list[datetime]) -> None:
        for _ in range(2000):
            await asyncio.sleep(1)
            out.append(datetime.now(UTC))

    sims = [Simulation(start, wallclock=True) for start in starts]
    try:
        for sim, out in zip(sims, seen, strict=True):
            sim.spawn(job(out))
        advancing = [threading.Thread(target=sim.advance, kwargs={"hours": 1}) for sim in sims]
        for thread in advancing:
            thread.start()
        for thread in advancing:
            thread.join(timeout=30)
    finally:
        closers = [threading.Thread(target=sim.close) for sim in sims]  # closed from other threads
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join(timeout=30)
    for start, out in zip(starts, seen, strict=True):
        assert out == [start + timedelta(seconds=k) for k in range(1, 2001)]


# -- in a real kernel ----------------------------------------------------------------------------------------
KERNEL_SETUP = """
import asyncio, json, threading, time, datetime as dtmod
from datetime import UTC, date, datetime, timedelta
from time import time as clock
from khadem_lab import Simulation, wallclock

REAL = (time.time, clock, dtmod.datetime.__dict__["now"], dtmod.date.__dict__["today"])

async def one_run(start, blocking=False):
    run_start = REAL[0]()
    sim = Simulation(start, wallclock=True)
    kernel_seen, thread_seen, job_seen = [], [], []
    stop = threading.Event()
    # The job waits, halfway, until the learner's thread (and task, when the cell awaits) has read
    # the clock during the advance: the overlap is made sure of, not left to how threads race.
    advancing, task_read, thread_read = threading.Event(), threading.Event(), threading.Event()

    async def learners_task():  # on the kernel's own loop, as a learner would write it
        while not stop.is_set():
            kernel_seen.append((datetime.now(), clock()))
            if advancing.is_set():
                task_read.set()
            await asyncio.sleep(0.002)

    def learners_thread():
        while not stop.is_set():
            thread_seen.append(datetime.now(UTC))
            if advancing.is_set():
                thread_read.set()
            time.sleep(0.002)

    async def job():
        for k in range(3600):
            await asyncio.sleep(1)
            job_seen.append((datetime.now(), datetime.now(UTC), time.time(), clock(), date.today()))
            if k == 1800:
                thread_read.wait(20)
                if not blocking:
                    task_read.wait(20)

    watcher = asyncio.get_running_loop().create_task(learners_task())
    reader = threading.Thread(target=learners_thread)
    reader.start()
    sim.spawn(job())
    await asyncio.sleep(0.01)
    advancing_from = REAL[0]()
    advancing.set()
    if blocking:  # the kernel's loop waits; its other threads and the learner's thread go on
        sim.advance(hours=1)
    else:
        await sim.advance_async(hours=1)
    advancing_until = REAL[0]()
    stop.set()
    await watcher
    reader.join()
    sim.close()
    run_end = REAL[0]()
    t0 = start.timestamp()
    expected = [
        (datetime.fromtimestamp(t0 + k), start + timedelta(seconds=k), t0 + k, t0 + k,
         datetime.fromtimestamp(t0 + k).date())
        for k in range(1, 3601)
    ]
    print("RESULT " + json.dumps({
        "job_exact": job_seen == expected,
        "job_count": len(job_seen),
        "kernel_years": sorted({now.year for now, _ in kernel_seen} | {now.year for now in thread_seen}),
        "kernel_real": all(run_start <= t <= run_end for _, t in kernel_seen)
            and all(run_start <= now.timestamp() <= run_end for now in thread_seen),
        "kernel_during_advance": sum(advancing_from <= t <= advancing_until for _, t in kernel_seen),
        "thread_during_advance": sum(advancing_from <= n.timestamp() <= advancing_until for n in thread_seen),
        "unpatched": (time.time, clock, dtmod.datetime.__dict__["now"], dtmod.date.__dict__["today"]) == REAL
            and not wallclock.installed(),
    }))
"""


def run_in_kernel(kernel: Kernel, start: datetime, *, blocking: bool = False) -> None:
    code = f"await one_run(datetime.fromtimestamp({start.timestamp()!r}, UTC), blocking={blocking})"
    reply = kernel.run(code, timeout=30)  # a hang fails the test instead of blocking CI
    assert reply.error is None, reply.text
    line = next(line for line in reply.stdout.splitlines() if line.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    assert result["job_exact"] and result["job_count"] == 3600, result
    assert start.year not in result["kernel_years"], result  # real time only, never the virtual
    assert result["kernel_real"] and result["unpatched"], result
    # The learner's thread, and (unless the cell blocks) the learner's task on the kernel's loop,
    # ran while the simulation advanced (5-7 readings each).
    assert result["thread_during_advance"] >= 1, result
    assert blocking or result["kernel_during_advance"] >= 1, result


def test_in_a_real_kernel_jobs_see_virtual_time_and_the_kernel_never_does() -> None:
    """The freezegun bridge hung a real kernel in 4 of about 22 runs: here 20 runs with
    ``await sim.advance_async`` and 2 with the blocking ``sim.advance`` in one kernel, then 3 more
    in each of two fresh kernels, each cell with a timeout."""
    with Kernel() as kernel:
        setup = kernel.run(KERNEL_SETUP, timeout=60)
        assert setup.error is None, setup.text
        for run in range(20):
            run_in_kernel(kernel, datetime(2024, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=run))
        for run in range(2):  # the blocking sim.advance() too
            run_in_kernel(kernel, datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=run), blocking=True)
    for _ in range(2):
        with Kernel() as kernel:
            setup = kernel.run(KERNEL_SETUP, timeout=60)
            assert setup.error is None, setup.text
            for run in range(3):
                run_in_kernel(kernel, datetime(2021, 3, 1, tzinfo=UTC) + timedelta(hours=run))
