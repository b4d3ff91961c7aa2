"""What each part of the queue costs on the M/M/c model, measured by taking the parts out one by one.

    .venv/bin/python bench/feature_cost.py [--rounds 5] [--n 100000] [--instructions] [--write]

Issue 13 asks for the M/M/c model through the real queue in at most 1.5x SimPy's wall time. This
measures how close a queue of this design can get at all: it copies ``khadem_lab`` into a
temporary directory once per step and, in each copy, takes out one more part (the steps are
cumulative) by exact text replacements; the script stops, naming the step, if the code no longer
reads as the step expects. The copies are not usable queues (no metrics, no retries, no leases):
they exist to be timed. The model is ``bench/mmc.py --quiet`` (nobody subscribed to events, so
none is built; the wait of each customer is not recorded), which checks that all N customers
were served.

  shipped        the queue as it is
  awaitable      - ``qm.dispatch`` returns the driver's coroutine itself: no ManagerCall (the
                   warning that names a forgotten ``await`` and the job) and no check that the call
                   runs on the clock's loop (a notebook cell awaiting a running simulation)
  record checks  - ``make_record`` builds the record without checking the job, its options and
                   its queue, and without the registry's name (3 retries, no timeout)
  events         - ``emit`` returns at once: no metrics (``qm.get_stats``), no event seq numbers
  watchdog       - no bookkeeping for the stall watchdog (the attempt each task runs) and no
                   heartbeat cell
  leases         - the memory driver keeps no lease heap (a lost worker's job never comes back)
  run path       - the worker awaits ``job.handle()`` and acks, instead of ``execute``: no hooks, no
                   timeout, no failure handling or retries, no ``job.attempt``, no STARTED /
                   COMPLETED events

Wall time: each round runs every step, the SimPy peer and the bare-asyncio floor
(``bench/asyncio_floor.py``), each in a fresh interpreter, in an order rotated every round;
ratios to SimPy are per round, then the median. ``--instructions`` adds callgrind's instructions
per customer (N = 12,000 minus N = 2,000, as bench/instructions.py; load-independent, about a
minute per step). ``--write`` saves ``bench/results/feature_cost.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import report, run_json, run_meta
from instructions import LARGE, SMALL, count_command

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("KHADEM_PEERS", "/work/shared/bench/peers"))

#: (step, [(file in khadem_lab, text as shipped, replacement)]), applied cumulatively.
STEPS: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("shipped", []),
    (
        "awaitable",
        [
            (
                "manager.py",
                '        return ManagerCall(pushed, "QueueManager.dispatch", job, self)\n',
                "        return pushed\n",
            ),
            ("drivers/base.py", "    @on_clock_loop\n    async def push(\n", "    async def push(\n"),
        ],
    ),
    (
        "record checks",
        [
            (
                "drivers/base.py",
                "        if not isinstance(job, QueueJob):\n"
                '            raise TypeError(f"only QueueJob instances can be dispatched, got {job!r}")\n',
                "        if True:\n"
                "            name = type(job).__name__\n"
                "            record = JobRecord(\n"
                "                self.new_job_id(), name, job.queue, None, name, 3, None,\n"
                "                available_at, created_at,\n"
                "            )\n"
                "            record.job = job\n"
                "            record.payload_json = None\n"
                "            return record\n",
            )
        ],
    ),
    (
        "events",
        [
            (
                "drivers/base.py",
                "        events = self.events\n        needs_event, plan = events.plans[kind]\n",
                "        return\n"
                "        events = self.events\n        needs_event, plan = events.plans[kind]\n",
            )
        ],
    ),
    (
        "watchdog",
        [
            (
                "execution.py",
                '    attempts: Attempts | None = getattr(clock, "attempts", None)\n',
                "    attempts: Attempts | None = None\n",
            ),
            (
                "worker.py",
                "            cell[0] = record\n"
                "            if heartbeat.timer is None:\n                heartbeat.ensure()\n",
                "",
            ),
            (
                "worker.py",
                "                self._busy -= 1\n                cell[0] = None\n",
                "                self._busy -= 1\n",
            ),
        ],
    ),
    (
        "leases",
        [
            (
                "drivers/memory.py",
                "        heapq.heappush(leases, (until, record.seq, record.id))\n"
                "        if len(leases) > 64 + 2 * len(self._reserved):",
                "        if False:",
            )
        ],
    ),
    (
        "run path",
        [
            (
                "worker.py",
                "                outcome = await execute(\n"
                "                    driver, record, worker=slot_name, hooks=hooks, "
                "deferred_acks=deferred, task=task\n"
                "                )\n",
                "                await record.job.handle()\n"
                "                driver.ack_now(record)\n"
                "                outcome = _COMPLETED\n",
            )
        ],
    ),
]


def build_copies(workdir: Path) -> list[tuple[str, Path]]:
    """One copy of the package per step, each with that step's parts and all earlier ones out;
    returns (step, directory to put first on the import path)."""
    copies = []
    edits: list[tuple[str, str, str]] = []
    for k, (step, changes) in enumerate(STEPS):
        edits = edits + changes
        root = workdir / f"step{k}"
        shutil.copytree(
            ROOT / "khadem_lab", root / "khadem_lab", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name, old, new in edits:
            path = root / "khadem_lab" / name
            text = path.read_text()
            if text.count(old) != 1:
                raise SystemExit(
                    f"step {step!r}: khadem_lab/{name} no longer holds the text this step takes out "
                    f"({text.count(old)} matches of {old.splitlines()[0].strip()!r}); update STEPS"
                )
            path.write_text(text.replace(old, new))
        copies.append((step, root))
    return copies


def wall(cmd: list[str], package_root: Path | None) -> float:
    env = dict(os.environ)
    if package_root is not None:
        env["PYTHONPATH"] = str(package_root)
    record = run_json(cmd, ROOT, env)
    if package_root is not None and Path(record["package"]) != package_root / "khadem_lab":
        raise SystemExit(f"measured {record['package']}, not the copy at {package_root}")
    return float(record["wall_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=100_000, help="customers per wall-time run")
    p.add_argument("--instructions", action="store_true", help="also count instructions (callgrind)")
    p.add_argument("--write", action="store_true", help="save bench/results/feature_cost.md")
    a = p.parse_args()
    if not (PEERS / "simpy_mmc.py").exists():
        raise SystemExit(f"SimPy peer not found at {PEERS} (set KHADEM_PEERS)")
    started = time.time()
    py = sys.executable
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        copies = build_copies(Path(tmp))
        steps = [step for step, _ in copies]
        entries = [*steps, "simpy", "floor"]
        walls: dict[str, list[float]] = {e: [] for e in entries}
        ratios: dict[str, list[float]] = {e: [] for e in entries}
        for r in range(a.rounds):
            seed = r + 1
            k = (3 * r) % len(entries)
            this_round: dict[str, float] = {}
            for entry in entries[k:] + entries[:k]:
                if entry == "simpy":
                    cmd, root = [py, str(PEERS / "simpy_mmc.py"), "--n", str(a.n), "--seed", str(seed)], None
                elif entry == "floor":
                    cmd, root = (
                        [py, str(HERE / "asyncio_floor.py"), "--n", str(a.n), "--seed", str(seed)],
                        None,
                    )
                else:
                    root = dict(copies)[entry]
                    cmd = [py, str(HERE / "mmc.py"), "--quiet", "--n", str(a.n), "--seed", str(seed)]
                this_round[entry] = wall(cmd, root)
            for entry, value in this_round.items():
                walls[entry].append(value)
                ratios[entry].append(value / this_round["simpy"])
            print(
                f"round {r + 1}: " + ", ".join(f"{e} {ratios[e][-1]:.2f}" for e in entries),
                file=sys.stderr,
                flush=True,
            )
        counts: dict[str, float] = {}
        if a.instructions:
            for step, root in copies:
                cmd = [py, str(HERE / "mmc.py"), "--quiet", "--n"]
                large = count_command([*cmd, str(LARGE)], root, f"{step} at N = {LARGE}")
                small = count_command([*cmd, str(SMALL)], root, f"{step} at N = {SMALL}")
                counts[step] = (large - small) / (LARGE - SMALL)
                print(f"{step}: {counts[step] / 1000:.1f}k instructions", file=sys.stderr, flush=True)
            for entry, script in (("simpy", PEERS / "simpy_mmc.py"), ("floor", HERE / "asyncio_floor.py")):
                large = count_command([py, str(script), "--n", str(LARGE)], ROOT, entry)
                small = count_command([py, str(script), "--n", str(SMALL)], ROOT, entry)
                counts[entry] = (large - small) / (LARGE - SMALL)
    meta = run_meta("feature_cost.py", started)
    lines = [
        f"# What each part of the queue costs on M/M/c ({meta['started']}, git {meta['git']})",
        "",
        f"`{meta['command']}`: {a.rounds} rounds of N = {a.n:,}; load {load_start:.2f} at the start, "
        f"{meta['loadavg_end'][0]:.2f} at the end; {meta['duration_s']:.0f} s; Python {meta['python']}, "
        f"{meta['machine']}. Steps are cumulative: each row takes out its part and every part above.",
        "",
        "| step | wall s, median | / SimPy, median (min-max) | instructions per customer |",
        "|---|---:|---:|---:|",
    ]
    for entry in entries:
        rs = ratios[entry]
        instr = f"{counts[entry] / 1000:.1f}k" if entry in counts else ""
        lines.append(
            f"| {entry} | {statistics.median(walls[entry]):.3f} | "
            f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f}) | {instr} |"
        )
    report(lines, "feature_cost.md", a.write)


if __name__ == "__main__":
    main()
