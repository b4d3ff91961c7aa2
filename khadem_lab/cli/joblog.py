"""A worker process's log: one line per job through :mod:`logging`, as text or as JSON.

Each line carries the job id, type, attempt, queue and worker as ``extra`` fields, so a JSON log
(``--log-format json``) gives a collector one object per line with those keys.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from ..events import EventKind, QueueEvent

log = logging.getLogger("khadem_lab.worker")

#: The events that end a run (one log line each), and the word the line uses.
OUTCOMES = {
    EventKind.COMPLETED: "completed",
    EventKind.RETRY_SCHEDULED: "failed, retry scheduled",
    EventKind.DEAD_LETTERED: "failed for good, dead-lettered",
    EventKind.DISCARDED: "failed for good, discarded",
    EventKind.LEASE_LOST: "lost its lease (another delivery holds the job)",
}
FIELDS = ("event", "job_id", "job_type", "attempt", "queue", "worker", "duration", "error", "available_at")


class JobLogger:
    """Subscribe to a driver's events: logs each run's outcome (INFO, WARNING for failures) and,
    at DEBUG, each start."""

    KINDS = frozenset(OUTCOMES) | {EventKind.STARTED}

    def __call__(self, event: QueueEvent) -> None:
        kind = event.kind
        fields: dict[str, Any] = {
            "event": kind.value,
            "job_id": event.job_id,
            "job_type": event.job_type,
            "attempt": event.attempt,
            "queue": event.queue,
            "worker": event.worker,
            "duration": None if event.duration is None else round(event.duration, 6),
            "error": event.error,
            "available_at": None if event.available_at is None else _iso(event.available_at),
        }
        head = f"job {event.job_id} {event.job_type} attempt {event.attempt}"
        if kind is EventKind.STARTED:
            log.debug("%s started on %s", head, event.worker, extra={"job": fields})
            return
        text = f"{head} {OUTCOMES[kind]}"
        if event.duration is not None:
            text += f" in {event.duration:.3f} s"
        if kind is EventKind.RETRY_SCHEDULED and event.available_at is not None:
            text += f", due {_iso(event.available_at)}"
        if event.error and kind is not EventKind.COMPLETED:
            text += f": {event.error}"
        level = logging.INFO if kind is EventKind.COMPLETED else logging.WARNING
        log.log(level, "%s", text, extra={"job": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the job's fields if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            data.update(job)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(fmt: str, level: str) -> None:
    """Log to stderr, as text (``fmt="text"``) or JSON lines (``fmt="json"``)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
