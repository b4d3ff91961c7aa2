"""EventLog keeps events column by column and gives back the QueueEvents it received."""

from __future__ import annotations

from typing import Any

import pytest

from khadem_lab import EventLog, QueueEvent
from khadem_lab import eventlog as eventlog_module
from khadem_lab.events import EventKind
from khadem_lab.events import EventLog as FromEvents

T0 = 1_704_099_600.0


def history(n: int = 40) -> list[QueueEvent]:
    """Events with every field used: None and values, big and small numbers, shared strings."""
    events = []
    for i in range(n):
        kind = list(EventKind)[i % len(EventKind)]
        events.append(
            QueueEvent(
                time=T0 + i * 0.25,
                seq=10**12 + 3 * i,  # big and sparse: several clocks can feed one log
                kind=kind,
                job_id=str(i // 4),
                job_type="Mail" if i % 3 else "Report",
                queue="default",
                attempt=i % 5 if i != 7 else 40_000,
                driver="memory",
                worker=None if i % 4 == 0 else f"w.{i % 2}",
                error=f"ConnectionError: {i}" if kind is EventKind.FAILED else None,
                available_at=T0 + i if i % 6 == 0 else None,
                duration=0.5 * i if kind is EventKind.COMPLETED else None,
            )
        )
    return events


@pytest.fixture(params=[1, 3, 8, 1000], ids=lambda c: f"chunk{c}")
def chunk(request: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(eventlog_module, "CHUNK", request.param)
    return int(request.param)


def test_the_log_gives_back_equal_events_across_blocks(chunk: int) -> None:
    events = history()
    log = EventLog()
    for event in events:
        log(event)
    assert len(log) == len(events)
    assert list(log) == events
    assert [type(value) for e in log for value in e] == [type(value) for e in events for value in e]
    assert log.events == events and log.events != events[:-1]
    assert [log.events[i] for i in range(len(events))] == events
    assert log.events[-1] == events[-1] and log.events[5:23] == events[5:23]
    assert log.events[::3] == events[::3]
    with pytest.raises(IndexError):
        log.events[len(events)]
    assert log.of_kind(EventKind.FAILED) == [e for e in events if e.kind is EventKind.FAILED]
    assert log.rows()[3]["kind"] == events[3].kind.value
    extended = EventLog()
    extended.extend(events)
    assert list(extended) == events


@pytest.mark.parametrize("maxlen", [0, 1, 5, 17, 39, 40, 100])
def test_maxlen_keeps_the_latest_events(chunk: int, maxlen: int) -> None:
    events = history()
    log = EventLog(maxlen=maxlen)
    for event in events:
        log(event)
    kept = events[len(events) - maxlen :] if maxlen else []
    assert len(log) == len(kept) and list(log) == kept and log.events == kept
    # the blocks hold at most maxlen events plus a block's worth (old blocks are dropped whole)
    stored = sum(block.n for block in log._blocks) + len(log._tail)
    assert stored <= maxlen + 2 * min(chunk, max(maxlen, 1))
    log.clear()
    assert len(log) == 0 and list(log) == [] and log.maxlen == maxlen


def test_bad_maxlen_is_refused() -> None:
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="maxlen"):
            EventLog(maxlen=bad)  # type: ignore[arg-type]


def test_the_log_is_importable_where_it_was() -> None:
    assert FromEvents is EventLog


def test_a_stored_event_takes_a_fraction_of_a_tuple(chunk: int) -> None:
    # the arrays of a packed block: about 20 bytes an event here (the strings are shared)
    events = history(1000)
    log = EventLog()
    log.extend(events)
    blocks = [block for block, _, _ in log.blocks()]
    arrays = sum(
        len(a) * a.itemsize
        for block in blocks
        for name in block.__slots__
        if hasattr(a := getattr(block, name), "itemsize")
    )
    assert arrays / len(events) < 32
