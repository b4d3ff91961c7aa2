"""JSON in and out of storage. JSON only: never pickle.

A job becomes ``{"type": name, "payload": job.to_json()}``; the way back goes through the job
registry (:mod:`khadem_lab.registry`), so only registered classes can ever be built from storage.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .errors import SerializationError, UnregisteredJobError
from .job import QueueJob
from .registry import JobRegistry

#: The deepest nesting of lists and objects a payload may have (``{"a": [1]}`` is 2 levels). JSON
#: decoders recurse: a payload nested hundreds of levels deep would be stored and then break every
#: read of it with RecursionError.
MAX_PAYLOAD_DEPTH = 100
#: The largest payload, in bytes of compact JSON (1 MiB): a queue holds references to big data.
MAX_PAYLOAD_BYTES = 1024 * 1024


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Compact JSON text of a payload. json.dumps and JSONEncoder.encode build a new C encoder on every
# call; a payload is encoded once per dispatch, so one C encoder is built here and kept, with the
# arguments JSONEncoder.iterencode gives it for separators (",", ":") and allow_nan=False (and no
# circular-reference markers: a cyclic payload ends in RecursionError). Where the C accelerator is
# missing or differs, the pure-Python encoder does the same.
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_refuse)
try:
    _C_ENCODER = c_make_encoder(None, _refuse, encode_basestring_ascii, None, ":", ",", False, False, False)
except TypeError:  # pragma: no cover - no accelerator (c_make_encoder is None), or another signature
    _C_ENCODER = None


def _compact(payload: dict[str, Any]) -> str:
    if _C_ENCODER is not None:
        return "".join(_C_ENCODER(payload, 0))
    return _COMPACT.encode(payload)  # pragma: no cover


def encode_payload(job: QueueJob) -> dict[str, Any]:
    """``job.to_json()``, checked to be plain JSON (so nothing is stored that cannot be read back)."""
    return encode_payload_json(job)[0]


def encode_payload_json(job: QueueJob) -> tuple[dict[str, Any], str]:
    """``job.to_json()`` and its compact JSON text (the check's own output, so a driver that stores
    text does not encode the payload a second time). Refused with SerializationError: anything
    that is not plain JSON, nesting deeper than :data:`MAX_PAYLOAD_DEPTH` (a cycle too) and JSON
    text over :data:`MAX_PAYLOAD_BYTES`."""
    payload = job.to_json()
    if not isinstance(payload, dict):
        raise SerializationError(
            f"{type(job).__name__}.to_json() must return a dict, got {type(payload).__name__}"
        )
    depth = _depth_over(payload, MAX_PAYLOAD_DEPTH)
    if depth:
        raise SerializationError(
            f"{type(job).__name__} payload is nested deeper than MAX_PAYLOAD_DEPTH = {MAX_PAYLOAD_DEPTH} "
            f"levels of lists and objects (it reaches level {depth} or more, or refers to itself); "
            "store flatter data, or a reference to it"
        )
    try:
        text = _compact(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{type(job).__name__} cannot be stored as JSON: {exc}. Keep job fields to str, int, "
            "float, bool, None, lists and dicts, or override to_json()/from_json()."
        ) from exc
    if len(text) > MAX_PAYLOAD_BYTES:  # ASCII: characters are bytes
        raise SerializationError(
            f"{type(job).__name__} payload is {len(text)} bytes of JSON, over MAX_PAYLOAD_BYTES = "
            f"{MAX_PAYLOAD_BYTES} (1 MiB); store large data elsewhere and give the job a reference"
        )
    return payload, text


def _depth_over(payload: dict[str, Any], limit: int) -> int:
    """0 if ``payload`` nests at most ``limit`` levels; otherwise the first level found over it.
    Iterative (no recursion, whatever the depth); a cycle is found as too deep."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list, tuple)):
                if depth >= limit:
                    return depth + 1
                push((child, depth + 1))
    return 0


def decode_stored_payload(text: str | bytes | None) -> dict[str, Any] | str:
    """A stored payload's JSON text back to a dict; never raises. What cannot be read (not JSON,
    not an object, nested too deep for the decoder) comes back as text, kept to report: running it
    dead-letters the job with :func:`unreadable_reason` in its error."""
    try:
        decoded = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return str(text)


def unreadable_reason(text: str) -> str:
    """Why a stored payload text is not a job payload, for a person."""
    try:
        decoded = json.loads(text)
    except RecursionError:
        return f"it is nested too deep to decode (the limit for new jobs is {MAX_PAYLOAD_DEPTH} levels)"
    except ValueError as exc:
        return f"it is not valid JSON ({exc})"
    return f"it is JSON {type(decoded).__name__}, not an object"


def decode_job(type_name: str, payload: dict[str, Any] | str | None, registry: JobRegistry) -> QueueJob:
    """Rebuild a stored job through the registry; a clear error if that cannot be done.

    ``payload`` is a str when storage held something that is not a JSON object (a damaged row or
    line, kept as text by the driver so that the error can show it)."""
    if isinstance(payload, str):
        shown = payload if len(payload) <= 80 else payload[:77] + "..."
        what = f"stored {type_name} job" if type_name else "stored job (its type unreadable)"
        raise SerializationError(
            f"{what} has a payload that is not a JSON object: {shown!r} ({unreadable_reason(payload)})"
        )
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
