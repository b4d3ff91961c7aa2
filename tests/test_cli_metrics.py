"""Prometheus metrics through prometheus_client: counters and histograms per queue and job type,
depth gauges; and a real worker process serving them (``work --metrics-port``), scraped."""

from __future__ import annotations

import asyncio
import signal
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from khadem_lab import InMemoryDriver, QueueJob, QueueManager, Simulation

from .cli_jobs import Note
from .cli_support import dispatch, log_lines, start, wait_until, write_config

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from khadem_lab.prometheus import PrometheusMetrics  # noqa: E402


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Step(QueueJob):
    seconds: float
    fails: bool = False
    max_retries = 0

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)
        if self.fails:
            raise ValueError("no")


def test_counters_histograms_and_depth_gauges_per_queue_and_job_type() -> None:
    with Simulation() as sim:
        qm = QueueManager(driver=InMemoryDriver(), clock=sim.clock)
        metrics = PrometheusMetrics(qm.driver)
        sim.run(qm.dispatch_batch([Step(0.3), Step(2), Step(7, fails=True)]))
        sim.run(qm.dispatch(Step(1), queue="mail"))
        sim.run(qm.dispatch(Step(1), delay=600))
        sim.run(qm.start_worker(run_in_background=True))
        sim.advance(seconds=60)
        sim.run(metrics.refresh())
        got = samples(metrics.exposition())
    job = (("driver", "memory"), ("job_type", "Step"), ("queue", "default"))
    mail = (("driver", "memory"), ("job_type", "Step"), ("queue", "mail"))
    assert got[("khadem_jobs_dispatched_total", job)] == 4
    assert got[("khadem_jobs_dispatched_total", mail)] == 1
    assert got[("khadem_jobs_completed_total", job)] == 2
    assert got[("khadem_jobs_completed_total", mail)] == 1
    assert got[("khadem_jobs_failed_total", job)] == 1
    assert got[("khadem_jobs_dead_lettered_total", job)] == 1
    completed = (*job[:2], ("le", "0.5"), ("outcome", "completed"), job[2])
    assert got[("khadem_job_duration_seconds_bucket", tuple(sorted(completed)))] == 1  # the 0.3 s run
    assert got[("khadem_job_duration_seconds_count", tuple(sorted((*job, ("outcome", "completed")))))] == 2
    assert got[("khadem_job_duration_seconds_sum", tuple(sorted((*job, ("outcome", "failed")))))] == 7
    depth = {
        state: got[("khadem_queue_depth", (("driver", "memory"), ("state", state)))]
        for state in ("ready", "delayed", "reserved", "dead")
    }
    assert depth == {"ready": 0, "delayed": 1, "reserved": 0, "dead": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.realtime
def test_a_worker_process_serves_its_metrics_to_a_scrape(tmp_path: Path) -> None:
    # Given a worker process serving metrics, and five jobs it works
    config = write_config(tmp_path, "sqlite")
    log, err = tmp_path / "jobs.log", tmp_path / "w.log"
    dispatch(config, [Note(f"n{i}", str(log)) for i in range(5)])
    port = free_port()
    worker = start("work", str(config), "--jobs", "tests.cli_jobs", "--metrics-port", str(port), stderr=err)
    try:
        wait_until(lambda: len([1 for what, _, _ in log_lines(log) if what == "done"]) == 5, "the five jobs")

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                    got = samples(response.read().decode())
            except OSError:
                return None  # not serving yet
            labels = (("driver", "q"), ("job_type", "Note"), ("queue", "default"))
            return got if got.get(("khadem_jobs_completed_total", labels)) == 5 else None

        # When it is scraped, Then the counters show the five jobs, and the depth gauge the empty queue
        got = wait_until(scrape, "a scrape that counts five completed jobs")
        wait_until(
            lambda: (scrape() or {}).get(("khadem_queue_depth", (("driver", "q"), ("state", "ready")))) == 0,
            "the depth gauge",
        )
        assert (
            got[
                (
                    "khadem_job_duration_seconds_count",
                    (("driver", "q"), ("job_type", "Note"), ("outcome", "completed"), ("queue", "default")),
                )
            ]
            == 5
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, err.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
