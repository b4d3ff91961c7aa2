"""Prometheus metrics for a driver, through ``prometheus_client`` (``pip install
'khadem-lab[prometheus]'``).

:class:`PrometheusMetrics` subscribes to a driver's lifecycle events and keeps, per driver, queue
and job type: counters of dispatched, started, completed, failed, retried and dead-lettered jobs,
a histogram of run durations, and gauges of the queue's depth by state (refreshed by
:meth:`PrometheusMetrics.refresh`, which reads the storage). ``khadem-lab work --metrics-port
PORT`` serves them::

    metrics = PrometheusMetrics(qm.driver)
    metrics.serve(9100)                    # GET http://host:9100/metrics
    await metrics.refresh()                # depth gauges, e.g. every few seconds

Each instance has its own ``CollectorRegistry`` (pass ``registry=`` to use another, such as
``prometheus_client.REGISTRY``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .errors import KhademLabError
from .events import EventKind, QueueEvent

if TYPE_CHECKING:
    from .drivers.base import BaseQueueDriver

log = logging.getLogger(__name__)

#: Run durations, seconds: from a millisecond to an hour.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_COUNTED = {
    EventKind.DISPATCHED: "dispatched",
    EventKind.STARTED: "started",
    EventKind.COMPLETED: "completed",
    EventKind.FAILED: "failed",
    EventKind.RETRY_SCHEDULED: "retried",
    EventKind.DEAD_LETTERED: "dead_lettered",
    EventKind.DISCARDED: "discarded",
    EventKind.LEASE_EXPIRED: "lease_expired",
    EventKind.LEASE_LOST: "lease_lost",
    EventKind.REQUEUED: "requeued",
}


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise KhademLabError(
            "Prometheus metrics need prometheus_client: pip install 'khadem-lab[prometheus]'"
        ) from None
    return prometheus_client


class PrometheusMetrics:
    """Prometheus counters, a duration histogram and depth gauges of one driver's queue."""

    def __init__(self, driver: BaseQueueDriver, *, registry: Any = None, namespace: str = "khadem") -> None:
        client = _client()
        self.driver = driver
        self.registry = registry if registry is not None else client.CollectorRegistry()
        labels = ("driver", "queue", "job_type")
        self.counters = {
            kind: client.Counter(
                f"jobs_{name}",
                f"Jobs {name.replace('_', ' ')} (event '{kind.value}'), per queue and job type",
                labels,
                namespace=namespace,
                registry=self.registry,
            )
            for kind, name in _COUNTED.items()
        }
        self.duration = client.Histogram(
            "job_duration_seconds",
            "Duration of each run of a job, by outcome (completed or failed)",
            (*labels, "outcome"),
            namespace=namespace,
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self.depth = client.Gauge(
            "queue_depth",
            "Jobs the storage holds, by state (ready, delayed, reserved, dead), at the last refresh",
            ("driver", "state"),
            namespace=namespace,
            registry=self.registry,
        )
        self._unsubscribe = driver.subscribe(self, _COUNTED)

    def __call__(self, event: QueueEvent) -> None:
        labels = (event.driver, event.queue, event.job_type)
        self.counters[event.kind].labels(*labels).inc()
        if event.duration is not None and event.kind in (EventKind.COMPLETED, EventKind.FAILED):
            self.duration.labels(*labels, event.kind.value).observe(event.duration)

    async def refresh(self) -> None:
        """Read the queue's counts from storage into the depth gauges."""
        stats = await self.driver.get_stats()
        name = self.driver.name
        self.depth.labels(name, "ready").set(stats["ready_jobs"])
        self.depth.labels(name, "delayed").set(stats["delayed_jobs"])
        self.depth.labels(name, "reserved").set(stats["processing_count"])
        if "dlq" in stats:
            self.depth.labels(name, "dead").set(stats["dlq"]["total_jobs"])

    async def refresh_every(self, seconds: float) -> None:
        """Refresh the depth gauges every ``seconds`` of the driver's clock, until cancelled; a
        failed read is logged and tried again next time."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("could not refresh the queue depth gauges of %s", self.driver.name)
            await asyncio.sleep(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` over HTTP on ``port`` (a thread of ``prometheus_client``); returns
        its server."""
        return _client().start_http_server(port, addr=addr, registry=self.registry)

    def exposition(self) -> str:
        """The metrics in the Prometheus text format, as a scrape would get them."""
        return str(_client().generate_latest(self.registry).decode())

    def close(self) -> None:
        """Stop counting this driver's events."""
        self._unsubscribe()
