"""QueueJob: the unit of work, as in the spec, with Pythonic names.

Subclass it, implement ``async def handle()``, and override any option as a class attribute or a
property::

    @dataclass
    class SendEmail(QueueJob):
        to: str
        max_retries = 5
        retry_delay = timedelta(seconds=10)

        async def handle(self) -> None:
            await asyncio.sleep(1)   # one virtual second under a Simulation

Dataclass jobs serialize to JSON without boilerplate (their fields); other jobs serialize their
public instance attributes. Override :meth:`QueueJob.to_json` / :meth:`QueueJob.from_json` for
anything else (the spec's ``SerializableJob``).
"""

from __future__ import annotations

import dataclasses
import inspect
from datetime import timedelta
from typing import Any

from .backoff import RetryStrategy
from .errors import JobDefinitionError

#: Names of the job options; they are stored with the job record, not in its payload.
JOB_OPTIONS = frozenset({"max_retries", "retry_delay", "should_retry", "timeout", "queue", "display_name"})


class QueueJob:
    """Base class of every job. Only :meth:`handle` is required."""

    #: Retries after the first failure (0 disables retries). Total attempts: ``max_retries + 1``.
    max_retries: int = 3
    #: Wait before a retry: a ``timedelta`` or a strategy from :mod:`khadem_lab.backoff`.
    retry_delay: timedelta | RetryStrategy = timedelta(seconds=30)
    #: ``False`` for one-shot jobs: the first failure is final.
    should_retry: bool = True
    #: Longest a run may take; past it the run is cancelled and counts as a failed attempt.
    timeout: timedelta | None = None
    #: The queue the job goes to unless ``dispatch(queue=...)`` says otherwise.
    queue: str = "default"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check, as the class is defined, that a ``handle`` it defines is an ``async def``: a plain
        ``def`` would run, then fail when the queue awaits its result, be retried (running again)
        and end in the dead-letter queue, far from the mistake."""
        super().__init_subclass__(**kwargs)
        if "handle" in vars(cls):
            problem = _handle_problem(vars(cls)["handle"])
            if problem is not None:
                raise JobDefinitionError(
                    f"`{cls.__name__}.handle()` must be `async def handle(self)`: {problem}"
                )

    async def handle(self) -> Any:
        """The job's work. Raise to fail the attempt (``PermanentFailure`` to skip retries)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `async def handle(self)`")

    @property
    def display_name(self) -> str:
        """Human-readable name for logs, callbacks and metrics; the class name by default."""
        return type(self).__name__

    @property
    def attempt(self) -> int:
        """The attempt now running, from 1 (0 before the job has run)."""
        return int(getattr(self, "_attempt", 0))

    def to_json(self) -> dict[str, Any]:
        """The job's data as a JSON-ready dict (dataclass fields, or public instance attributes)."""
        names = _DATA_FIELDS.get(type(self))
        if names is None and dataclasses.is_dataclass(self):
            names = _DATA_FIELDS[type(self)] = tuple(f.name for f in dataclasses.fields(self) if f.init)
        if names is not None:
            return {name: getattr(self, name) for name in names}
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in JOB_OPTIONS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueJob:
        """Rebuild a job from :meth:`to_json` output (keyword arguments to the constructor)."""
        return cls(**data)

    def __repr__(self) -> str:  # dataclass jobs get their own
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_json().items())
        return f"{type(self).__name__}({fields})"


def _handle_problem(handle: object) -> str | None:
    """What is wrong with a class's ``handle`` attribute, or None if the queue can await it."""
    if isinstance(handle, (staticmethod, classmethod)):
        handle = handle.__func__
    if not callable(handle):
        return f"it is {handle!r}, not a method."
    function = inspect.unwrap(handle)  # a decorator's wrapper may return the coroutine: look inside
    if inspect.isasyncgenfunction(function):
        return (
            "it is an async generator (it has `yield`), which the queue cannot await. "
            "Return the result instead of yielding it."
        )
    if inspect.isgeneratorfunction(function):
        return "it is a generator (`def` with `yield`): make it `async def` and return the result."
    if (
        inspect.isfunction(function)
        and function.__code__.co_name == "handle"  # the body written in the class, not a wrapper
        and not inspect.iscoroutinefunction(function)
    ):
        return "it is a plain `def`, so the queue cannot await it: add `async` before `def handle`."
    return None  # a coroutine function, or a wrapper or callable object we cannot see into


_CLASS_OVERRIDES: dict[tuple[type, str], bool] = {}
_DATA_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass job's constructor fields, per class


def option_overridden(job: QueueJob, name: str) -> bool:
    """True if the job (its class below QueueJob, or the instance) sets option ``name``."""
    if name in getattr(job, "__dict__", ()):
        return True
    key = (type(job), name)
    found = _CLASS_OVERRIDES.get(key)
    if found is None:
        found = False
        for klass in type(job).__mro__:
            if klass is QueueJob:
                break
            if name in vars(klass):
                found = True
                break
        _CLASS_OVERRIDES[key] = found
    return found
