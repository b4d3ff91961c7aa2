"""JSON in and out of storage. JSON only: never pickle.

A job becomes ``{"type": name, "payload": job.to_json()}``; the way back goes through the job
registry (:mod:`khadem_lab.registry`), so only registered classes can ever be built from storage.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import SerializationError, UnregisteredJobError
from .job import QueueJob
from .registry import JobRegistry


def encode_payload(job: QueueJob) -> dict[str, Any]:
    """``job.to_json()``, checked to be plain JSON (so nothing is stored that cannot be read back)."""
    payload = job.to_json()
    if not isinstance(payload, dict):
        raise SerializationError(
            f"{type(job).__name__}.to_json() must return a dict, got {type(payload).__name__}"
        )
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{type(job).__name__} cannot be stored as JSON: {exc}. Keep job fields to str, int, "
            "float, bool, None, lists and dicts, or override to_json()/from_json()."
        ) from exc
    return payload


def decode_job(type_name: str, payload: dict[str, Any] | str | None, registry: JobRegistry) -> QueueJob:
    """Rebuild a stored job through the registry; a clear error if that cannot be done.

    ``payload`` is a str when storage held something that is not a JSON object (a damaged row or
    line, kept as text by the driver so that the error can show it)."""
    if isinstance(payload, str):
        shown = payload if len(payload) <= 80 else payload[:77] + "..."
        raise SerializationError(f"stored {type_name} job has a payload that is not a JSON object: {shown!r}")
    cls = registry.resolve(type_name)  # UnregisteredJobError names the fix
    try:
        return cls.from_json(dict(payload or {}))
    except UnregisteredJobError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"stored {type_name} job could not be rebuilt by {cls.__name__}.from_json(): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def dumps(data: Any) -> str:
    """Compact, key-sorted JSON (stable bytes for the same data)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text)
