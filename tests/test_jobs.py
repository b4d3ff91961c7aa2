"""Jobs, the registry and JSON serialization; retry-delay strategies as pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from khadem_lab import (
    Explicit,
    Exponential,
    ExponentialJitter,
    Fixed,
    JobRegistry,
    QueueJob,
    SerializationError,
    UnregisteredJobError,
    queue_job,
)
from khadem_lab.backoff import delay_for
from khadem_lab.serialization import decode_job, encode_payload


@dataclass
class SendNotification(QueueJob):
    user_id: int
    message: str
    channel: str = "email"

    async def handle(self) -> None:
        return None


class LegacyJob(QueueJob):
    """Not a dataclass: its public attributes are its data."""

    def __init__(self, order_id: str, amount: float) -> None:
        self.order_id = order_id
        self.amount = amount
        self._cache: dict[str, Any] = {}

    async def handle(self) -> None:
        return None


class CustomJson(QueueJob):
    """The spec's SerializableJob: explicit to_json / from_json."""

    def __init__(self, tags: set[str]) -> None:
        self.tags = tags

    def to_json(self) -> dict[str, Any]:
        return {"tags": sorted(self.tags)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CustomJson:
        return cls(set(data["tags"]))

    async def handle(self) -> None:
        return None


def test_spec_defaults() -> None:
    job = SendNotification(1, "hi")
    assert job.display_name == "SendNotification"
    assert job.max_retries == 3
    assert job.retry_delay == timedelta(seconds=30)
    assert job.should_retry is True
    assert job.timeout is None
    assert job.queue == "default"
    assert job.attempt == 0


@pytest.mark.parametrize(
    "job",
    [SendNotification(7, "hello", "sms"), LegacyJob("o-1", 9.5), CustomJson({"b", "a"})],
    ids=["dataclass", "attributes", "custom"],
)
def test_round_trip_through_json_and_the_registry(job: QueueJob) -> None:
    registry = JobRegistry()
    registry.register(type(job))
    payload = encode_payload(job)
    rebuilt = decode_job(registry.name_of(job), payload, registry)
    assert type(rebuilt) is type(job)
    assert rebuilt.to_json() == job.to_json()
    assert "_cache" not in payload


def test_a_field_that_is_not_json_is_refused_at_dispatch_with_the_reason() -> None:
    with pytest.raises(SerializationError, match="SendNotification cannot be stored as JSON"):
        encode_payload(SendNotification(1, object()))  # type: ignore[arg-type]


def test_an_unregistered_type_says_how_to_register_it() -> None:
    registry = JobRegistry()
    with pytest.raises(UnregisteredJobError) as info:
        decode_job("SendNotification", {"user_id": 1, "message": "x"}, registry)
    assert "register_queue_jobs([SendNotification])" in str(info.value)
    assert "@queue_job" in str(info.value)


def test_a_payload_that_does_not_fit_the_class_is_a_serialization_error() -> None:
    registry = JobRegistry()
    registry.register(SendNotification)
    with pytest.raises(SerializationError, match="could not be rebuilt"):
        decode_job("SendNotification", {"nope": 1}, registry)


def test_decorator_and_explicit_names() -> None:
    registry = JobRegistry()

    @queue_job(name="notify.v2", registry=registry)
    class Notify(QueueJob):
        async def handle(self) -> None:
            return None

    assert registry.resolve("notify.v2") is Notify
    assert registry.name_of(Notify()) == "notify.v2"
    assert registry.names == ["notify.v2"]


def test_two_classes_cannot_share_a_name() -> None:
    registry = JobRegistry()
    registry.register(SendNotification)

    class SendNotification2(QueueJob):
        async def handle(self) -> None:
            return None

    with pytest.raises(Exception, match="already registered"):
        registry.register(SendNotification2, name="SendNotification")


def test_a_class_defined_again_replaces_its_registration() -> None:
    # A notebook cell run twice defines the class again: same module, same name, a new object
    registry = JobRegistry()
    namespace: dict[str, object] = {"QueueJob": QueueJob, "__name__": "__main__"}
    source = "class Report(QueueJob):\n    async def handle(self):\n        return 1\n"
    exec(source, namespace)
    first = namespace["Report"]
    registry.register(first)  # type: ignore[arg-type]
    exec(source, namespace)
    second = namespace["Report"]
    assert second is not first
    registry.register(second)  # type: ignore[arg-type]
    assert registry.resolve("Report") is second
    assert not registry.is_registered(first)  # type: ignore[arg-type]
    assert registry.names == ["Report"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (timedelta(seconds=30), [30, 30, 30, 30]),
        (Fixed(5), [5, 5, 5, 5]),
        (Exponential(), [30, 60, 120, 240]),
        (Exponential(base=10, factor=3, max_delay=timedelta(minutes=1)), [10, 30, 60, 60]),
        (Explicit([timedelta(seconds=1), 10, timedelta(minutes=1)]), [1, 10, 60, 60]),
    ],
)
def test_retry_delays(strategy: Any, expected: list[float]) -> None:
    assert [delay_for(strategy, attempt) for attempt in (1, 2, 3, 4)] == expected


def test_a_job_retried_thousands_of_times_keeps_its_backoff_ceiling() -> None:
    # An hourly ceiling on exponential backoff ("retry for ever, at most hourly"): past attempt
    # 1,025 the uncapped delay is beyond what a float holds, and the ceiling still applies
    hourly = Exponential(base=1, max_delay=timedelta(hours=1))
    assert [delay_for(hourly, attempt) for attempt in (12, 13, 1_025, 1_026, 5_000)] == [
        2048,
        3600,
        3600,
        3600,
        3600,
    ]
    jitter = ExponentialJitter(base=1, max_delay=timedelta(hours=1), seed=3)
    assert all(0 <= jitter.delay(attempt) <= 3600 for attempt in range(1_020, 1_100))
    # Without a ceiling the delay stays a finite number (the retry is due after the calendar ends)
    assert math.isfinite(delay_for(Exponential(base=30), 5_000))


def test_jitter_is_bounded_and_repeats_with_its_seed() -> None:
    def sequence(seed: int) -> list[float]:
        jitter = ExponentialJitter(seed=seed)
        return [jitter.delay(attempt) for attempt in (1, 2, 3, 1, 2, 3)]

    assert sequence(42) == sequence(42)
    assert sequence(42) != sequence(43)
    jitter = ExponentialJitter(seed=1)
    draws = [jitter.delay(3) for _ in range(200)]
    assert all(0 <= d <= 120 for d in draws) and len(set(draws)) == 200


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        delay_for(Fixed(-1), 1)
    with pytest.raises(ValueError, match="at least one"):
        Explicit([])
