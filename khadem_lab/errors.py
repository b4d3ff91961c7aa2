"""The package's errors: one root, :class:`KhademLabError`, and one subclass per kind of trouble.

Every message says what was wrong, with the offending value, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable


class KhademLabError(Exception):
    """Root of every error raised by khadem_lab."""


class ConfigError(KhademLabError, ValueError):
    """Raised when a queue configuration has a missing, unknown or invalid value."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"invalid queue config: {key} = {value!r}; expected {expected}")


class UnknownDriverError(KhademLabError, KeyError):
    """Raised when a driver name is neither registered with the manager nor with QueueFactory."""

    def __init__(self, name: str, known: Iterable[str], where: str = "registered drivers") -> None:
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(repr(n) for n in self.known) or "none"
        super().__init__(
            f"unknown queue driver {name!r}; {where}: {listed}. "
            "Register it with QueueManager.register_driver() or QueueFactory.register_driver()."
        )

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class StorageError(KhademLabError):
    """Raised when a driver's storage cannot be used: a corrupt or unreadable file or database, a
    server that does not answer. The message names the file or server and what is wrong."""


class UnregisteredJobError(KhademLabError, LookupError):
    """Raised when a stored job's type name is not in the job registry."""

    def __init__(self, type_name: str, known: Iterable[str]) -> None:
        self.type_name = type_name
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"job type {type_name!r} is not registered (registered: {listed}). "
            f"Call register_queue_jobs([{type_name}]) or decorate the class with @queue_job "
            "in every process that dispatches or works this queue."
        )


class SerializationError(KhademLabError, TypeError):
    """Raised when a job cannot be turned into JSON or rebuilt from it."""


class JobTimeoutError(KhademLabError, TimeoutError):
    """Raised (and recorded as the attempt's error) when a job runs past its timeout."""


class PermanentFailure(KhademLabError):
    """Raise this from ``handle()`` for a failure that a retry cannot fix (invalid data, 404, ...).

    The job goes straight to the dead-letter queue, whatever attempts it has left.
    """


class SimulationError(KhademLabError, RuntimeError):
    """Raised when a simulation is used in a way that cannot work (wrong thread, closed, ...)."""


class LivelockError(SimulationError):
    """Raised when tasks keep running at one virtual instant without ever letting time move."""


class JobStalledError(KhademLabError, TimeoutError):
    """Raised (and recorded as the attempt's error) when a job attempt held virtual time still for
    longer than the simulation's ``stall_timeout`` of real time and was stopped."""


class SimulationStalled(SimulationError):
    """Raised when a coroutine run on the virtual clock waits for something that can never happen."""


class BackgroundTaskError(SimulationError):
    """Raised after an advance when a background task failed; the first failure is the cause."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"a background task failed during the simulation: {type(first).__name__}: {first}{more}"
        )


class JobDefinitionError(KhademLabError, TypeError):
    """Raised when a QueueJob subclass is defined in a way that cannot run (its ``handle`` is not an
    ``async def``); raised as the class is defined, naming the class and the fix."""


class JobIdConflict(KhademLabError, ValueError):
    """Raised when a dispatch gives a ``job_id`` that is taken by a different job (another type or
    other data): the job already stored under that id is kept, nothing new is stored."""

    def __init__(self, job_id: str, type_name: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"job_id {job_id!r} is already taken by a different job than this {type_name} (another "
            "type or other data); nothing was stored. A retry of the same dispatch is safe, but a "
            "new job needs an id of its own (e.g. include what makes it unique: 'order-42-refund')"
        )


class DispatchOutcomeUnknown(KhademLabError):
    """Raised when a dispatch was sent but its reply was lost (the connection closed after the
    command left): the jobs may or may not be stored. ``job_ids`` are the ids to check (None where
    the store would have chosen the id)."""

    def __init__(self, job_ids: list[str] | None, count: int, cause: str) -> None:
        self.job_ids = job_ids
        self.count = count
        self.cause = cause
        if job_ids is not None:
            shown = ", ".join(repr(i) for i in job_ids[:5]) + (f", ... ({count} in all)" if count > 5 else "")
            what = f"job id(s) {shown}"
            advice = "Dispatching them again with the same job_id is safe: nothing is stored twice."
        else:
            what = f"{count} job(s) with ids the store would have chosen"
            advice = (
                "Dispatching them again may store them twice; give each job a job_id (dispatch(job, "
                "job_id='order-42')) so that a retry is safe."
            )
        super().__init__(
            f"the outcome of a dispatch of {what} is unknown: {cause}. The command was sent, so they "
            f"may be stored (all of them: a dispatch is one atomic step) or not at all. {advice}"
        )
