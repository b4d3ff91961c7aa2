"""Retry-delay strategies: pure functions of the attempt number.

A job's ``retry_delay`` is either a ``timedelta`` (the same wait before every retry, the spec's
default of 30 seconds) or one of the strategies below. ``attempt`` is the number of the attempt that
just failed, counting from 1, so the first retry waits ``delay_for(strategy, 1)``.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, runtime_checkable

from .clock import to_seconds


@runtime_checkable
class RetryStrategy(Protocol):
    """Anything with ``delay(attempt) -> seconds`` can be a job's ``retry_delay``."""

    def delay(self, attempt: int) -> float: ...


@dataclass(frozen=True)
class Fixed:
    """The same wait before every retry."""

    seconds: float

    def delay(self, attempt: int) -> float:
        return self.seconds


#: The longest delay a strategy gives: the largest float (a retry due after the calendar ends).
_LONGEST = sys.float_info.max


@dataclass(frozen=True)
class Exponential:
    """``base * factor ** (attempt - 1)``, capped at ``max_delay``: 30 s, 60 s, 120 s, ..."""

    base: timedelta | float = timedelta(seconds=30)
    factor: float = 2.0
    max_delay: timedelta | float | None = None

    def delay(self, attempt: int) -> float:
        try:
            seconds = min(to_seconds(self.base) * self.factor ** max(0, attempt - 1), _LONGEST)
        except OverflowError:  # factor ** (attempt - 1) past what a float holds (2.0 ** 1025)
            seconds = _LONGEST
        if self.max_delay is not None:
            seconds = min(seconds, to_seconds(self.max_delay))
        return seconds


@dataclass
class ExponentialJitter:
    """Exponential backoff with "full jitter": a uniform draw in ``[0, exponential delay]``.

    The draws come from a generator seeded with ``seed``, so a simulation repeats exactly. Share
    one instance between jobs of a type (a class attribute) and the sequence is still
    deterministic, because jobs fail in a deterministic order. The stream goes on from one
    simulation to the next in the same process: :meth:`reset` starts it again from ``seed`` (a
    lab scenario resets the strategies of its job types before it runs, so that the same seed
    gives the same run, and :func:`khadem_lab.lab.frames.retry_plan` draws from a fresh copy).
    """

    base: timedelta | float = timedelta(seconds=30)
    factor: float = 2.0
    max_delay: timedelta | float | None = None
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reset(self, seed: int | None = None) -> None:
        """Start the draws again from ``seed`` (default: this strategy's own)."""
        if seed is not None:
            self.seed = seed
        self._rng = random.Random(self.seed)

    def delay(self, attempt: int) -> float:
        ceiling = Exponential(self.base, self.factor, self.max_delay).delay(attempt)
        return self._rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class Explicit:
    """A list of waits, one per retry; the last one repeats if attempts outrun the list."""

    delays: Sequence[timedelta | float]

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("Explicit backoff needs at least one delay")

    def delay(self, attempt: int) -> float:
        index = min(max(0, attempt - 1), len(self.delays) - 1)
        return to_seconds(self.delays[index])


def delay_for(retry_delay: timedelta | float | RetryStrategy, attempt: int) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt`` (from 1)."""
    if isinstance(retry_delay, RetryStrategy):
        seconds = retry_delay.delay(attempt)
    else:
        seconds = to_seconds(retry_delay)
    if seconds < 0:
        raise ValueError(f"retry delay must not be negative, got {seconds!r} s for attempt {attempt}")
    return seconds
