"""``khadem-lab work CONFIG --jobs MODULE``: a worker process.

SIGTERM or SIGINT stops it gracefully: the jobs it is running finish (for up to ``--grace``
seconds), the jobs it reserved but has not started are released at once for other workers, and
it exits with 0. A second signal, or the end of the grace period, stops it at once: the running
jobs are cut off (exit code 6) and run again when their leases end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from ..worker import Worker
from . import exits
from .joblog import JobLogger, setup_logging
from .queue import first_read, import_jobs, open_queue

log = logging.getLogger("khadem_lab.worker")

EXAMPLE = """example:
  khadem-lab work queue.yaml --jobs myapp.jobs --queues high,default --concurrency 4
  khadem-lab work queue.yaml --jobs myapp/jobs.py --burst --log-format json

exit codes: 0 done (burst drained, or stopped gracefully by SIGTERM/SIGINT); 2 bad config;
3 storage unreachable; 4 jobs module not importable; 6 stopped at once with jobs cut off"""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "work",
        parents=[common],
        help="run a worker process on a configured queue",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="the config file (JSON or YAML, the spec's layout)")
    p.add_argument(
        "--jobs",
        required=True,
        metavar="MODULE",
        help="import path or .py file that registers the job classes",
    )
    p.add_argument("--driver", metavar="NAME", help="which configured driver (default: queue.default)")
    p.add_argument("--queues", metavar="Q1,Q2", help="queues to work, in priority order (default: all)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    p.add_argument("--prefetch", type=int, default=1, help="jobs each slot reserves at once (default 1)")
    p.add_argument("--max-jobs", type=int, metavar="N", help="stop after N jobs")
    p.add_argument("--burst", action="store_true", help="exit once no job is ready (delayed jobs stay)")
    p.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="pause after each job (the spec's delay)"
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="how often an idle worker looks (default: the config's)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long running jobs may finish after SIGTERM (default 30)",
    )
    p.add_argument("--name", help="worker name in the logs and leases (default: worker-PID)")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON")
    p.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs prometheus_client)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format, args.log_level)
    for option in ("concurrency", "prefetch"):
        if getattr(args, option) < 1:
            raise exits.CommandError(
                f"--{option} must be at least 1, got {getattr(args, option)}", exits.USAGE
            )
    if args.max_jobs is not None and args.max_jobs < 0:
        raise exits.CommandError(f"--max-jobs must be at least 0, got {args.max_jobs}", exits.USAGE)
    if not args.grace >= 0:
        raise exits.CommandError(f"--grace must be at least 0 seconds, got {args.grace}", exits.USAGE)
    qm = open_queue(args.config, args.driver, poll_interval=args.poll_interval)
    types = import_jobs(args.jobs)
    return asyncio.run(_work(args, qm, types))


async def _work(args: argparse.Namespace, qm: Any, types: list[str]) -> int:
    driver = qm.driver
    refresher: asyncio.Task[None] | None = None
    try:
        await first_read(driver)
        driver.subscribe(JobLogger(), JobLogger.KINDS)
        if args.metrics_port is not None:
            refresher = _serve_metrics(driver, args.metrics_port)
        queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
        worker = await qm.start_worker(
            run_in_background=True,
            max_jobs=args.max_jobs,
            delay=args.delay,
            concurrency=args.concurrency,
            queues=queues,
            name=args.name or f"worker-{os.getpid()}",
            prefetch=args.prefetch,
            burst=args.burst,
            release_on_stop=True,
        )
        stopper = _Stopper(worker, args.grace)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopper.signalled, signum)
        log.info(
            "worker %s started (pid %d): driver %s (%s), queues %s, concurrency %d, prefetch %d%s; jobs %s",
            worker.name,
            os.getpid(),
            driver.name,
            driver.driver_type,
            ",".join(queues) if queues else "all",
            args.concurrency,
            args.prefetch,
            ", burst" if args.burst else "",
            ", ".join(types),
        )
        assert worker.task is not None
        try:
            stats = await asyncio.shield(worker.task)
        except asyncio.CancelledError:
            stats = worker.stats
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        log.info(
            "worker %s stopped: %d job(s) run, %d completed, %d retried, %d dead-lettered%s",
            worker.name,
            stats.processed,
            stats.completed,
            stats.retried,
            stats.dead,
            f", {stopper.cut_off} cut off" if stopper.cut_off else "",
        )
        return exits.CUT_OFF if stopper.cut_off else exits.OK
    finally:
        if refresher is not None:
            refresher.cancel()
        await qm.dispose()


#: How often a worker serving metrics reads the queue's depth for its gauges, in seconds.
DEPTH_REFRESH = 1.0


def _serve_metrics(driver: Any, port: int) -> asyncio.Task[None]:
    """Serve Prometheus metrics on ``port``; returns the task refreshing the depth gauges."""
    from ..prometheus import PrometheusMetrics

    metrics = PrometheusMetrics(driver)
    try:
        metrics.serve(port)
    except OSError as exc:
        raise exits.CommandError(f"cannot serve metrics on port {port}: {exc.strerror}", exits.USAGE) from exc
    log.info("Prometheus metrics on http://0.0.0.0:%d/metrics", port)
    return asyncio.get_running_loop().create_task(metrics.refresh_every(DEPTH_REFRESH))


class _Stopper:
    """First signal: stop gracefully, with a deadline; second signal or deadline: stop at once."""

    def __init__(self, worker: Worker, grace: float) -> None:
        self.worker = worker
        self.grace = grace
        self.signals = 0
        self.cut_off = 0
        self._deadline: asyncio.TimerHandle | None = None

    def signalled(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.info(
                "%s: stopping; %d running job(s) may finish within %g s, jobs not started are released "
                "(send it again to stop at once)",
                name,
                self.worker.busy,
                self.grace,
            )
            self.worker.request_stop()
            self._deadline = asyncio.get_running_loop().call_later(
                self.grace, self.force, "grace period over"
            )
        else:
            self.force(f"second {name}")

    def force(self, why: str) -> None:
        task = self.worker.task
        if task is None or task.done():
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self.cut_off = self.worker.busy
        log.warning(
            "%s: stopping at once; %d running job(s) cut off (they run again when their leases end)",
            why,
            self.cut_off,
        )
        task.cancel()
