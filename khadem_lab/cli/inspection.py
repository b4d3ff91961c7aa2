"""``stats``, ``dlq`` and ``jobs``: look at a configured queue and mend it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import to_datetime
from ..dlq import DeadLetter
from ..drivers.base import LIST_STATES, BaseQueueDriver
from ..records import JobRecord, JobStatus
from . import exits
from .queue import import_jobs, open_queue

STATS_EXAMPLE = """example:
  khadem-lab stats queue.yaml
  khadem-lab stats queue.yaml --driver redis --json
  khadem-lab stats queue.yaml --watch 2          # refreshed in place every 2 s; Ctrl-C ends it

The metrics counters live in the worker processes (see `work --metrics-port`); this shows what
the storage holds."""
DLQ_EXAMPLE = """example:
  khadem-lab dlq queue.yaml list
  khadem-lab dlq queue.yaml show 42
  khadem-lab dlq queue.yaml retry 42 43          # back to their queue, attempts start over
  khadem-lab dlq queue.yaml retry --all
  khadem-lab dlq queue.yaml purge --yes"""
JOBS_EXAMPLE = """example:
  khadem-lab jobs queue.yaml list                      # ready, delayed and reserved jobs
  khadem-lab jobs queue.yaml list --state reserved     # who holds what, and until when
  khadem-lab jobs queue.yaml show 42
  khadem-lab jobs queue.yaml cancel 42                 # a waiting job only"""


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    queue = argparse.ArgumentParser(add_help=False, parents=[common])
    queue.add_argument("config", help="the config file (JSON or YAML)")
    queue.add_argument("--driver", metavar="NAME", help="which configured driver (default: queue.default)")
    queue.add_argument("--jobs", metavar="MODULE", help="a module registering job classes (optional here)")
    raw = argparse.RawDescriptionHelpFormatter

    stats = commands.add_parser(
        "stats", parents=[queue], help="the queue's statistics", epilog=STATS_EXAMPLE, formatter_class=raw
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    stats.set_defaults(run=run_stats)

    dlq = commands.add_parser(
        "dlq",
        parents=[queue],
        help="list, show, retry or purge dead-lettered jobs",
        epilog=DLQ_EXAMPLE,
        formatter_class=raw,
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="dead-lettered jobs, oldest first")
    listing.add_argument("--limit", type=int, help="at most this many")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    show = actions.add_parser("show", help="one job: its error, attempts and payload")
    show.add_argument("id")
    retry = actions.add_parser("retry", help="put jobs back in their queue (attempts start over)")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead-lettered job")
    purge = actions.add_parser("purge", help="delete dead-lettered jobs (all, or the ids given)")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    dlq.set_defaults(run=run_dlq)

    jobs = commands.add_parser(
        "jobs",
        parents=[queue],
        help="list, show or cancel waiting and running jobs",
        epilog=JOBS_EXAMPLE,
        formatter_class=raw,
    )
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="jobs by state, in the order workers take them")
    listing.add_argument("--state", choices=LIST_STATES, help="only this state (default: all three)")
    listing.add_argument("--limit", type=int, default=100, help="at most this many per state (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    show = actions.add_parser("show", help="one job: its state, lease, attempts and payload")
    show.add_argument("id")
    cancel = actions.add_parser("cancel", help="remove a waiting job so that no worker runs it")
    cancel.add_argument("id")
    jobs.set_defaults(run=run_jobs)


# -- shared ------------------------------------------------------------------------------------------
def _on_queue(args: argparse.Namespace, action: Callable[[BaseQueueDriver], Awaitable[int]]) -> int:
    qm = open_queue(args.config, args.driver)
    if args.jobs:
        import_jobs(args.jobs)

    async def go() -> int:
        try:
            return await action(qm.driver)
        finally:
            await qm.dispose()

    return asyncio.run(go())


def when(seconds: float | None) -> str:
    return "-" if seconds is None else to_datetime(seconds).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _short(text: str | None, width: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- stats -------------------------------------------------------------------------------------------
async def read_stats(driver: BaseQueueDriver) -> dict[str, Any]:
    stats = await driver.get_stats()
    stats.pop("metrics", None)  # this process's counters (all zero): the workers' are elsewhere
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    for key, value in stats.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                rows.append(
                    [f"{key}.{sub}", json.dumps(item) if isinstance(item, (dict, list)) else str(item)]
                )
        else:
            rows.append([key, str(value)])
    return table(rows, ["statistic", "value"])


def run_stats(args: argparse.Namespace) -> int:
    if args.watch is not None and not args.watch > 0:
        raise exits.CommandError(
            f"--watch must be a positive number of seconds, got {args.watch}", exits.USAGE
        )

    async def action(driver: BaseQueueDriver) -> int:
        while True:
            stats = await read_stats(driver)
            text = json.dumps(stats, indent=2, sort_keys=True) if args.json else format_stats(stats)
            if args.watch is None:
                print(text)
                return exits.OK
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[J")  # home, clear: refreshed in place
            print(text, flush=True)
            await asyncio.sleep(args.watch)

    try:
        return _on_queue(args, action)
    except KeyboardInterrupt:
        return exits.OK if args.watch is not None else exits.INTERRUPTED


# -- dlq ---------------------------------------------------------------------------------------------
def dead_letter_dict(dead: DeadLetter) -> dict[str, Any]:
    return {
        "id": dead.id,
        "type": dead.type,
        "queue": dead.queue,
        "attempts": dead.attempts,
        "error": dead.error,
        "error_type": dead.error_type,
        "failed_at": None if dead.failed_at is None else dead.failed_at.isoformat(),
        "payload": dead.payload,
    }


def run_dlq(args: argparse.Namespace) -> int:
    async def action(driver: BaseQueueDriver) -> int:
        dlq = driver.dead_letters
        if args.action == "list":
            letters = await dlq.list(args.limit)
            if args.json:
                for dead in letters:
                    print(json.dumps(dead_letter_dict(dead)))
                return exits.OK
            rows = [
                [
                    d.id,
                    d.type,
                    d.queue,
                    str(d.attempts),
                    d.failed_at.strftime("%Y-%m-%d %H:%M:%S") if d.failed_at else "-",
                    _short(d.error),
                ]
                for d in letters
            ]
            print(table(rows, ["id", "type", "queue", "attempts", "failed at (UTC)", "error"]))
            print(f"{len(letters)} dead-lettered job(s)")
            return exits.OK
        if args.action == "show":
            found = await dlq.get(args.id)
            if found is None:
                raise exits.CommandError(
                    f"no dead-lettered job with id {args.id!r} (see `dlq list`)", exits.NOT_FOUND
                )
            data = dead_letter_dict(found)
            for key in ("id", "type", "queue", "attempts", "failed_at", "error_type", "error"):
                print(f"{key + ':':<12}{data[key]}")
            print("payload:")
            print(json.dumps(found.payload, indent=2, sort_keys=True))
            return exits.OK
        if args.action == "retry":
            if args.all == bool(args.ids):
                raise exits.CommandError("dlq retry takes job ids or --all (one of the two)", exits.USAGE)
            if args.all:
                print(f"requeued {await dlq.requeue_all()} job(s)")
                return exits.OK
            missing = [i for i in args.ids if await dlq.get(i) is None]
            if missing:
                raise exits.CommandError(
                    f"no dead-lettered job with id {', '.join(map(repr, missing))}; nothing was requeued",
                    exits.NOT_FOUND,
                )
            for job_id in args.ids:
                await dlq.requeue(job_id)
            print(f"requeued {len(args.ids)} job(s): {' '.join(args.ids)}")
            return exits.OK
        # purge
        if not args.yes:
            if not sys.stdin.isatty():
                raise exits.CommandError("dlq purge deletes jobs for good: add --yes to confirm", exits.USAGE)
            count = len(args.ids) if args.ids else await dlq.count()
            answer = input(f"delete {count} dead-lettered job(s) for good? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return exits.OK
        print(f"purged {await dlq.purge(args.ids or None)} job(s)")
        return exits.OK

    return _on_queue(args, action)


# -- jobs --------------------------------------------------------------------------------------------
def record_dict(record: JobRecord, state: str | None = None) -> dict[str, Any]:
    data = record.to_dict()
    data["state"] = state or record.status.value
    for key in ("available_at", "created_at", "reserved_until", "failed_at"):
        value = data[key]
        data[key] = None if value is None else to_datetime(value).isoformat()
    return data


def run_jobs(args: argparse.Namespace) -> int:
    async def action(driver: BaseQueueDriver) -> int:
        now = driver.clock.time()
        if args.action == "list":
            states = [args.state] if args.state else list(LIST_STATES)
            found = [
                (state, r) for state in states for r in await driver.list_records(state, now, args.limit)
            ]
            if args.json:
                for state, listed in found:
                    print(json.dumps(record_dict(listed, state)))
                return exits.OK
            rows = [
                [
                    r.id,
                    state,
                    r.type,
                    r.queue,
                    str(r.attempts),
                    when(r.available_at),
                    r.reserved_by or "-",
                    when(r.reserved_until),
                ]
                for state, r in found
            ]
            header = [
                "id",
                "state",
                "type",
                "queue",
                "attempts",
                "due (UTC)",
                "lease holder",
                "lease ends (UTC)",
            ]
            print(table(rows, header))
            print(f"{len(found)} job(s)")
            return exits.OK
        record = await driver.get_record(args.id)
        if record is None:
            raise exits.CommandError(
                f"no job with id {args.id!r} in queue {driver.name!r} (finished jobs are not kept; "
                "see `jobs list` and `dlq list`)",
                exits.NOT_FOUND,
            )
        if args.action == "show":
            data = record_dict(record)
            for key in (
                "id",
                "type",
                "queue",
                "state",
                "attempts",
                "max_retries",
                "available_at",
                "created_at",
                "reserved_by",
                "reserved_until",
                "last_error",
            ):
                print(f"{key + ':':<16}{data[key] if data[key] is not None else '-'}")
            print("payload:")
            print(json.dumps(record.payload, indent=2, sort_keys=True))
            return exits.OK
        # cancel
        if record.status is JobStatus.RESERVED:
            raise exits.CommandError(
                f"job {args.id} is running: {record.reserved_by or 'a worker'} holds it until "
                f"{when(record.reserved_until)} UTC; only a waiting job can be cancelled",
                exits.FAILED,
            )
        if record.status is JobStatus.DEAD:
            raise exits.CommandError(
                f"job {args.id} is dead-lettered: remove it with `dlq purge {args.id}`", exits.FAILED
            )
        cancelled = await driver.cancel_record(args.id)
        if cancelled is None:  # taken by a worker in the meantime
            raise exits.CommandError(
                f"job {args.id} was taken by a worker meanwhile; not cancelled", exits.FAILED
            )
        print(f"cancelled job {cancelled.id} ({cancelled.type}, queue {cancelled.queue})")
        return exits.OK

    return _on_queue(args, action)
