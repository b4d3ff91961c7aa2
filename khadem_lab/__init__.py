"""khadem_lab: the Khadem queue system in Python, on an injectable clock.

The same jobs, drivers and workers run on real time (:class:`SystemClock`) or on simulated time
(:class:`Simulation`), where a notebook steps the clock and sees exactly which job ran when.
"""

from .backoff import Explicit, Exponential, ExponentialJitter, Fixed, RetryStrategy
from .clock import Clock, SystemClock, VirtualClock
from .config import DriverConfig
from .dlq import DeadLetter, DeadLetterQueue
from .drivers import (
    BaseQueueDriver,
    FileStorageDriver,
    InMemoryDriver,
    QueueFactory,
    RedisStorageDriver,
    SQLiteDriver,
    SynchronousDriver,
)
from .errors import (
    BackgroundTaskError,
    ConfigError,
    DispatchOutcomeUnknown,
    JobDefinitionError,
    JobIdConflict,
    JobStalledError,
    JobTimeoutError,
    KhademLabError,
    LivelockError,
    PermanentFailure,
    SerializationError,
    SimulationError,
    SimulationStalled,
    StorageError,
    UnknownDriverError,
    UnregisteredJobError,
)
from .events import EventBus, EventKind, EventLog, QueueEvent
from .job import QueueJob
from .manager import QueueManager
from .metrics import QueueMetrics
from .monitor import QueueMonitor, Thresholds
from .records import JobRecord, JobStatus, QueueCounts
from .registry import JobRegistry, default_registry, queue_job, register_queue_jobs
from .simulation import DEFAULT_START, Simulation, SimulationReplacedWarning
from .worker import Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_START",
    "BackgroundTaskError",
    "BaseQueueDriver",
    "Clock",
    "ConfigError",
    "DispatchOutcomeUnknown",
    "DeadLetter",
    "DeadLetterQueue",
    "DriverConfig",
    "EventBus",
    "EventKind",
    "EventLog",
    "Explicit",
    "Exponential",
    "ExponentialJitter",
    "FileStorageDriver",
    "Fixed",
    "InMemoryDriver",
    "JobRecord",
    "JobRegistry",
    "JobStatus",
    "JobDefinitionError",
    "JobIdConflict",
    "JobStalledError",
    "JobTimeoutError",
    "KhademLabError",
    "LivelockError",
    "PermanentFailure",
    "QueueCounts",
    "QueueEvent",
    "QueueFactory",
    "QueueJob",
    "QueueManager",
    "QueueMetrics",
    "QueueMonitor",
    "RedisStorageDriver",
    "RetryStrategy",
    "SQLiteDriver",
    "SerializationError",
    "Simulation",
    "SimulationError",
    "SimulationReplacedWarning",
    "SimulationStalled",
    "StorageError",
    "SynchronousDriver",
    "SystemClock",
    "Thresholds",
    "UnknownDriverError",
    "UnregisteredJobError",
    "VirtualClock",
    "Worker",
    "WorkerStats",
    "default_registry",
    "queue_job",
    "register_queue_jobs",
]
