"""QueueFactory: maps a driver type name in a config to something that builds the driver.

Built in: ``memory`` and ``sync``. A user-written driver is selected by config once registered::

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
from .memory import InMemoryDriver
from .sync import SynchronousDriver

DriverFactory = Callable[[DriverConfig, dict[str, Any], Clock], BaseQueueDriver]


def _no_options(cls: type[BaseQueueDriver]) -> DriverFactory:
    def build(config: DriverConfig, options: dict[str, Any], clock: Clock) -> BaseQueueDriver:
        if options:
            key = sorted(options)[0]
            raise ConfigError(
                f"queue.drivers.{config.name}.{key}",
                options[key],
                f"no such option for a {cls.driver_type!r} driver (its options: track_metrics, "
                "use_dlq, max_retries, timeout, lease_time, poll_interval)",
            )
        return cls(config, clock=clock)

    return build


class QueueFactory:
    """The global registry of driver types."""

    _factories: ClassVar[dict[str, DriverFactory | BaseQueueDriver]] = {
        "memory": _no_options(InMemoryDriver),
        "sync": _no_options(SynchronousDriver),
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
                driver_type, cls._factories, where="known driver types (QueueFactory)"
            ) from None
        if isinstance(factory, BaseQueueDriver):
            return factory
        return factory(config, options, clock)
