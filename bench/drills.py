"""The adversarial drills of issue 10, runnable: bench/results/drills.{json,md}.

    .venv/bin/python bench/drills.py                    # about a minute per timed drill, ~7 minutes
    .venv/bin/python bench/drills.py --seconds 20       # shorter
    .venv/bin/python bench/drills.py --only sigkill:sqlite,poison

Drills (real processes, real files, a private redis-server on a port of 7200-7299):

  sigkill:KIND    KIND = sqlite, file, redis. For ``--seconds``, a dispatcher process sends batches
                  of jobs with ids (``job_ids``) while 4 worker processes run them; every 0.2-0.8 s
                  a random one of them (a worker at work, or the dispatcher) is killed with SIGKILL
                  and replaced. A new dispatcher starts again at the first batch it has no record
                  of having stored (that batch may be stored: its ids make the resend safe).
  redis-restart   The same with no kills, while the private redis-server is stopped (SIGTERM) and
                  restarted, for 1 s, every ~``seconds``/5 (appendonly, so a restart keeps what was
                  stored); the dispatcher retries a failed batch with the same ids.
  poison:KIND     Entries the driver did not write (issue 10): a payload nested 980 deep and other
                  foreign data put straight into storage, then 200 good jobs: each good job must
                  run, the poison must be dead-lettered or set aside, stats and the dead-letter
                  list must keep working.
  load:KIND       8 worker processes on 3,000 jobs, no faults: each job exactly once.

Every job logs ``start N PID T`` and ``done N PID T`` (one write on an O_APPEND file). Counted:
dispatched, completed, dead-lettered, lost (dispatched, never completed nor dead), run twice, and
how many of those runs a kill (an earlier run by a killed process) or an outage (an earlier run
whose settle fell in a Redis outage) explains. The goal: 0 lost and 0 unexplained duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import run_meta

from khadem_lab import KhademLabError, QueueJob, QueueManager, register_queue_jobs
from khadem_lab.testing.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCH = 20  # jobs per dispatched batch
LOG_FD = -1


@dataclass
class DrillJob(QueueJob):
    """Job ``n``: logs its start, works ``work`` seconds of real time, logs its end."""

    n: int
    work: float = 0.002

    async def handle(self) -> None:
        os.write(LOG_FD, f"start {self.n} {os.getpid()} {time.time():.3f}\n".encode())
        if self.work:
            await asyncio.sleep(self.work)
        os.write(LOG_FD, f"done {self.n} {os.getpid()} {time.time():.3f}\n".encode())


register_queue_jobs([DrillJob])


# ============================================================================== child processes
async def work(config: dict[str, Any], drain: Path) -> None:
    """A worker process: works the queue until ``drain`` exists and the queue is empty."""
    qm = QueueManager(config)
    qm.load_from_config()
    worker = await qm.start_worker(run_in_background=True, prefetch=10)
    while True:
        await asyncio.sleep(0.1)
        if drain.exists() and worker.busy == 0:
            with contextlib.suppress(KhademLabError):
                if await qm.driver.size() == 0:
                    break
    await worker.stop()
    await qm.dispose()


async def dispatch(config: dict[str, Any], first: int, stop: Path, done_log: Path, pace: float) -> None:
    """A dispatcher process: batch k holds jobs k*BATCH .. k*BATCH+BATCH-1 with ids ``jN``; after
    each stored batch, ``batch k`` goes to ``done_log``; a failed one is sent again, same ids."""
    qm = QueueManager(config)
    qm.load_from_config()
    fd = os.open(done_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    k = first
    while True:
        jobs = [DrillJob(n) for n in range(k * BATCH, (k + 1) * BATCH)]
        try:
            await qm.dispatch_batch(jobs, job_ids=[f"j{job.n}" for job in jobs])
        except KhademLabError as exc:
            os.write(fd, f"error {k} {type(exc).__name__}\n".encode())
            await asyncio.sleep(0.1)
            continue
        os.write(fd, f"batch {k}\n".encode())
        k += 1
        if stop.exists():
            break
        await asyncio.sleep(pace)
    os.close(fd)
    await qm.dispose()


def child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


# ============================================================================== the stores
def config_for(kind: str, directory: Path, redis_url: str | None, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"driver": kind, "poll_interval": 0.05, "lease_time": 2.0, "max_retries": 5}
    if kind == "redis":
        entry.update(url=redis_url, queue_name=name)
    else:
        entry["path"] = str(directory / ("queue.sqlite3" if kind == "sqlite" else "queue"))
    return {"queue": {"default": "q", "drivers": {"q": entry}}}


# ============================================================================== counting
def read_runs(log: Path) -> list[tuple[str, int, int, float]]:
    """The log's lines; during a run, a line being appended may be seen cut short: skipped."""
    lines = log.read_text().splitlines() if log.exists() else []
    fields = (line.split() for line in lines)
    return [(k[0], int(k[1]), int(k[2]), float(k[3])) for k in fields if len(k) == 4 and k[3][-4:-3] == "."]


def dead_ids(config: dict[str, Any]) -> set[int]:
    async def run() -> set[int]:
        qm = QueueManager(config)
        qm.load_from_config()
        found = {d.payload["n"] for d in await qm.driver.dead_letters.list() if isinstance(d.payload, dict)}
        await qm.dispose()
        return found

    return asyncio.run(run())


def count(
    dispatched: set[int],
    log: Path,
    config: dict[str, Any],
    killed: set[int],
    outages: list[tuple[float, float]],
) -> dict[str, Any]:
    runs = read_runs(log)
    done = {n for kind, n, _, _ in runs if kind == "done"}
    dead = dead_ids(config)
    starts: dict[int, list[tuple[int, float]]] = defaultdict(list)
    ends: dict[tuple[int, int], float] = {}
    for kind, n, pid, t in runs:
        if kind == "start":
            starts[n].append((pid, t))
        else:
            ends[(n, pid)] = t
    twice = by_kill = by_outage = 0
    unexplained: list[dict[str, Any]] = []
    for n, runs_of in starts.items():
        extra = len(runs_of) - 1
        if extra <= 0:
            continue
        twice += 1
        killed_runs = sum(1 for pid, _ in runs_of if pid in killed)
        if killed_runs >= extra:
            by_kill += 1
            continue
        # a run followed by another after an outage began: its ack (deferred by a prefetching
        # worker, or sent into the outage) could not be stored, so its lease ended
        stranded = sum(
            1
            for (pid, start), (_, rerun) in itertools.pairwise(runs_of)
            if pid not in killed and any(start <= b + 1 and rerun >= a for a, b in outages)
        )
        if killed_runs + stranded >= extra:
            by_outage += 1
        elif len(unexplained) < 10:
            unexplained.append(
                {
                    "job": n,
                    "runs": [
                        [pid, round(start, 3), ends.get((n, pid)), pid in killed] for pid, start in runs_of
                    ],
                }
            )
    return {
        "dispatched": len(dispatched),
        "completed": len(done & dispatched),
        "dead_lettered": len(dead & dispatched),
        "lost": len(dispatched - done - dead),
        "not_dispatched_but_ran": len(done - dispatched),
        "run_twice": twice,
        "explained_by_kill": by_kill,
        "explained_by_outage": by_outage,
        "unexplained_duplicates": twice - by_kill - by_outage,
        "unexplained_examples": unexplained,
        "outages": [[round(a, 3), round(b, 3)] for a, b in outages],
        "kills": len(killed),
    }


def confirmed_batches(done_log: Path) -> tuple[int, int, dict[str, int]]:
    """(the last batch logged as stored, or -1; number of batches logged; errors by type)."""
    last, batches, errors = -1, 0, defaultdict(int)
    if done_log.exists():
        for line in done_log.read_text().splitlines():
            parts = line.split()
            if parts[0] == "batch":
                last, batches = max(last, int(parts[1])), batches + 1
            elif parts[0] == "error":
                errors[parts[2]] += 1
    return last, batches, dict(errors)


# ============================================================================== timed drills
def timed_drill(
    kind: str, seconds: float, work_dir: Path, redis: RedisServer | None, *, kills: bool, restarts: bool
) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(dir=work_dir))
    config = config_for(kind, directory, redis.url if redis else None, f"drill-{directory.name}")
    text = json.dumps(config)
    log, done_log, stop, drain = (directory / name for name in ("runs.log", "batches.log", "stop", "drain"))
    rng = random.Random(10)
    killed: set[int] = set()
    outages: list[tuple[float, float]] = []
    started = time.monotonic()

    def new_dispatcher() -> subprocess.Popen[bytes]:
        last, _, _ = confirmed_batches(done_log)
        return child("--dispatcher", text, str(last + 1), str(stop), str(done_log), "0.05")

    dispatcher = new_dispatcher()
    workers = [child("--worker", text, str(log), str(drain)) for _ in range(4)]
    next_restart = started + seconds / 5
    while time.monotonic() - started < seconds:
        time.sleep(rng.uniform(0.2, 0.8))
        if restarts and redis is not None and time.monotonic() >= next_restart:
            down = time.time()
            redis.stop()
            time.sleep(1.0)
            redis.start()
            outages.append((down, time.time()))
            next_restart = time.monotonic() + seconds / 5
        if not kills:
            continue
        if rng.random() < 0.2:
            dispatcher.kill()
            dispatcher.wait()
            killed.add(dispatcher.pid)
            dispatcher = new_dispatcher()
            continue
        at_work = {pid for kind_, _, pid, _ in read_runs(log) if kind_ == "start"}
        candidates = [w for w in workers if w.pid in at_work and w.poll() is None]
        if candidates:
            victim = rng.choice(candidates)
            workers.remove(victim)
            victim.kill()
            victim.wait()
            killed.add(victim.pid)
            workers.append(child("--worker", text, str(log), str(drain)))
    stop.touch()
    _, err = dispatcher.communicate(timeout=120)
    assert dispatcher.returncode == 0, err.decode()
    drain.touch()
    failures = []
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        if worker.returncode != 0:
            failures.append(err.decode()[-500:])
    last, _batches, errors = confirmed_batches(done_log)
    dispatched = set(range((last + 1) * BATCH))
    figures = count(dispatched, log, config, killed, outages)
    figures.update(
        seconds=round(time.monotonic() - started, 1),
        dispatch_errors=errors,
        redis_restarts=len(outages),
        worker_failures=failures,
    )
    shutil.rmtree(directory, ignore_errors=True)
    return figures


def load_drill(kind: str, work_dir: Path, redis: RedisServer | None, jobs: int = 3000) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(dir=work_dir))
    config = config_for(kind, directory, redis.url if redis else None, f"load-{directory.name}")
    log, drain = directory / "runs.log", directory / "drain"
    started = time.monotonic()

    async def fill() -> None:
        qm = QueueManager(config)
        qm.load_from_config()
        for first in range(0, jobs, 500):
            await qm.dispatch_batch([DrillJob(n, work=0.0) for n in range(first, min(jobs, first + 500))])
        await qm.dispose()

    asyncio.run(fill())
    drain.touch()
    workers = [child("--worker", json.dumps(config), str(log), str(drain)) for _ in range(8)]
    failures = []
    for worker in workers:
        _, err = worker.communicate(timeout=900)
        if worker.returncode != 0:
            failures.append(err.decode()[-500:])
    figures = count(set(range(jobs)), log, config, set(), [])
    figures.update(
        seconds=round(time.monotonic() - started, 1),
        processes=len({pid for _, _, pid, _ in read_runs(log)}),
        worker_failures=failures,
    )
    shutil.rmtree(directory, ignore_errors=True)
    return figures


# ============================================================================== poison
def poison_drill(kind: str, work_dir: Path, redis: RedisServer | None) -> dict[str, Any]:
    """Foreign entries first, then 200 good jobs; one in-process worker until all is settled."""
    directory = Path(tempfile.mkdtemp(dir=work_dir))
    config = config_for(kind, directory, redis.url if redis else None, f"poison-{directory.name}")
    log = directory / "runs.log"
    global LOG_FD
    LOG_FD = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    deep = "[" * 980 + "0" + "]" * 980
    logging.getLogger("khadem_lab").setLevel(logging.CRITICAL)  # the poison's own errors: counted below
    injected: list[str] = []

    async def run() -> dict[str, Any]:
        qm = QueueManager(config)
        qm.load_from_config()
        driver = qm.driver
        await qm.dispatch(DrillJob(-1, work=0.0))  # the store exists: the poison goes beside a job
        if kind == "sqlite":
            with sqlite3.connect(driver.path) as conn:  # type: ignore[attr-defined]
                row = conn.execute("SELECT * FROM jobs LIMIT 1").fetchone()
                names = [d[0] for d in conn.execute("SELECT * FROM jobs LIMIT 0").description]
                poison = dict(zip(names, row, strict=True))
                poison.update(id="poison-deep", seq=10**9, payload=json.dumps({"n": -2}).replace("-2", deep))
                marks = ", ".join("?" * len(poison))
                conn.execute(
                    f"INSERT INTO jobs ({', '.join(poison)}) VALUES ({marks})", list(poison.values())
                )
            injected.append("a row whose payload is nested 980 deep")
        elif kind == "file":
            journal = next(driver.storage_path.glob("journal-*.log"))  # type: ignore[attr-defined]
            await driver.dispose()
            with journal.open("a") as f:
                f.write('{"op":"push","jobs":[{"id":"p1","payload":' + deep + "}]}\n")
                f.write("not json at all\n")
            injected.extend(["a journal line nested 980 deep", "a journal line that is not JSON"])
            qm = QueueManager(config)  # a new process's view: it must open the queue
            qm.load_from_config()
            driver = qm.driver
        else:
            import redis as redis_py

            prefix = driver.prefix  # type: ignore[attr-defined]
            with redis_py.Redis.from_url(redis.url) as client:  # type: ignore[union-attr]
                client.lpush(f"{prefix}ready:default", "garbage")
                client.sadd(f"{prefix}queues", "other")
                client.set(f"{prefix}ready:other", "a string")
                client.set(f"{prefix}job:poison-header", '[null,"default","DrillJob","x","x",0,0]\n{"n":-3}')
                client.zadd(f"{prefix}queue:default", {"00000000000000000000:poison-header": 0})
                client.set(f"{prefix}job:poison-deep", '[null,"default","DrillJob","d",0,0,0]\n' + deep)
                client.zadd(f"{prefix}queue:default", {"00000000000000000001:poison-deep": 0})
            injected.extend(
                [
                    "LPUSH ready:default garbage",
                    "a queue name whose ready key is a string",
                    "a job whose header has max_retries 'x'",
                    "a job whose payload is nested 980 deep",
                ]
            )
        good = list(range(200))
        await qm.dispatch_batch([DrillJob(n, work=0.0) for n in good])
        worker = await qm.start_worker(run_in_background=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if worker.busy == 0 and await driver.size() == 0:
                break
        await worker.stop()
        checks: dict[str, str] = {}
        for name, call in (
            ("get_stats", driver.get_stats),
            ("dead_letters.list", driver.dead_letters.list),
        ):
            try:
                await call()
                checks[name] = "ok"
            except Exception as exc:  # reported, not hidden: the drill's finding
                checks[name] = f"{type(exc).__name__}: {exc}"[:200]
        try:
            dead = await driver.dead_letters.purge()
            checks["purge"] = "ok"
        except Exception as exc:
            checks["purge"] = f"{type(exc).__name__}: {exc}"[:200]
            dead = -1
        await qm.dispose()
        done = {n for kind_, n, _, _ in read_runs(log) if kind_ == "done"}
        return {
            "injected": injected,
            "good_dispatched": len(good),
            "good_completed": len(done & set(good)),
            "lost": len(set(good) - done),
            "dead_lettered": dead,
            "reads_after": checks,
        }

    try:
        return asyncio.run(run())
    finally:
        os.close(LOG_FD)
        shutil.rmtree(directory, ignore_errors=True)


# ============================================================================== report
def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Drills (issue 10)",
        "",
        f"`{meta['command']}` — {meta['started']}, {meta['duration_s']} s, {meta['machine']}, "
        f"git {meta['git']}, load at end {meta['loadavg_end']}.",
        "",
        "| drill | s | dispatched | completed | dead | lost | run twice | by kill | by outage | "
        "unexplained | kills | restarts |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if name.startswith("poison"):
            continue
        lines.append(
            f"| {name} | {r['seconds']} | {r['dispatched']} | {r['completed']} | {r['dead_lettered']} | "
            f"{r['lost']} | {r['run_twice']} | {r['explained_by_kill']} | {r['explained_by_outage']} | "
            f"{r['unexplained_duplicates']} | {r['kills']} | {r.get('redis_restarts', 0)} |"
        )
    lines += [
        "",
        "| poison drill | injected | good completed | lost | dead-lettered | reads after |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if name.startswith("poison"):
            reads = ", ".join(f"{k} {v}" for k, v in r["reads_after"].items())
            lines.append(
                f"| {name} | {'; '.join(r['injected'])} | {r['good_completed']}/{r['good_dispatched']} | "
                f"{r['lost']} | {r['dead_lettered']} | {reads} |"
            )
    lines += [
        "",
        "dispatched: jobs in batches the dispatcher recorded as stored (a batch sent again after a "
        "kill or an outage carries the same ids). lost: dispatched, neither completed nor "
        "dead-lettered. by kill: every extra run is matched by a run in a process that was killed. "
        "by outage: the rest is matched by runs followed by their rerun after a Redis outage began "
        "(the run started before the outage ended, +1 s): their ack could not be stored. "
        "Dispatch errors met (and retried with the same ids) are in the JSON.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each timed drill")
    parser.add_argument("--only", default="", help="comma-separated drill names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    names = [f"sigkill:{k}" for k in ("sqlite", "file", "redis")] + ["redis-restart"]
    names += [f"poison:{k}" for k in ("sqlite", "file", "redis")] + [
        f"load:{k}" for k in ("sqlite", "file", "redis")
    ]
    wanted = [n for n in names if not args.only or n in args.only.split(",")]
    started = time.time()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="khadem-drills-") as tmp:
        work_dir = Path(tmp)
        redis: RedisServer | None = None
        if any("redis" in n for n in wanted):
            if shutil.which("redis-server") is None:
                sys.exit("redis-server is not installed: drop the redis drills with --only")
            (work_dir / "redis").mkdir()
            redis = RedisServer(work_dir / "redis", ports=range(7250, 7300))
            redis.start()
        try:
            for name in wanted:
                kind = name.split(":")[-1]
                print(f"{name} ...", flush=True)
                if name.startswith("sigkill"):
                    result = timed_drill(kind, args.seconds, work_dir, redis, kills=True, restarts=False)
                elif name == "redis-restart":
                    result = timed_drill("redis", args.seconds, work_dir, redis, kills=False, restarts=True)
                elif name.startswith("poison"):
                    result = poison_drill(kind, work_dir, redis)
                else:
                    result = load_drill(kind, work_dir, redis)
                results[name] = result
                print(f"  {json.dumps(result)}", flush=True)
        finally:
            if redis is not None:
                redis.stop()
    meta = run_meta("drills.py", started)
    report = markdown(results, meta)
    print(report)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "drills.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        (RESULTS / "drills.md").write_text(report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        LOG_FD = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        asyncio.run(work(json.loads(sys.argv[2]), Path(sys.argv[4])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--dispatcher":
        config, first, stop, done_log, pace = sys.argv[2:7]
        asyncio.run(dispatch(json.loads(config), int(first), Path(stop), Path(done_log), float(pace)))
    else:
        main()
