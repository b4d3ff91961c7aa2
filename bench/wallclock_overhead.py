"""What the wall-clock bridge costs a thread that is NOT attached (the kernel, the learner's own
threads) while a ``Simulation(wallclock=True)`` is open: each clock read, real versus bridged, in
one run. Run: ``.venv/bin/python bench/wallclock_overhead.py``.
"""

from __future__ import annotations

import threading
import time  # noqa: F401  (used by the timed statements)
import timeit
from datetime import UTC, date, datetime  # noqa: F401  (used by the timed statements)

from khadem_lab import wallclock

STATEMENTS = ("time.time()", "datetime.now()", "datetime.now(UTC)", "date.today()", "time.localtime()")


def best_ns(stmt: str, number: int = 50_000) -> float:
    return min(timeit.repeat(stmt, globals=globals(), number=number, repeat=7)) / number * 1e9


def main() -> None:
    real = {stmt: best_ns(stmt) for stmt in STATEMENTS}
    other = threading.Thread(target=threading.Event().wait, args=(60,), daemon=True)
    other.start()  # the attached thread is another one: this thread reads real time, bridged
    assert other.ident is not None
    detach = wallclock.attach(other.ident, lambda: 1_704_099_600.0)
    try:
        bridged = {stmt: best_ns(stmt) for stmt in STATEMENTS}
    finally:
        detach()
    print("| call on a thread that is not attached | real | bridge installed | extra | ratio |")
    print("|---|---|---|---|---|")
    for stmt in STATEMENTS:
        print(
            f"| `{stmt}` | {real[stmt]:.0f} ns | {bridged[stmt]:.0f} ns | "
            f"{bridged[stmt] - real[stmt]:+.0f} ns | {bridged[stmt] / real[stmt]:.2f}x |"
        )


if __name__ == "__main__":
    main()
