"""A learner's mistakes get told, not swallowed.

Three mistakes, each reproduced as a learner makes it:

1. ``handle()`` written as a plain ``def``: refused as the class is defined, naming the class;
2. a forgotten ``await`` on a manager call: a warning at once, naming the call and the job, at the
   learner's line (and in a notebook, a displayed result that says the job was not queued);
3. an event subscriber that keeps raising: one traceback, then counted and summarised.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from khadem_lab import (
    EventBus,
    EventKind,
    KhademLabError,
    QueueEvent,
    QueueJob,
    QueueManager,
    Simulation,
)
from khadem_lab.errors import JobDefinitionError


@dataclass
class WelcomeEmailJob(QueueJob):
    user_email: str

    async def handle(self) -> None:
        await asyncio.sleep(1)


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation() as simulation:
        yield simulation


@pytest.fixture
def qm(sim: Simulation) -> QueueManager:
    return QueueManager(clock=sim.clock)


def messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught]


# ================================================================================================
# 1. handle() must be `async def handle(self)`
# ================================================================================================


def test_a_plain_def_handle_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(JobDefinitionError) as info:

        class SendReport(QueueJob):
            def handle(self) -> None:  # the mistake: no `async`
                pass

    assert str(info.value) == (
        "`SendReport.handle()` must be `async def handle(self)`: it is a plain `def`, so the queue "
        "cannot await it: add `async` before `def handle`."
    )
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, KhademLabError)


def test_an_async_generator_or_a_generator_handle_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match=r"^`Streams\.handle\(\)` must be .*async generator"):

        class Streams(QueueJob):
            async def handle(self) -> Any:
                yield 1

    with pytest.raises(JobDefinitionError, match=r"^`Yields\.handle\(\)` must be .*a generator"):

        class Yields(QueueJob):
            def handle(self) -> Any:
                yield 1


def test_a_handle_that_is_not_a_function_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match=r"^`NoWork\.handle\(\)` must be .*it is None"):

        class NoWork(QueueJob):
            handle = None  # type: ignore[assignment]


def test_jobs_that_inherit_or_wrap_an_async_handle_are_accepted(sim: Simulation, qm: QueueManager) -> None:
    def traced(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any) -> Any:  # a plain def that returns the coroutine: fine
            return method(*args)

        return wrapper

    class Base(QueueJob):
        async def handle(self) -> str:
            return "base"

    class Child(Base):
        max_retries = 1

    def unwrapped(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:  # no functools.wraps: nothing to look into, so trusted
            return method(*args)

        return wrapper

    class Traced(QueueJob):
        @traced
        async def handle(self) -> str:
            return "traced"

    class Decorated(QueueJob):
        @unwrapped
        async def handle(self) -> str:
            return "decorated"

    @dataclass
    class Data(Base):
        n: int = 0

    sim.run(qm.dispatch_batch([Child(), Traced(), Decorated(), Data(1)]))
    assert sim.run(qm.start_worker(max_jobs=4)).stats.completed == 4


# ================================================================================================
# 2. a forgotten `await` on a manager call
# ================================================================================================


def test_a_forgotten_await_on_dispatch_warns_at_once_at_the_learners_line(
    sim: Simulation, qm: QueueManager
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        qm.dispatch(WelcomeEmailJob(user_email="a@example.com"))  # the mistake
        told_at_once = messages(caught)
    assert told_at_once == [
        "RuntimeWarning: qm.dispatch(WelcomeEmailJob(user_email='a@example.com')) was never "
        "awaited: the job was NOT queued. Write `await qm.dispatch(...)`."
    ]  # and no "coroutine 'BaseQueueDriver.push' was never awaited" after it
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
    assert sim.run(qm.driver.size()) == 0
    assert sim.run(qm.dispatch(WelcomeEmailJob(user_email="a@example.com"))) == "1"
    assert sim.run(qm.driver.size()) == 1


def test_the_warning_names_the_managers_own_variable(sim: Simulation) -> None:
    queue_manager = QueueManager(clock=sim.clock)
    with pytest.warns(RuntimeWarning) as caught:
        queue_manager.dispatch(WelcomeEmailJob("b@example.com"))
    assert str(caught[0].message).startswith("queue_manager.dispatch(WelcomeEmailJob(")
    assert str(caught[0].message).endswith("Write `await queue_manager.dispatch(...)`.")


def test_a_forgotten_await_inside_a_job_points_at_the_job(sim: Simulation, qm: QueueManager) -> None:
    lines: list[int] = []

    @dataclass
    class SignUp(QueueJob):
        user_email: str

        async def handle(self) -> None:
            lines.append(sys._getframe().f_lineno + 1)
            qm.dispatch(WelcomeEmailJob(self.user_email))  # the mistake, on the virtual loop

    sim.run(qm.dispatch(SignUp("c@example.com")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sim.run(qm.process()) is True
    assert messages(caught) == [
        "RuntimeWarning: qm.dispatch(WelcomeEmailJob(user_email='c@example.com')) was never "
        "awaited: the job was NOT queued. Write `await qm.dispatch(...)`."
    ]
    assert (caught[0].filename, caught[0].lineno) == (__file__, lines[0])
    assert sim.run(qm.driver.size()) == 0


def test_the_warning_is_shown_every_time_not_once_per_line(sim: Simulation, qm: QueueManager) -> None:
    """Python's default filter shows a warning once per line and text; a learner who re-runs the
    same cell must be told again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()  # the interpreter's defaults: "default" for RuntimeWarning
        for _ in range(2):
            qm.dispatch(WelcomeEmailJob("d@example.com"))
    assert len(caught) == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda qm: qm.dispatch_batch([WelcomeEmailJob("a@x"), WelcomeEmailJob("b@x")]),
            "qm.dispatch_batch([WelcomeEmailJob(user_email='a@x'), ...]) was never awaited: the 2 "
            "jobs were NOT queued. Write `await qm.dispatch_batch(...)`.",
        ),
        (
            lambda qm: qm.process(),
            "qm.process() was never awaited: no job was run. Write `await qm.process()`.",
        ),
        (
            lambda qm: qm.start_worker(run_in_background=True),
            "qm.start_worker(...) was never awaited: no worker was started. "
            "Write `worker = await qm.start_worker(...)`.",
        ),
        (
            lambda qm: qm.get_stats(),
            "qm.get_stats() was never awaited: nothing was read. Write `await qm.get_stats()`.",
        ),
        (
            lambda qm: qm.stop_workers(),
            "qm.stop_workers() was never awaited: no worker was stopped. Write `await qm.stop_workers()`.",
        ),
        (
            lambda qm: qm.dispose(),
            "qm.dispose() was never awaited: nothing was stopped or released. Write `await qm.dispose()`.",
        ),
    ],
    ids=["dispatch_batch", "process", "start_worker", "get_stats", "stop_workers", "dispose"],
)
def test_every_manager_call_warns_when_not_awaited(
    sim: Simulation, qm: QueueManager, call: Callable[[QueueManager], Any], message: str
) -> None:
    sim.run(qm.dispatch(WelcomeEmailJob("ready@x")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call(qm)
        told_at_once = messages(caught)
    assert told_at_once == [f"RuntimeWarning: {message}"]
    sim.advance(minutes=1)
    assert sim.run(qm.driver.size()) == 1  # nothing was queued, run or started
    assert qm.workers == []


def test_the_repr_of_a_pending_call_says_it_is_not_queued(sim: Simulation, qm: QueueManager) -> None:
    """What a notebook shows when the call is the cell's last expression (IPython keeps it in
    Out[]; the repr is the message, and no warning follows later when Out[] lets it go)."""
    pending = qm.dispatch(WelcomeEmailJob("e@example.com"))
    assert repr(pending) == (
        "<qm.dispatch(WelcomeEmailJob(user_email='e@example.com')) not awaited: the job is NOT "
        "queued. Write `await qm.dispatch(...)`>"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del pending
    assert caught == []
    assert sim.run(qm.driver.size()) == 0


def test_an_awaited_call_is_quiet_and_cannot_be_awaited_twice(sim: Simulation, qm: QueueManager) -> None:
    async def twice() -> str:
        call = qm.dispatch(WelcomeEmailJob("f@example.com"))
        job_id = await call
        assert repr(call) == "<qm.dispatch(WelcomeEmailJob(user_email='f@example.com')) awaited>"
        with pytest.raises(RuntimeError, match=r"qm\.dispatch\(.*\) was already awaited"):
            await call
        return job_id

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sim.run(twice()) == "1"
    assert caught == []
    assert sim.run(qm.driver.size()) == 1


def test_the_calls_work_from_gather_tasks_spawn_and_another_loop(sim: Simulation, qm: QueueManager) -> None:
    def job(n: int) -> WelcomeEmailJob:
        return WelcomeEmailJob(f"{n}@example.com")

    async def on_the_virtual_loop() -> list[str]:
        ids = list(await asyncio.gather(qm.dispatch(job(1)), qm.dispatch(job(2))))
        ids.append(await asyncio.ensure_future(qm.dispatch(job(3))))
        ids.append(await asyncio.get_running_loop().create_task(qm.dispatch(job(4))))
        ids.extend(await qm.dispatch_batch([job(5), job(6)]))
        return ids

    async def on_another_loop() -> list[str]:  # a notebook cell's loop, or asyncio.run's
        ids = list(await asyncio.gather(qm.dispatch(job(7)), qm.dispatch(job(8))))
        ids.append(await asyncio.ensure_future(qm.dispatch(job(9))))
        ids.append(await asyncio.create_task(qm.dispatch(job(10))))
        stats = await qm.get_stats()
        assert stats["queue_depth"] == 10
        return ids

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sim.run(on_the_virtual_loop()) == ["1", "2", "3", "4", "5", "6"]
        assert asyncio.run(on_another_loop()) == ["7", "8", "9", "10"]
        task = sim.spawn(qm.dispatch(job(11)))
        sim.advance(seconds=0)
        assert task.result() == "11"
        assert sim.run(qm.dispatch(job(12))) == "12"
        worker = sim.run(qm.start_worker(run_in_background=True, concurrency=4))
        sim.advance(minutes=1)
        assert worker.stats.completed == 12
        sim.run(qm.stop_workers())
        sim.run(qm.dispose())
    assert caught == []


def test_a_closed_call_is_quiet(sim: Simulation, qm: QueueManager) -> None:
    """``close()`` is a decision, not a mistake (the simulation closes what it cannot run)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm.dispatch(WelcomeEmailJob("g@example.com")).close()
        sim.close()
        with pytest.raises(KhademLabError, match="closed"):
            sim.run(qm.dispatch(WelcomeEmailJob("h@example.com")))
    assert caught == []


# ------------------------------------------------------------------------------------------------
# ... and in a real notebook kernel
# ------------------------------------------------------------------------------------------------

SETUP_CELL = """
from dataclasses import dataclass
from khadem_lab import QueueJob, QueueManager, Simulation

@dataclass
class WelcomeEmailJob(QueueJob):
    user_email: str

    async def handle(self):
        pass

sim = Simulation()
qm = QueueManager(clock=sim.clock)
"""


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    from .kernel import Kernel

    with Kernel() as k:
        setup = k.run(SETUP_CELL)
        assert setup.error is None, setup.text
        yield k


def test_in_a_notebook_a_forgotten_await_is_told_in_the_cell(kernel: Any) -> None:
    cell = "qm.dispatch(WelcomeEmailJob('a@example.com'))\nprint('queued:', await qm.driver.size())"
    told = (
        "RuntimeWarning: qm.dispatch(WelcomeEmailJob(user_email='a@example.com')) was never awaited: "
        "the job was NOT queued. Write `await qm.dispatch(...)`."
    )
    for _ in range(2):  # and again when the learner runs the same cell again
        result = kernel.run(cell)
        assert result.error is None, result.text
        assert told in result.stderr
        assert "coroutine" not in result.stderr
        assert result.stdout == "queued: 0\n"


def test_in_a_notebook_a_displayed_call_says_it_was_not_queued(kernel: Any) -> None:
    result = kernel.run("qm.dispatch(WelcomeEmailJob('b@example.com'))")
    assert result.error is None, result.text
    assert result.results == [
        "<qm.dispatch(WelcomeEmailJob(user_email='b@example.com')) not awaited: the job is NOT "
        "queued. Write `await qm.dispatch(...)`>"
    ]
    fixed = kernel.run("await qm.dispatch(WelcomeEmailJob('b@example.com'))\nawait qm.driver.size()")
    assert fixed.error is None, fixed.text
    assert fixed.results == ["1"]
    assert fixed.stderr == ""


# ================================================================================================
# 3. a subscriber that keeps raising
# ================================================================================================


def event(n: int) -> QueueEvent:
    return QueueEvent(float(n), n, EventKind.COMPLETED, str(n), "WelcomeEmailJob", "default", 1, "memory")


def test_a_failing_subscriber_logs_one_traceback_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[int] = []

    def on_event(e: QueueEvent) -> None:
        raise ValueError(f"boom {e.seq}")

    bus.subscribe(on_event)
    bus.subscribe(lambda e: seen.append(e.seq))  # the next subscriber still gets every event
    with caplog.at_level(logging.INFO, logger="khadem_lab.events"):
        for n in range(1, 1001):
            bus.emit(event(n))
    assert seen == list(range(1, 1001))
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    name = on_event.__qualname__
    assert lines == [
        (
            "ERROR",
            f"event subscriber {name} failed on completed (job 1, WelcomeEmailJob): ValueError: boom 1. "
            "It is still called for each event; its failures are counted in `subscriber_errors` "
            "(qm.subscriber_errors) and logged again at 10, 100, 1000, ... failures",
            True,
        ),
        *(
            (
                "WARNING",
                f"event subscriber {name} has failed {n} times (the last: ValueError: boom {n})",
                False,
            )
            for n in (10, 100, 1000)
        ),
    ]
    [errors] = bus.subscriber_errors
    assert (errors.subscriber, errors.count, errors.last_error) == (on_event, 1000, "ValueError: boom 1000")


def test_a_new_kind_of_failure_gets_its_own_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()

    def flaky(e: QueueEvent) -> None:
        raise (KeyError if e.seq % 2 else ValueError)(e.seq)

    bus.subscribe(flaky)
    for n in range(1, 7):
        bus.emit(event(n))
    assert [r.exc_info is not None for r in caplog.records] == [True, True]
    assert bus.subscriber_errors[0].count == 6


def test_a_subscriber_that_raises_while_jobs_run_is_told_once_and_counted(
    sim: Simulation, qm: QueueManager, caplog: pytest.LogCaptureFixture
) -> None:
    """The real path: drivers deliver their events themselves (``BaseQueueDriver.emit``); a
    subscriber on the manager's bus fails on every event of 50 jobs (4 events each)."""

    def on_event(e: QueueEvent) -> None:
        raise RuntimeError("no dashboard")

    qm.subscribe(on_event)
    sim.run(qm.dispatch_batch([WelcomeEmailJob(f"{n}@x") for n in range(50)]))
    sim.run(qm.start_worker(max_jobs=50))
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING", "WARNING"]  # 1, 10, 100
    assert sum(r.exc_info is not None for r in caplog.records) == 1
    [errors] = qm.subscriber_errors  # counted where it subscribed: the manager's bus
    assert (errors.subscriber, errors.count) == (on_event, 50 * 4)  # dispatched, reserved, started, completed
    assert qm.driver.events.subscriber_errors == []
    assert sim.run(qm.get_stats())["metrics"]["jobs_completed"] == 50  # the queue did not mind
