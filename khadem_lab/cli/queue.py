"""What every queue command needs: the config file, the driver it names, the jobs module."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..clock import SystemClock
from ..config import check_seconds, parse_queue_config, read_config_file
from ..drivers.base import BaseQueueDriver
from ..drivers.factory import QueueFactory
from ..errors import UnknownDriverError
from ..manager import QueueManager
from ..registry import default_registry
from .exits import JOBS_MODULE, USAGE, CommandError


def open_queue(
    config_path: str, driver_name: str | None, *, poll_interval: float | None = None
) -> QueueManager:
    """A manager on the system clock holding the one driver ``driver_name`` of the config file
    (its default if None). The driver must be one that other processes share (file, SQLite,
    Redis, ...): a command works on a queue that outlives it."""
    data = read_config_file(config_path)
    settings = parse_queue_config(data)
    if not settings.drivers:
        raise CommandError(
            f"{config_path} configures no driver: add queue.drivers (see README, Command line)", USAGE
        )
    name = (
        driver_name
        or settings.default
        or (next(iter(settings.drivers)) if len(settings.drivers) == 1 else None)
    )
    if name is None:
        raise CommandError(
            f"{config_path} configures several drivers {sorted(settings.drivers)} and no queue.default: "
            "pick one with --driver NAME",
            USAGE,
        )
    spec = settings.drivers.get(name)
    if spec is None:
        raise UnknownDriverError(name, settings.drivers, where=f"drivers configured in {config_path}")
    config = spec.config
    if poll_interval is not None:
        seconds = check_seconds("--poll-interval", poll_interval)
        config = dataclasses.replace(config, poll_interval=timedelta(seconds=seconds))
    clock = SystemClock()
    driver = QueueFactory.create(spec.driver_type, config, dict(spec.options), clock)
    if not driver.shared_between_processes:
        raise CommandError(
            f"driver {name!r} ({spec.driver_type}) keeps its jobs inside one process, so a command cannot "
            "reach them: configure a file, sqlite or redis driver",
            USAGE,
        )
    return QueueManager(driver=driver, clock=clock)


def import_jobs(module: str) -> list[str]:
    """Import the module that registers the job classes (``package.module``, or a ``.py`` file);
    returns the registered type names."""
    before = set(default_registry.names)
    try:
        if module.endswith(".py") or "/" in module:
            path = Path(module)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            assert spec is not None and spec.loader is not None
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = loaded
            spec.loader.exec_module(loaded)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: modules beside you import
            importlib.import_module(module)
    except Exception as exc:
        raise CommandError(
            f"cannot import the jobs module {module!r}: {type(exc).__name__}: {exc}. Give an import "
            "path on sys.path (package.module) or the path of a .py file",
            JOBS_MODULE,
        ) from exc
    names = sorted(set(default_registry.names) - before) or sorted(default_registry.names)
    if not names:
        raise CommandError(
            f"the jobs module {module!r} registers no job class: decorate each with @queue_job, or call "
            "register_queue_jobs([...]) in it",
            JOBS_MODULE,
        )
    return names


async def first_read(driver: BaseQueueDriver) -> dict[str, Any]:
    """Read the driver's statistics once: a storage that cannot be reached fails here, at once,
    with its StorageError (exit code 3), not later inside the worker loop."""
    return await driver.get_stats()
