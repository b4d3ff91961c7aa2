"""Configuration: :class:`DriverConfig` and the spec's ``queue`` config layout.

The layout (a dict, or a JSON or YAML file)::

    queue:
      default: memory
      drivers:
        memory: {driver: memory, track_metrics: true, use_dlq: true, max_retries: 3}
        sync:   {driver: sync}

Common keys of every driver: ``driver`` (its type; defaults to the entry's name), ``track_metrics``,
``use_dlq``, ``max_retries``, ``timeout`` (default job timeout, seconds), ``lease_time`` and
``poll_interval`` (seconds). Other keys are the driver type's own options (``path``, ``host``, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import ConfigError

COMMON_KEYS = ("driver", "track_metrics", "use_dlq", "max_retries", "timeout", "lease_time", "poll_interval")


@dataclass(frozen=True)
class DriverConfig:
    """Settings every driver has.

    ``lease_time``: how long a reserved job stays invisible to other workers beyond its own
    ``timeout``; if its worker dies, the job is delivered again once the lease has run out.
    ``poll_interval``: how often an idle worker looks for jobs that another process may have
    added (only drivers shared between processes poll; in-process drivers wake workers at once).
    """

    name: str
    track_metrics: bool = True
    use_dlq: bool = True
    max_retries: int = 3
    default_job_timeout: timedelta | None = None
    lease_time: timedelta = timedelta(minutes=5)
    poll_interval: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        where = f"DriverConfig({self.name!r})"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", self.name, "a non-empty string")
        for key in ("track_metrics", "use_dlq"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{where}.{key}", getattr(self, key), "true or false")
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigError(f"{where}.max_retries", self.max_retries, "an integer >= 0")
        for key in ("default_job_timeout", "lease_time", "poll_interval"):
            value = getattr(self, key)
            if value is None and key == "default_job_timeout":
                continue
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ConfigError(f"{where}.{key}", value, "a positive timedelta")


@dataclass(frozen=True)
class DriverSpec:
    """One entry of ``queue.drivers``: which driver type, its common config, its own options."""

    name: str
    driver_type: str
    config: DriverConfig
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueSettings:
    """A parsed ``queue`` section."""

    default: str | None
    drivers: dict[str, DriverSpec]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("config file", str(path), f"a readable JSON or YAML file ({exc.strerror})") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config file", str(path), f"valid JSON ({exc})") from exc
    elif path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is a declared dependency
            raise ConfigError("config file", str(path), "JSON, or install PyYAML to read YAML") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("config file", str(path), f"valid YAML ({exc})") from exc
    else:
        raise ConfigError("config file", str(path), "a file ending in .json, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError("config file", str(path), "a mapping at the top level")
    return data


def parse_queue_config(config: Mapping[str, Any] | str | Path | None) -> QueueSettings:
    """Validate a config (dict, file path, or None) and return its drivers."""
    if config is None:
        return QueueSettings(default=None, drivers={})
    if isinstance(config, (str, Path)):
        config = read_config_file(config)
    if not isinstance(config, Mapping):
        raise ConfigError("config", config, "a dict, or the path of a JSON or YAML file")
    section = config.get("queue", config)
    if not isinstance(section, Mapping):
        raise ConfigError("queue", section, "a mapping with 'default' and 'drivers'")
    unknown = set(section) - {"default", "drivers", "driver"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"queue.{key}", section[key], "one of the keys 'default', 'drivers', 'driver'")

    drivers_raw = section.get("drivers", {})
    if not isinstance(drivers_raw, Mapping):
        raise ConfigError("queue.drivers", drivers_raw, "a mapping of driver name -> settings")
    drivers: dict[str, DriverSpec] = {}
    for name, entry in drivers_raw.items():
        drivers[str(name)] = _parse_driver(str(name), entry)

    default = section.get("default")
    if "driver" in section:  # the spec's short form: {'queue': {'driver': 'database'}}
        short = section["driver"]
        if not isinstance(short, str) or not short:
            raise ConfigError("queue.driver", short, "a driver type name")
        drivers.setdefault(short, _parse_driver(short, {"driver": short}))
        default = default or short
    if default is not None and not isinstance(default, str):
        raise ConfigError("queue.default", default, "the name of a driver")
    if default is not None and drivers and default not in drivers:
        raise ConfigError("queue.default", default, f"one of the configured drivers {sorted(drivers)}")
    return QueueSettings(default=default, drivers=drivers)


def _parse_driver(name: str, entry: Any) -> DriverSpec:
    where = f"queue.drivers.{name}"
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise ConfigError(where, entry, "a mapping of settings")
    driver_type = entry.get("driver", name)
    if not isinstance(driver_type, str) or not driver_type:
        raise ConfigError(f"{where}.driver", driver_type, "a driver type name such as 'memory'")
    kwargs: dict[str, Any] = {"name": name}
    for key in ("track_metrics", "use_dlq"):
        if key in entry:
            if not isinstance(entry[key], bool):
                raise ConfigError(f"{where}.{key}", entry[key], "true or false")
            kwargs[key] = entry[key]
    if "max_retries" in entry:
        value = entry["max_retries"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}.max_retries", value, "an integer >= 0")
        kwargs["max_retries"] = value
    for key, attr in (
        ("timeout", "default_job_timeout"),
        ("lease_time", "lease_time"),
        ("poll_interval", "poll_interval"),
    ):
        if key in entry and not (key == "timeout" and entry[key] is None):
            kwargs[attr] = _seconds(f"{where}.{key}", entry[key])
    options = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
    return DriverSpec(name=name, driver_type=driver_type, config=DriverConfig(**kwargs), options=options)


def _seconds(key: str, value: Any) -> timedelta:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(key, value, "a positive number of seconds")
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(key, value, "a positive number of seconds")
    return timedelta(seconds=seconds)
