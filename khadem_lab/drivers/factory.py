"""QueueFactory: maps a driver type name in a config to something that builds the driver.

Built in: ``memory``, ``sync``, ``sqlite``, ``file`` and ``redis``. A user-written driver is selected
by config once registered::

    QueueFactory.register_driver("database", lambda config, options, clock: MyDriver(config, **options))
    QueueFactory.register_driver("database", MyDriver(...))   # or an instance, as in the spec
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ..clock import Clock
from ..config import DriverConfig
from ..errors import ConfigError, UnknownDriverError
from .base import BaseQueueDriver
from .file import FileStorageDriver
from .memory import InMemoryDriver
from .redis import RedisStorageDriver
from .sqlite import SQLiteDriver
from .sync import SynchronousDriver

DriverFactory = Callable[[DriverConfig, dict[str, Any], Clock], BaseQueueDriver]


COMMON_OPTIONS = "track_metrics, use_dlq, max_retries, timeout, lease_time, poll_interval"


def driver_factory(cls: type[BaseQueueDriver], **options: str) -> DriverFactory:
    """A factory for ``cls`` whose config options (keys) map to constructor arguments (values).
    Any other option is refused with the list of what the driver type takes."""

    def build(config: DriverConfig, given: dict[str, Any], clock: Clock) -> BaseQueueDriver:
        unknown = sorted(set(given) - set(options))
        if unknown:
            own = ", ".join(options)
            raise ConfigError(
                f"queue.drivers.{config.name}.{unknown[0]}",
                given[unknown[0]],
                f"one of the options of a {cls.driver_type!r} driver: "
                f"{own + ', ' if own else ''}{COMMON_OPTIONS}",
            )
        kwargs = {options[key]: value for key, value in given.items()}
        return cls(config, clock=clock, **kwargs)

    return build


class QueueFactory:
    """The global registry of driver types."""

    _factories: ClassVar[dict[str, DriverFactory | BaseQueueDriver]] = {
        "memory": driver_factory(InMemoryDriver),
        "sync": driver_factory(SynchronousDriver),
        "sqlite": driver_factory(SQLiteDriver, path="path", fsync="fsync", busy_timeout="busy_timeout"),
        "file": driver_factory(FileStorageDriver, path="storage_path", fsync="fsync"),
        "redis": driver_factory(  # redis-py is imported when a driver is built, not before
            RedisStorageDriver,
            host="host",
            port="port",
            password="password",
            db="db",
            url="url",
            queue_name="queue_name",
            socket_timeout="socket_timeout",
            cluster="cluster",
            nodes="nodes",
        ),
    }

    @classmethod
    def register_driver(cls, name: str, factory: DriverFactory | BaseQueueDriver) -> None:
        """Make driver type ``name`` available to configs: a factory ``(config, options, clock)
        -> driver``, or a ready driver instance."""
        if not isinstance(factory, BaseQueueDriver) and not callable(factory):
            raise TypeError(f"register_driver({name!r}) needs a driver or a factory, got {factory!r}")
        cls._factories[name] = factory

    @classmethod
    def unregister_driver(cls, name: str) -> None:
        cls._factories.pop(name, None)

    @classmethod
    def driver_types(cls) -> list[str]:
        return sorted(cls._factories)

    @classmethod
    def create(
        cls, driver_type: str, config: DriverConfig, options: dict[str, Any], clock: Clock
    ) -> BaseQueueDriver:
        """Build a driver of ``driver_type`` (an error listing the known types if there is none)."""
        try:
            factory = cls._factories[driver_type]
        except KeyError:
            raise UnknownDriverError(
                driver_type, cls._factories, where="driver types known to QueueFactory"
            ) from None
        if isinstance(factory, BaseQueueDriver):
            return factory
        return factory(config, options, clock)
