"""What the Redis driver's scripts return, as records: a job's id, its body (a JSON header line, then
the payload's JSON) and its ``state:ID`` fields (:data:`FIELDS`), read back without ever raising
on data the driver did not write; and how optional script arguments are written."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from ..records import JobRecord, JobStatus

#: The ``state:ID`` fields a script returns for a job, after its id and body, in this order.
FIELDS = (
    "seq",
    "available_at",
    "attempts",
    "status",
    "reserved_until",
    "reserved_by",
    "last_error",
    "error_type",
    "failed_at",
    "queue",
)
COMPACT = (",", ":")


def opt_arg(value: object) -> str:
    """An optional script argument: "" for None, "=" + the text otherwise."""
    if value is None:
        return ""
    return "=" + (repr(value) if isinstance(value, float) else str(value))


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _header(text: str) -> list[Any] | None:
    """The body's header line ``[timeout, queue, type, display_name, max_retries, created_at,
    available_at]``, or None if it is not one the driver wrote (any field of the wrong kind)."""
    try:
        head = json.loads(text)
    except ValueError:
        return None
    if not isinstance(head, list) or len(head) != 7:
        return None
    timeout, queue, type_name, display_name, max_retries, created_at, first_at = head
    if (
        (timeout is not None and not _number(timeout))
        or not all(isinstance(t, str) for t in (queue, type_name, display_name))
        or not (is_int(max_retries) and max_retries >= 0)
        or not (_number(created_at) and _number(first_at))
    ):
        return None
    return head


def _float(text: str | None, default: float | None) -> float | None:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if value is None or math.isfinite(value) else default


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


_STATUSES = {status.value: status for status in JobStatus}
#: How many values a script returns per job: its id, its body, then its state fields.
RECORD_FIELDS = 2 + len(FIELDS)


def as_record(fields: Sequence[bytes | None]) -> JobRecord:
    """A record from a script's reply: the job's id, its body, then its state fields in the order
    of FIELDS. Absent fields keep a new job's values, or the header's. Never raises: a header or a
    field the driver did not write reads as damaged (the body is then kept whole as the payload,
    so running the job dead-letters it with the reason) or as a new job's value."""
    job_id, body, seq, available_at, attempts, status, until, by, error, error_type, failed_at, queue = (
        None if value is None else value.decode("utf-8", "replace") for value in fields
    )
    head_text, _, payload_text = (body or "").partition("\n")
    head = _header(head_text)
    if head is None:  # a damaged header: the body is kept whole, to report
        head = [None, "", "", "", 0, 0.0, 0.0]
        payload_text = body or ""
    timeout, head_queue, type_name, display_name, max_retries, created_at, first_at = head
    try:
        decoded = json.loads(payload_text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to decode (not ours)
        decoded = None
    return JobRecord(
        id=job_id or "",
        type=type_name,
        queue=queue or head_queue,
        payload=decoded if isinstance(decoded, dict) else payload_text,  # damaged: kept to report
        display_name=display_name,
        max_retries=max_retries,
        timeout=None if timeout is None else float(timeout),
        available_at=_float(available_at, float(first_at)) or 0.0,
        created_at=float(created_at),
        seq=_int(seq, _int(job_id, 0)),
        attempts=_int(attempts, 0),
        status=_STATUSES.get(status or "pending", JobStatus.PENDING),
        reserved_until=_float(until, None),
        reserved_by=by,
        last_error=error,
        error_type=error_type,
        failed_at=_float(failed_at, None),
    )
