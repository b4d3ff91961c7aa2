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

#: The shortest duration a setting may have: one microsecond, the finest a ``timedelta`` holds
#: (a shorter one would silently become ``timedelta(0)``).
MIN_SECONDS = 1e-6
#: The longest duration a setting may have: 1e9 seconds (about 31 years). Longer is a mistake,
#: and times far beyond it no longer fit a ``timedelta`` or a timestamp.
MAX_SECONDS = 1e9
SECONDS_RANGE = "a positive number of seconds, from 0.000001 to 1e9 (about 31 years)"


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
            if (
                not isinstance(value, timedelta)
                or value <= timedelta(0)
                or value.total_seconds() > MAX_SECONDS
            ):
                raise ConfigError(
                    f"{where}.{key}", value, f"a positive timedelta of at most {MAX_SECONDS:g} s"
                )


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
    return timedelta(seconds=check_seconds(key, value))


def check_seconds(key: str, value: Any, *, minimum: float = MIN_SECONDS) -> float:
    """``value`` (a number of seconds or a timedelta) as float seconds, from ``minimum`` to
    :data:`MAX_SECONDS`; otherwise a ConfigError naming ``key`` and the value as given."""
    expected = (
        SECONDS_RANGE
        if minimum == MIN_SECONDS
        else f"a number of seconds, from {minimum:g} to {MAX_SECONDS:g} (about 31 years)"
    )
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(key, value, expected)
    if math.isnan(seconds) or not minimum <= seconds <= MAX_SECONDS:
        raise ConfigError(key, value, expected)
    return seconds


def check_storage_path(key: str, value: Any, what: str) -> Path:
    """The path of a durable driver's storage (``what``: "a database file", "a directory"): a str
    or path-like, not empty, not ``:memory:`` (that would be a private, non-durable queue)."""
    expected = f"the path of {what} (a non-empty string)"
    if isinstance(value, Path):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif hasattr(value, "__fspath__") and isinstance(value.__fspath__(), str):
        text = value.__fspath__()
    else:
        raise ConfigError(key, value, expected)
    if not text.strip() or "\x00" in text:
        raise ConfigError(key, value, expected)
    if text.strip() == ":memory:" or text.startswith("file::memory:"):
        raise ConfigError(
            key,
            value,
            f"{expected}; ':memory:' would be a private queue that is lost on exit: "
            "use the memory driver for that",
        )
    return Path(text)
