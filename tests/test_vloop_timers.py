"""The virtual loop's timer heap: same firing order as asyncio's own heap, in and out of debug mode."""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import types

from khadem_lab.vloop import VirtualTimeLoop

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
