"""Lifecycle events: every step of every job, stamped with (time, sequence).

Drivers and workers emit; metrics, the event log and the notebook panels subscribe. Nobody is
special-cased: a subscriber is any callable taking a :class:`QueueEvent`.

A subscriber that raises never breaks the queue, and is not allowed to flood the log either: its
first failure (and the first of each new exception type) is logged with the traceback, later ones
are counted (:attr:`EventBus.subscriber_errors`) and summarised in one line at 10, 100, 1000, ...
failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, NamedTuple

from .clock import to_datetime

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    """What happened to a job."""

    DISPATCHED = "dispatched"  # stored; ready now or delayed until `available_at`
    RESERVED = "reserved"  # a worker took it under a lease (attempt counted here)
    STARTED = "started"  # handle() began
    COMPLETED = "completed"  # handle() returned
    FAILED = "failed"  # handle() raised or timed out (one attempt)
    RETRY_SCHEDULED = "retry_scheduled"  # back to waiting until `available_at`
    DEAD_LETTERED = "dead_lettered"  # failed for good; in the dead-letter queue
    DISCARDED = "discarded"  # failed for good with use_dlq off: this event is its only trace
    LEASE_EXPIRED = "lease_expired"  # its worker vanished; delivered again (or dead-lettered)
    LEASE_LOST = "lease_lost"  # a run ended when its delivery no longer held the job (its lease
    # ran out and the job was taken again, or the queue was cleared): its settle changed nothing
    REQUEUED = "requeued"  # taken out of the dead-letter queue to run again
    PURGED = "purged"  # removed from the dead-letter queue

    def __str__(self) -> str:
        return self.value


class QueueEvent(NamedTuple):
    """One lifecycle step. Immutable; ``_asdict()`` gives a row for a table.

    (A NamedTuple rather than a frozen dataclass: several are made per job on the hot path, and a
    tuple is built four times faster.)
    """

    time: float  # seconds since the epoch, on the queue's clock
    seq: int  # tie-breaker: strictly increasing on one clock
    kind: EventKind
    job_id: str
    job_type: str
    queue: str
    attempt: int
    driver: str
    worker: str | None = None
    error: str | None = None
    available_at: float | None = None  # for dispatched / retry_scheduled / lease_expired
    duration: float | None = None  # for completed / failed: seconds handle() ran

    @property
    def at(self) -> Any:
        """``time`` as an aware UTC datetime."""
        return to_datetime(self.time)


Subscriber = Callable[[QueueEvent], object]
#: A counting subscriber's ``tally_event(kind, job_type, duration)``: what it reads of an event.
Tally = Callable[[EventKind, str, "float | None"], object]
#: How to deliver one kind (:attr:`EventBus.plans`): whether the event must be built, and each
#: subscriber with its tally (None: it takes the event).
Plan = tuple[bool, tuple[tuple[Subscriber, "Tally | None"], ...]]


def _plan(subscribers: tuple[Subscriber, ...]) -> Plan:
    entries = []
    for subscriber in subscribers:
        tally = getattr(subscriber, "tally_event", None)
        entries.append((subscriber, tally if callable(tally) else None))
    return any(tally is None for _, tally in entries), tuple(entries)


class SubscriberErrors:
    """How often one subscriber has raised, and the last error (it is still called for every
    event: each is its own chance). Found in :attr:`EventBus.subscriber_errors`."""

    __slots__ = ("_next_summary", "_types", "count", "last_error", "subscriber")

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        #: Failures so far.
        self.count = 0
        #: The last one, as ``"Type: message"``.
        self.last_error = ""
        self._types: set[type[BaseException]] = set()  # those logged with their traceback
        self._next_summary = SUMMARY_EVERY

    @property
    def name(self) -> str:
        return subscriber_name(self.subscriber)

    def __repr__(self) -> str:
        return f"SubscriberErrors({self.name}: {self.count} failures, the last: {self.last_error})"


#: A failing subscriber is summarised in the log when its count reaches this, then ten times more.
SUMMARY_EVERY = 10


def subscriber_name(subscriber: object) -> str:
    """``on_event`` or ``Panel.update`` rather than ``<function on_event at 0x7f...>``."""
    name = getattr(subscriber, "__qualname__", None)
    return name if isinstance(name, str) else repr(subscriber)


class EventBus:
    """Fan-out of events to subscribers, in subscription order.

    A subscriber may ask for some kinds only; an event of a kind nobody asked for is not even
    built (see :attr:`by_kind`). A subscriber that only counts events may also offer
    ``tally_event(kind, job_type, duration)``: an event that only such subscribers receive is
    not built either, they are tallied (see :attr:`plans`). A bus can also forward to other
    buses (a manager's bus receives its drivers' events): their subscribers are called
    directly, after the bus's own.
    """

    def __init__(self) -> None:
        self._own: list[tuple[Subscriber, frozenset[EventKind]]] = []
        self._targets: list[EventBus] = []
        self._sources: list[EventBus] = []
        self._errors: dict[int, SubscriberErrors] = {}  # by id(subscriber): any callable may fail
        #: For each kind, the subscribers that receive it, in order. Read-only for emitters.
        self.by_kind: dict[EventKind, tuple[Subscriber, ...]] = {kind: () for kind in EventKind}
        #: For each kind, how to deliver it without building events nobody needs: whether some
        #: subscriber needs the event, and per subscriber (in order) the subscriber and its
        #: ``tally_event`` (None if it takes the event). A counting subscriber (one with
        #: ``tally_event(kind, job_type, duration)``, as :class:`~khadem_lab.metrics.QueueMetrics`)
        #: is handed those three values instead of the event. Read-only for emitters.
        self.plans: dict[EventKind, Plan] = {kind: (False, ()) for kind in EventKind}

    def subscribe(
        self, subscriber: Subscriber, kinds: Iterable[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event (of ``kinds`` only, if given) from now on;
        returns an unsubscribe function."""
        entry = (subscriber, frozenset(EventKind) if kinds is None else frozenset(kinds))
        self._own.append(entry)
        self._changed()

        def unsubscribe() -> None:
            if entry in self._own:
                self._own.remove(entry)
                self._changed()

        return unsubscribe

    def forward_to(self, target: EventBus) -> None:
        """Deliver this bus's events to ``target``'s subscribers too (after this bus's own)."""
        self._targets.append(target)
        target._sources.append(self)
        self._changed()

    def _changed(self) -> None:
        entries = self._entries()
        self.by_kind = {kind: tuple(s for s, kinds in entries if kind in kinds) for kind in EventKind}
        self.plans = {kind: _plan(subscribers) for kind, subscribers in self.by_kind.items()}
        for source in self._sources:
            source._changed()

    def _entries(self) -> list[tuple[Subscriber, frozenset[EventKind]]]:
        found = list(self._own)
        for target in self._targets:
            found.extend(target._entries())
        return found

    def emit(self, event: QueueEvent) -> None:
        deliver(self.by_kind[event.kind], event, self)

    def __bool__(self) -> bool:
        return any(self.by_kind.values())

    # -- subscribers that raise ---------------------------------------------------------------------
    @property
    def subscriber_errors(self) -> list[SubscriberErrors]:
        """The subscribers of this bus that have raised, with how often and the last error."""
        return list(self._errors.values())

    def subscriber_failed(self, subscriber: Subscriber, event: QueueEvent, error: Exception) -> None:
        """Whoever delivers this bus's events calls this when ``subscriber`` raised ``error`` on
        ``event``: counted on the bus it subscribed to; logged with the traceback the first time
        (and for each new exception type), then in one line at 10, 100, 1000, ... failures."""
        owner = self._owner_of(subscriber) or self
        errors = owner._errors.get(id(subscriber))
        if errors is None:
            errors = owner._errors[id(subscriber)] = SubscriberErrors(subscriber)
        errors.count += 1
        errors.last_error = f"{type(error).__name__}: {error}"
        summary_due = errors.count == errors._next_summary
        if summary_due:
            errors._next_summary *= 10
        if type(error) not in errors._types:
            errors._types.add(type(error))
            first = errors.count == 1
            log.error(
                "event subscriber %s failed on %s (job %s, %s): %s%s",
                errors.name,
                event.kind,
                event.job_id,
                event.job_type,
                errors.last_error,
                ". It is still called for each event; its failures are counted in `subscriber_errors` "
                "(qm.subscriber_errors) and logged again at 10, 100, 1000, ... failures"
                if first
                else f" (a new error; {errors.count} failures so far)",
                exc_info=error,
            )
        elif summary_due:
            log.warning(
                "event subscriber %s has failed %d times (the last: %s)",
                errors.name,
                errors.count,
                errors.last_error,
            )

    def _owner_of(self, subscriber: Subscriber) -> EventBus | None:
        if any(own is subscriber for own, _ in self._own):
            return self
        for target in self._targets:
            owner = target._owner_of(subscriber)
            if owner is not None:
                return owner
        return None


def deliver(subscribers: tuple[Subscriber, ...], event: QueueEvent, bus: EventBus) -> None:
    """Call each subscriber with ``event``; a failing one is told to ``bus`` (counted, logged
    sparingly), never raised into the queue."""
    for subscriber in subscribers:
        try:
            subscriber(event)
        except Exception as error:
            bus.subscriber_failed(subscriber, event, error)


# The event history lives in its own module (it stores events column by column); imported here so
# that ``from khadem_lab.events import EventLog`` keeps working.
from .eventlog import EventLog as EventLog  # noqa: E402
