"""The virtual loop's timer heap: same firing order as asyncio's own heap, in and out of debug mode."""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import types

from khadem_lab.vloop import LAST_TIME, VirtualTimeLoop

START = 1_704_099_600.0


def asyncio_order(whens: list[float]) -> list[int]:
    """The order asyncio's own loop fires timers added in this order: a heap of TimerHandles
    compared by ``_when`` only (ties as the heap leaves them), popped while due."""
    heap: list[asyncio.TimerHandle] = []
    quiet = types.SimpleNamespace(get_debug=lambda: False)  # all a handle asks of its loop
    for index, when in enumerate(whens):
        heapq.heappush(heap, asyncio.TimerHandle(when, print, (index,), quiet))  # type: ignore[arg-type]
    return [heapq.heappop(heap)._args[0] for _ in range(len(heap))]


def test_timers_fire_in_asyncio_order_ties_included() -> None:
    """Many timers at a few instants (ties everywhere), some cancelled: the order in which their
    callbacks run is the order asyncio's heap of handles gives, so histories do not depend on how
    the loop stores its timers."""
    rng = random.Random(7)
    whens = [START + rng.choice((1.0, 2.0, 2.5, 3.0)) for _ in range(400)]
    cancelled = set(rng.sample(range(len(whens)), 60))
    loop = VirtualTimeLoop(START)
    fired: list[int] = []
    handles = [loop.call_at(when, fired.append, index) for index, when in enumerate(whens)]
    for index in cancelled:
        handles[index].cancel()
    loop.run_until(math.inf, jump_to_horizon=False)
    loop.close()
    assert fired == [index for index in asyncio_order(whens) if index not in cancelled]


def test_debug_mode_can_be_switched_with_timers_pending() -> None:
    """Switching asyncio's debug mode on (its own call_at and loop run) and off again while timers
    wait: every timer fires once, at its virtual time, in time order."""
    loop = VirtualTimeLoop(START)
    fired: list[tuple[str, float]] = []

    def note(name: str) -> None:
        fired.append((name, loop.time() - START))

    loop.call_later(3, note, "before, at 3")
    loop.call_later(1, note, "before, at 1")
    loop.set_debug(True)
    loop.call_later(2, note, "debug, at 2")
    loop.call_later(4, note, "debug, at 4")
    loop.run_until(START + 1.5)
    loop.set_debug(False)
    loop.call_later(1, note, "after, at 2.5")
    loop.run_until(math.inf, jump_to_horizon=False)
    loop.close()
    assert fired == [
        ("before, at 1", 1.0),
        ("debug, at 2", 2.0),
        ("after, at 2.5", 2.5),
        ("before, at 3", 3.0),
        ("debug, at 4", 4.0),
    ]


def test_a_timer_handle_is_equal_only_to_itself() -> None:
    """Two timers with the same time and callback are two scheduled calls: cancelling one leaves
    the other to fire (a set of pending timers keeps both)."""
    loop = VirtualTimeLoop(START)
    fired: list[int] = []
    first = loop.call_at(START + 1, fired.append, 1)
    second = loop.call_at(START + 1, fired.append, 1)
    assert first != second and len({first, second}) == 2
    first.cancel()
    loop.run_until(math.inf, jump_to_horizon=False)
    loop.close()
    assert fired == [1]


def test_a_timer_due_now_fires_far_in_the_future_too() -> None:
    """Past 2**34 s (the year 2514) `now + 1e-6` rounds back to `now`: a timer due exactly now must
    still fire (not spin until LivelockError), at every magnitude up to the calendar's end (9999),
    in asyncio's order."""
    for start in (2.0**33, 2.0**34 + 123.0, 1.888e10, 2.0**37, LAST_TIME - 2.0**21):
        loop = VirtualTimeLoop(start, livelock_budget=1_000)
        fired: list[tuple[float, int]] = []
        whens = [start + step for step in (1.0, 1.0, 2.0**20, 2.0**20 + 1.0)]
        for index, when in enumerate(whens):
            loop.call_at(when, note_time, loop, fired, index)
        loop.run_until(math.inf, jump_to_horizon=False)
        loop.close()
        assert [index for _, index in fired] == asyncio_order(whens), start
        assert [time for time, _ in fired] == sorted(whens), start


def note_time(loop: VirtualTimeLoop, fired: list[tuple[float, int]], index: int) -> None:
    fired.append((loop.time(), index))
