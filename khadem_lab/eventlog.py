"""The event history of a run, stored column by column.

:class:`EventLog` is a subscriber that keeps every event. A long run makes millions of them, so it
does not keep the :class:`~khadem_lab.events.QueueEvent` tuples: new events wait in a short list
(:data:`CHUNK` at most), then are packed into a :class:`Block`, one ``array.array`` per field, the
strings (job ids, types, queues, drivers, workers, errors) stored once per block and referred to
by small integer codes. An event then costs about 60 bytes instead of about 210 (measured by
``bench/lab_frames.py``). Iterating or indexing the log makes the ``QueueEvent`` tuples again, equal
to the ones received; :mod:`khadem_lab.lab.frames` reads the columns directly.

Standard library only: the core runs without numpy.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress, islice, repeat
from operator import add, is_not, sub
from typing import Any, overload

from .events import EventKind, QueueEvent

__all__ = ["CHUNK", "Block", "EventLog", "Events"]

#: Events kept as tuples before they are packed into a block (at most; a bounded log packs sooner).
CHUNK = 16_384

#: The kinds, by their code in :attr:`Block.kind`.
KINDS: tuple[EventKind, ...] = tuple(EventKind)
_KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
#: The fields of a block that hold strings, each as ``codes`` into a tuple of the distinct values.
STRING_FIELDS = ("job_id", "job_type", "queue", "driver", "worker", "error")


def _small_ints(values: Sequence[int]) -> array[int]:
    """``values`` in the narrowest signed array type that holds them."""
    if not values:
        return array("b")
    low, high = min(values), max(values)
    for code, bound in (("b", 1 << 7), ("h", 1 << 15), ("i", 1 << 31)):
        if -bound <= low and high < bound:
            return array(code, values)
    return array("q", values)


def _coded(values: Sequence[Any]) -> tuple[array[int], tuple[Any, ...]]:
    """Each value as a code into the distinct values (in order of first appearance; None is a
    value like any other)."""
    index: dict[Any, Any] = dict.fromkeys(values)
    count = len(index)
    typecode = "b" if count <= 1 << 7 else "h" if count <= 1 << 15 else "i"
    if count == 1:  # a queue, a driver: the same on every event
        return array(typecode, bytes(len(values))), tuple(index)
    index.update(zip(index, range(count), strict=True))
    return array(typecode, map(index.__getitem__, values)), tuple(index)


def _sparse(values: Sequence[float | None]) -> tuple[array[int], array[float]]:
    """The positions of the values that are not None, and those values (most events have no
    ``available_at`` or ``duration``)."""
    present = list(map(is_not, values, repeat(None)))
    found: Iterator[Any] = compress(values, present)  # only floats
    return _small_ints(list(compress(range(len(values)), present))), array("d", found)


class Block:
    """Events packed column by column: ``time`` as floats; ``seq`` as ``seq_base`` plus small
    ints; ``kind`` as codes into :data:`KINDS`; ``attempt`` as ints; ``available_at`` and
    ``duration`` sparse (``<field>_at``: the positions of the events that have one, ``<field>``:
    the values); each of :data:`STRING_FIELDS` as ``<field>`` codes into ``<field>_values``.
    Read-only once made."""

    __slots__ = (
        "attempt",
        "available_at",
        "available_at_at",
        "driver",
        "driver_values",
        "duration",
        "duration_at",
        "error",
        "error_values",
        "job_id",
        "job_id_values",
        "job_type",
        "job_type_values",
        "kind",
        "n",
        "queue",
        "queue_values",
        "seq",
        "seq_base",
        "time",
        "worker",
        "worker_values",
    )

    def __init__(self, events: Sequence[QueueEvent]) -> None:
        self.n = len(events)
        if not events:
            fields: list[Sequence[Any]] = [() for _ in QueueEvent._fields]
        else:
            fields = list(zip(*events, strict=True))  # one tuple per field
        time, seq, kind, job_id, job_type, queue, attempt, driver, worker, error, available, duration = fields
        self.time = array("d", time)
        self.seq_base = seq[0] if seq else 0
        self.seq = _small_ints(list(map(sub, seq, repeat(self.seq_base))))
        self.kind = array("b", map(_KIND_CODE.__getitem__, kind))
        self.attempt = _small_ints(attempt)
        self.available_at_at, self.available_at = _sparse(available)
        self.duration_at, self.duration = _sparse(duration)
        self.job_id, self.job_id_values = _coded(job_id)
        self.job_type, self.job_type_values = _coded(job_type)
        self.queue, self.queue_values = _coded(queue)
        self.driver, self.driver_values = _coded(driver)
        self.worker, self.worker_values = _coded(worker)
        self.error, self.error_values = _coded(error)

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[QueueEvent]:
        """The events ``start:stop`` as ``QueueEvent`` tuples, equal to the ones packed."""
        stop = self.n if stop is None else stop

        def part(values: Sequence[Any]) -> Sequence[Any]:
            return values[start:stop]

        def strings(field: str) -> Iterator[Any]:
            return map(getattr(self, field + "_values").__getitem__, part(getattr(self, field)))

        def dense(field: str) -> list[float | None]:
            positions, present = getattr(self, field + "_at"), getattr(self, field)
            values: list[float | None] = [None] * (stop - start)
            first, last = bisect_left(positions, start), bisect_left(positions, stop)
            for position, value in zip(positions[first:last], present[first:last], strict=True):
                values[position - start] = value
            return values

        return map(
            QueueEvent._make,
            zip(
                part(self.time),
                map(add, part(self.seq), repeat(self.seq_base)),
                map(KINDS.__getitem__, part(self.kind)),
                strings("job_id"),
                strings("job_type"),
                strings("queue"),
                part(self.attempt),
                strings("driver"),
                strings("worker"),
                strings("error"),
                dense("available_at"),
                dense("duration"),
                strict=True,
            ),
        )

class EventLog:
    """A subscriber that keeps every event, in order: the history of a run.

    Iterating, indexing (``log.events[i]``, slices) and :meth:`of_kind` give
    :class:`~khadem_lab.events.QueueEvent` tuples, made on access; the log itself keeps the events
    column by column (about 60 bytes each; see :mod:`khadem_lab.eventlog`).

    ``maxlen`` bounds it for long runs: only the latest ``maxlen`` events are kept, and old ones
    are dropped a whole block at a time, so a new event costs the same however long the run.
    :mod:`khadem_lab.lab.frames` turns a log into pandas tables.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0):
            raise ValueError(f"maxlen must be None or an int >= 0, got {maxlen!r}")
        self._maxlen = maxlen
        self._chunk = CHUNK if maxlen is None else max(1, min(CHUNK, maxlen))
        self._blocks: deque[Block] = deque()
        self._packed = 0  # events in _blocks
        self._tail: list[QueueEvent] = []

    @property
    def maxlen(self) -> int | None:
        """How many events are kept at most (None: all)."""
        return self._maxlen

    def __call__(self, event: QueueEvent) -> None:
        tail = self._tail
        tail.append(event)
        if len(tail) >= self._chunk:
            self._pack()

    def extend(self, events: Iterable[QueueEvent]) -> None:
        """Append many events at once (packed a block at a time)."""
        if self._tail:
            for event in events:
                self(event)
            return
        source = iter(events)
        while True:
            chunk = list(islice(source, self._chunk))
            if not chunk:
                return
            if len(chunk) < self._chunk:
                self._tail = chunk
                return
            self._tail = chunk
            self._pack()

    def _pack(self) -> None:
        block = Block(self._tail)
        self._tail = []
        self._blocks.append(block)
        self._packed += block.n
        if self._maxlen is not None:
            while self._blocks and self._packed - self._blocks[0].n >= self._maxlen:
                self._packed -= self._blocks.popleft().n

    # -- reading ------------------------------------------------------------------------------------
    def _skip(self) -> int:
        """How many of the stored events lie before the window of a bounded log."""
        stored = self._packed + len(self._tail)
        return 0 if self._maxlen is None else max(0, stored - self._maxlen)

    def __len__(self) -> int:
        return self._packed + len(self._tail) - self._skip()

    def __iter__(self) -> Iterator[QueueEvent]:
        return self._iter(0, len(self))

    def _iter(self, start: int, stop: int) -> Iterator[QueueEvent]:
        """Events ``start:stop`` of the log (0 <= start <= stop <= len)."""
        start += self._skip()
        stop += self._skip()
        offset = 0
        for block in list(self._blocks):
            end = offset + block.n
            if start < end and offset < stop:
                yield from block.events(max(start, offset) - offset, min(stop, end) - offset)
            offset = end
        if stop > offset:
            yield from self._tail[max(start, offset) - offset : stop - offset]

    def blocks(self) -> list[tuple[Block, int, int]]:
        """The stored events as ``(block, start, stop)`` parts, in order (the unpacked ones packed
        into a block for the occasion). For :mod:`khadem_lab.lab.frames`."""
        parts = [(block, 0, block.n) for block in self._blocks]
        if self._tail:
            tail = Block(self._tail)
            parts.append((tail, 0, tail.n))
        skip = self._skip()
        trimmed = []
        for block, start, stop in parts:
            if skip >= stop - start:
                skip -= stop - start
                continue
            trimmed.append((block, start + skip, stop))
            skip = 0
        return trimmed

    @property
    def events(self) -> Events:
        """The events as a read-only sequence (index, slice, iterate, compare with a list)."""
        return Events(self)

    def of_kind(self, *kinds: EventKind) -> list[QueueEvent]:
        return [e for e in self if e.kind in kinds]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per event, with the time as an aware datetime (ready for pandas)."""
        return [{**e._asdict(), "at": e.at, "kind": e.kind.value} for e in self]

    def clear(self) -> None:
        self._blocks.clear()
        self._tail = []
        self._packed = 0

    def __repr__(self) -> str:
        bound = "" if self._maxlen is None else f", maxlen={self._maxlen}"
        return f"<EventLog: {len(self)} events{bound}>"


class Events(Sequence[QueueEvent]):
    """A read-only view of an :class:`EventLog`'s events: ``log.events[0]``, ``log.events[-5:]``
    (a list), ``len``, iteration, and ``==`` with a list of events."""

    __slots__ = ("log",)

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def __len__(self) -> int:
        return len(self.log)

    def __iter__(self) -> Iterator[QueueEvent]:
        return iter(self.log)

    @overload
    def __getitem__(self, index: int) -> QueueEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[QueueEvent]: ...
    def __getitem__(self, index: int | slice) -> QueueEvent | list[QueueEvent]:
        n = len(self.log)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return list(self.log._iter(start, max(start, stop)))
            return list(self.log._iter(0, n))[index]
        position = index + n if index < 0 else index
        if not 0 <= position < n:
            raise IndexError(f"event index {index} out of range for a log of {n} events")
        return self._at(position)

    def _at(self, position: int) -> QueueEvent:
        log = self.log
        position += log._skip()
        starts = [0]
        for block in log._blocks:
            starts.append(starts[-1] + block.n)
        if position >= starts[-1]:
            return log._tail[position - starts[-1]]
        i = bisect_right(starts, position) - 1
        block = log._blocks[i]
        return next(block.events(position - starts[i], position - starts[i] + 1))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Events):
            other = list(other)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} events of {self.log!r}>"
