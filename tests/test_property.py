"""The memory driver against a reference model, over random sequences of operations.

A hypothesis state machine dispatches jobs (random delays, queues, retry limits), reserves (with
and without queue priorities), acks, fails (release after a delay, or bury once attempts are used
up, as the executor does), processes, advances virtual time, reclaims expired leases, requeues,
purges and clears. After every step the driver must agree with a model written with plain lists and
dicts: which job a reserve returns, the counts, the next due time and lease end, attempts, and the
dead-letter queue in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from khadem_lab import (
    DriverConfig,
    EventKind,
    EventLog,
    InMemoryDriver,
    JobRecord,
    JobRegistry,
    JobStatus,
    QueueJob,
    Simulation,
)
from khadem_lab.drivers.base import BaseQueueDriver

LEASE = 4.0
QUEUES = ["a", "b", "c"]
QUEUE_CHOICES: list[list[str] | None] = [None, ["a"], ["b"], ["b", "a"], ["c", "b", "a"], ["d"]]


class Noop(QueueJob):
    """Succeeds at once; its retry limit is set per instance."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries

    async def handle(self) -> None:
        return None


class StoredNoops(JobRegistry):
    """Rebuilds the model's Noop jobs (their only field, max_retries, is a job option and so is
    not in the payload; the record carries it)."""

    def __init__(self) -> None:
        super().__init__()
        self.register(Noop)

    def resolve(self, name: str) -> type[QueueJob]:
        return RebuiltNoop if name == "Noop" else super().resolve(name)


class RebuiltNoop(Noop):
    def __init__(self) -> None:
        super().__init__(0)


@dataclass
class ModelJob:
    id: str
    queue: str
    max_retries: int
    available_at: float
    seq: int
    state: str = "pending"  # pending | reserved | dead
    attempts: int = 0
    reserved_until: float | None = None


class MemoryDriverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulation()
        self.driver: BaseQueueDriver = InMemoryDriver(
            DriverConfig(name="prop", lease_time=timedelta(seconds=LEASE)), clock=self.sim.clock
        )
        self.log = EventLog()
        self.driver.subscribe(self.log)
        self.jobs: dict[str, ModelJob] = {}
        self.dead_order: list[str] = []
        self.held: dict[str, JobRecord] = {}  # reservations still valid, as handed out
        self.last_seq = 0
        #: A second driver on the same storage (another process), for the drivers that have one.
        self.other: BaseQueueDriver | None = None

    def teardown(self) -> None:
        self.sim.close()

    # -- the model ------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.sim.time()

    def _new_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def _in(self, state: str) -> list[ModelJob]:
        return [job for job in self.jobs.values() if job.state == state]

    def _model_reclaim(self) -> list[tuple[str, JobStatus]]:
        """Leases ended at or before now come back (or die), in (lease end, seq) order."""
        now = self.now
        expired = sorted(
            (j for j in self._in("reserved") if j.reserved_until is not None and j.reserved_until <= now),
            key=lambda j: (j.reserved_until, j.seq),
        )
        result = []
        for job in expired:
            self.held.pop(job.id, None)
            job.reserved_until = None
            if job.attempts >= job.max_retries + 1:
                job.state = "dead"
                self.dead_order.append(job.id)
                result.append((job.id, JobStatus.DEAD))
            else:
                job.state, job.available_at, job.seq = "pending", now, self._new_seq()
                result.append((job.id, JobStatus.PENDING))
        return result

    def _model_pick(self, queues: list[str] | None) -> ModelJob | None:
        ready = [j for j in self._in("pending") if j.available_at <= self.now]
        if queues is not None:
            for queue in queues:
                in_queue = [j for j in ready if j.queue == queue]
                if in_queue:
                    return min(in_queue, key=lambda j: (j.available_at, j.seq))
            return None
        return min(ready, key=lambda j: (j.available_at, j.seq), default=None)

    def _model_reserve(self, job: ModelJob) -> None:
        job.state = "reserved"
        job.attempts += 1
        job.reserved_until = self.now + LEASE

    def _expect_reclaim_events(self, before: int, expected: list[tuple[str, JobStatus]]) -> None:
        expired = [e.job_id for e in self.log.events[before:] if e.kind is EventKind.LEASE_EXPIRED]
        dead = [e.job_id for e in self.log.events[before:] if e.kind is EventKind.DEAD_LETTERED]
        assert expired == [job_id for job_id, _ in expected]
        assert dead == [job_id for job_id, status in expected if status is JobStatus.DEAD]

    # -- rules ----------------------------------------------------------------------------------
    @rule(
        delay=st.sampled_from([0, 0, 1, 2.5, 5]),
        queue=st.sampled_from(QUEUES),
        max_retries=st.integers(0, 2),
        count=st.integers(1, 3),
    )
    def dispatch(self, delay: float, queue: str, max_retries: int, count: int) -> None:
        jobs = [Noop(max_retries) for _ in range(count)]
        ids = self.sim.run(self.driver.push_many(jobs, delay, queue=queue))
        assert len(set(ids)) == count and not set(ids) & set(self.jobs)
        for job_id in ids:
            self.jobs[job_id] = ModelJob(job_id, queue, max_retries, self.now + delay, self._new_seq())

    @rule(queues=st.sampled_from(QUEUE_CHOICES))
    def reserve(self, queues: list[str] | None) -> None:
        before = len(self.log)
        reclaimed = self._model_reclaim()
        expected = self._model_pick(queues)
        record = self.sim.run(self.driver.reserve(queues, worker="w"))
        self._expect_reclaim_events(before, reclaimed)
        if expected is None:
            assert record is None
            return
        self._model_reserve(expected)
        assert record is not None
        assert (record.id, record.attempts, record.status) == (
            expected.id,
            expected.attempts,
            JobStatus.RESERVED,
        )
        assert record.reserved_until == expected.reserved_until
        self.held[record.id] = record

    @rule(queues=st.sampled_from(QUEUE_CHOICES))
    def process(self, queues: list[str] | None) -> None:
        before = len(self.log)
        reclaimed = self._model_reclaim()
        expected = self._model_pick(queues)
        ran = self.sim.run(self.driver.process(queues))
        self._expect_reclaim_events(before, reclaimed)
        completed = [e.job_id for e in self.log.events[before:] if e.kind is EventKind.COMPLETED]
        if expected is None:
            assert (ran, completed) == (False, [])
            return
        assert (ran, completed) == (True, [expected.id])
        del self.jobs[expected.id]

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def ack(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        self.sim.run(self.driver.ack_record(self.held.pop(job_id)))
        del self.jobs[job_id]

    @precondition(lambda self: self.held)
    @rule(data=st.data(), delay=st.sampled_from([0, 1, 3]))
    def fail(self, data: Any, delay: float) -> None:
        """What the executor does with a failed attempt: retry later, or bury when out of attempts."""
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        record, job = self.held.pop(job_id), self.jobs[job_id]
        record.last_error, record.error_type = f"RuntimeError: attempt {record.attempts}", "RuntimeError"
        job.reserved_until = None
        if record.attempts < record.max_attempts:
            record.available_at = self.now + delay
            record.status = JobStatus.PENDING
            self.sim.run(self.driver.release_record(record))
            job.state, job.available_at, job.seq = "pending", self.now + delay, self._new_seq()
        else:
            record.failed_at = self.now
            record.status = JobStatus.DEAD
            self.sim.run(self.driver.bury_record(record))
            job.state = "dead"
            self.dead_order.append(job_id)

    @rule(seconds=st.sampled_from([0.5, 1, 2, LEASE, 7]))
    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds=seconds)

    @rule()
    def reclaim(self) -> None:
        expected = self._model_reclaim()
        reclaimed = self.sim.run(self.driver.reclaim_expired(self.now))
        assert [(r.id, r.status) for r in reclaimed] == expected
        for record in reclaimed:
            if record.status is JobStatus.DEAD:
                assert record.error_type == "LeaseExpired" and record.failed_at == self.now

    @precondition(lambda self: self.dead_order)
    @rule(data=st.data(), everything=st.booleans())
    def requeue(self, data: Any, everything: bool) -> None:
        dlq = self.driver.dead_letters
        if everything:
            ids = list(self.dead_order)
            assert self.sim.run(dlq.requeue_all()) == len(ids)
        else:
            ids = [data.draw(st.sampled_from(self.dead_order))]
            assert self.sim.run(dlq.requeue(ids[0])) is True
        for job_id in ids:
            job = self.jobs[job_id]
            job.state, job.attempts, job.available_at, job.seq = "pending", 0, self.now, self._new_seq()
            self.dead_order.remove(job_id)

    @precondition(lambda self: self.dead_order)
    @rule(data=st.data(), everything=st.booleans())
    def purge(self, data: Any, everything: bool) -> None:
        dlq = self.driver.dead_letters
        ids = list(self.dead_order) if everything else [data.draw(st.sampled_from(self.dead_order))]
        assert self.sim.run(dlq.purge(None if everything else ids)) == len(ids)
        for job_id in ids:
            del self.jobs[job_id]
            self.dead_order.remove(job_id)

    @rule(unknown=st.sampled_from(["no-such-id", "0"]))
    def dead_letter_ops_on_unknown_ids_do_nothing(self, unknown: str) -> None:
        dlq = self.driver.dead_letters
        assert self.sim.run(dlq.requeue(unknown)) is False
        assert self.sim.run(dlq.purge([unknown])) == 0
        assert self.sim.run(dlq.get(unknown)) is None

    @precondition(lambda self: len(self.jobs) > 6)
    @rule()
    def clear(self) -> None:
        waiting = [j.id for j in self.jobs.values() if j.state != "dead"]
        assert self.sim.run(self.driver.clear()) == len(waiting)
        for job_id in waiting:
            del self.jobs[job_id]
        self.held.clear()

    # -- checked after every step -------------------------------------------------------------
    @invariant()
    def counts_match(self) -> None:
        pending = self._in("pending")
        ready = sum(1 for j in pending if j.available_at <= self.now)
        expected = (ready, len(pending) - ready, len(self._in("reserved")))
        assert tuple(self.sim.run(self.driver.counts(self.now))) == expected
        assert self.sim.run(self.driver.size()) == sum(expected)

    @invariant()
    def next_times_match(self) -> None:
        assert self.sim.run(self.driver.next_available_at(None)) == min(
            (j.available_at for j in self._in("pending")), default=None
        )
        for queues in (["a"], ["b", "c"]):
            assert self.sim.run(self.driver.next_available_at(queues)) == min(
                (j.available_at for j in self._in("pending") if j.queue in queues), default=None
            )
        assert self.sim.run(self.driver.next_lease_expiry()) == min(
            (j.reserved_until for j in self._in("reserved") if j.reserved_until is not None), default=None
        )

    @invariant()
    def dead_letters_match(self) -> None:
        dead = self.sim.run(self.driver.dead_letters.list())
        assert [(d.id, d.attempts) for d in dead] == [(i, self.jobs[i].attempts) for i in self.dead_order]
        assert all(d.error is not None and d.failed_at is not None for d in dead)

    @invariant()
    def the_other_driver_agrees(self) -> None:
        if self.other is None:
            return
        now = self.sim.time()
        mine, theirs = self.driver, self.other
        assert self.sim.run(theirs.counts(now)) == self.sim.run(mine.counts(now))
        assert self.sim.run(theirs.next_available_at(None)) == self.sim.run(mine.next_available_at(None))
        assert self.sim.run(theirs.next_lease_expiry()) == self.sim.run(mine.next_lease_expiry())
        dead = self.sim.run(theirs.dead_records())
        assert [(r.id, r.attempts, r.status) for r in dead] == [
            (r.id, r.attempts, JobStatus.DEAD) for r in self.sim.run(mine.dead_records())
        ]

    @invariant()
    def attempts_of_held_jobs_match(self) -> None:
        for job_id, record in self.held.items():
            job = self.jobs[job_id]
            assert (job.state, record.attempts, record.status) == (
                "reserved",
                job.attempts,
                JobStatus.RESERVED,
            )


def machine_settings(max_examples: int) -> settings:
    """How the model machines run: derandomized (the same examples every run), 40 steps each."""
    return settings(
        max_examples=max_examples,
        stateful_step_count=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


MemoryDriverMachine.TestCase.settings = machine_settings(150)
TestMemoryDriverAgainstModel = MemoryDriverMachine.TestCase
