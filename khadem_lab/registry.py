"""The job registry: the only way a stored type name becomes a class again.

Persistent drivers store a job as ``{"type": name, "payload": {...}}`` in JSON. A worker turns it
back into a job by looking the name up here, never by importing arbitrary paths and never by
unpickling. Register every job class in every process that dispatches or works a persistent queue::

    register_queue_jobs([SendEmail, ProcessPayment])

    @queue_job                    # or as a decorator
    class Cleanup(QueueJob): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar, overload

from .errors import KhademLabError, UnregisteredJobError
from .job import QueueJob

J = TypeVar("J", bound=type[QueueJob])


class JobRegistry:
    """Maps type names to job classes and back."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[QueueJob]] = {}
        self._names: dict[type[QueueJob], str] = {}

    def register(self, cls: type[QueueJob], name: str | None = None) -> type[QueueJob]:
        """Register ``cls`` under ``name`` (default: the class name). Returns ``cls``."""
        if not (isinstance(cls, type) and issubclass(cls, QueueJob)):
            raise TypeError(f"only QueueJob subclasses can be registered, got {cls!r}")
        name = name or cls.__name__
        existing = self._by_name.get(name)
        if existing is not None and existing is not cls and not _redefined(existing, cls):
            raise KhademLabError(
                f"job type name {name!r} is already registered for {existing.__module__}."
                f"{existing.__qualname__}; register {cls.__module__}.{cls.__qualname__} under "
                "another name with register(cls, name=...)"
            )
        if existing is not None and existing is not cls:  # a redefinition replaces the old class
            self._names.pop(existing, None)
        self._by_name[name] = cls
        self._names[cls] = name
        return cls

    def resolve(self, name: str) -> type[QueueJob]:
        """The class registered as ``name``; :class:`UnregisteredJobError` if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnregisteredJobError(name, self._by_name) from None

    def name_of(self, job: QueueJob | type[QueueJob]) -> str:
        """The stored type name of a job or class (its class name if it is not registered)."""
        cls = job if isinstance(job, type) else type(job)
        return self._names.get(cls, cls.__name__)

    def is_registered(self, job: QueueJob | type[QueueJob]) -> bool:
        cls = job if isinstance(job, type) else type(job)
        return cls in self._names

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def unregister(self, name: str) -> None:
        cls = self._by_name.pop(name, None)
        if cls is not None:
            self._names.pop(cls, None)


#: The registry used unless a driver is given another.
default_registry = JobRegistry()


def register_queue_jobs(jobs: Iterable[type[QueueJob]], registry: JobRegistry | None = None) -> None:
    """Register several job classes at once (the spec's ``registerQueueJobs``)."""
    for cls in jobs:
        (registry or default_registry).register(cls)


@overload
def queue_job(cls: J) -> J: ...
@overload
def queue_job(*, name: str | None = None, registry: JobRegistry | None = None) -> Callable[[J], J]: ...


def queue_job(
    cls: J | None = None, *, name: str | None = None, registry: JobRegistry | None = None
) -> J | Callable[[J], J]:
    """Class decorator that registers a job class: ``@queue_job`` or ``@queue_job(name="x")``."""

    def decorate(klass: J) -> J:
        (registry or default_registry).register(klass, name)
        return klass

    return decorate(cls) if cls is not None else decorate


def _redefined(old: type[QueueJob], new: type[QueueJob]) -> bool:
    """True if ``new`` is the same class defined again (a notebook cell run twice, a module
    reloaded): same module and qualified name. Then its registration replaces the old one."""
    return old.__module__ == new.__module__ and old.__qualname__ == new.__qualname__
