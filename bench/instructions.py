"""Instructions per customer (or per step), counted by callgrind: the simulator's cost without the noise.

    .venv/bin/python bench/instructions.py [--write]

Wall time on this shared 2-CPU machine moves by 20-40 % with the load; instruction counts do not
(``valgrind --tool=callgrind`` counts them; the same total whatever else runs). Each entry runs
twice, at N = 2,000 and N = 12,000, with ``PYTHONHASHSEED=0``; the figure is the difference
divided by 10,000, so start-up, imports and the fixed part of the analysis cancel out:

  mmc        bench/mmc.py: M/M/c (c = 4, rho = 0.9) through the real manager, memory driver and
             one worker with 4 slots, the waits read from DISPATCHED and STARTED events
  mmc-quiet  the same run with no subscriber: no event is built (the metrics are tallied without
             one); what the bench's own event recording costs is mmc minus this
  floor      bench/asyncio_floor.py: the same model in bare asyncio on the virtual loop
  simpy      the SimPy peer (<peers>/simpy_mmc.py), same model, same draws
  sleep      one task doing ``await asyncio.sleep(1)`` on the virtual loop: one timer, one wake-up
             (per sleep)
  dispatch   ``await qm.dispatch(job)`` in a simulation, no worker (per dispatch)

Prints a markdown table; ``--write`` also saves it to bench/results/instructions.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("KHADEM_PEERS", "/work/shared/bench/peers"))
SMALL, LARGE = 2_000, 12_000


def _part(name: str, n: int) -> None:
    """The entries that are not scripts of their own, run in this interpreter."""
    from khadem_lab import QueueJob, QueueManager, Simulation
    from khadem_lab.vloop import VirtualTimeLoop

    if name == "sleep":

        async def sleeper() -> None:
            for _ in range(n):
                await asyncio.sleep(1.0)

        loop = VirtualTimeLoop(1_704_099_600.0)
        loop.create_task(sleeper())
        loop.run_until(math.inf, jump_to_horizon=False)
        loop.close()
    elif name == "dispatch":

        class Job(QueueJob):
            async def handle(self) -> None:
                return None

        sim = Simulation(seed=1)
        qm = QueueManager(clock=sim.clock)

        async def dispatcher() -> None:
            for _ in range(n):
                await qm.dispatch(Job())

        sim.run(dispatcher())
        sim.close()
    elif name == "mmc-quiet":
        sys.path.insert(0, str(HERE))
        import mmc

        print(mmc.run_quiet(n, seed=1))
    else:
        raise SystemExit(f"unknown part {name!r}")


def command(entry: str, n: int) -> list[str]:
    py = sys.executable
    if entry == "mmc":
        return [py, str(HERE / "mmc.py"), "--n", str(n)]
    if entry == "floor":
        return [py, str(HERE / "asyncio_floor.py"), "--n", str(n)]
    if entry == "simpy":
        return [py, str(PEERS / "simpy_mmc.py"), "--n", str(n)]
    return [py, str(Path(__file__)), "--part", entry, "--n", str(n)]


def count(entry: str, n: int) -> int:
    """Instructions of one whole run, as callgrind reports them."""
    return count_command(command(entry, n), ROOT, f"{entry} at N = {n}")


def count_command(cmd: list[str], package_root: Path, what: str) -> int:
    """Instructions of one run of ``cmd`` with ``package_root`` first on the import path."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(package_root))
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", *cmd],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{what} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--entries", default="mmc,mmc-quiet,floor,simpy,sleep,dispatch")
    p.add_argument("--write", action="store_true", help="save to bench/results/instructions.md")
    a = p.parse_args()
    if a.part:
        _part(a.part, a.n)
        return
    entries = a.entries.split(",")
    if "simpy" in entries and not (PEERS / "simpy_mmc.py").exists():
        raise SystemExit(f"SimPy peer not found at {PEERS} (set KHADEM_PEERS or leave simpy out)")
    started = time.time()
    per: dict[str, float] = {}
    for entry in entries:
        per[entry] = (count(entry, LARGE) - count(entry, SMALL)) / (LARGE - SMALL)
        print(f"{entry}: {per[entry] / 1000:.1f}k", file=sys.stderr, flush=True)
    sys.path.insert(0, str(HERE))
    from harness import git_head, report

    lines = [
        f"# Instructions per customer, callgrind ({time.strftime('%Y-%m-%d %H:%M:%S')}, git {git_head()})",
        "",
        f"`python bench/instructions.py`: N = {LARGE:,} minus N = {SMALL:,}, divided by "
        f"{LARGE - SMALL:,}; PYTHONHASHSEED=0; Python {sys.version.split()[0]}; "
        f"{time.time() - started:.0f} s. Repeatable to about 0.1k whatever the load.",
        "",
        "| entry | instructions | / SimPy |",
        "|---|---:|---:|",
    ]
    for entry, value in per.items():
        ratio = f"{value / per['simpy']:.2f}" if "simpy" in per else ""
        lines.append(f"| {entry} | {value / 1000:.1f}k | {ratio} |")
    report(lines, "instructions.md", a.write)


if __name__ == "__main__":
    main()
