"""The lab's data layer on a long run: simulation time, frame times, memory per stored event.

    .venv/bin/python bench/lab_frames.py --jobs 100000

A :class:`~khadem_lab.lab.scenarios.Scenario` of ``--jobs`` Poisson arrivals over 10 virtual
hours (exponential service, mean 5 s; 5 % flaky calls retried after 30 s; 4 workers x 8 slots)
is simulated once for the timings (``time.perf_counter``): the run itself, then each frame of
:mod:`khadem_lab.lab.frames` built from its ``EventLog``. The ratio ``frames / simulate`` is the
target (< 0.25).

A second run under ``tracemalloc`` measures memory: bytes per stored event (traced memory with the
log, minus without it once cleared, over the number of events: what the log alone keeps alive),
the frames' own size (``memory_usage(deep=True)``) and the traced peak while building them. The
1,000,000-job figure is extrapolated linearly from those (each is proportional to the events).
Prints a human summary and one JSON line; ``--write`` also saves it in
``bench/results/lab_frames.json``. The real memory of a 1,000,000-job run: ``bench/lab_memory.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

from khadem_lab.lab import frames
from khadem_lab.lab.scenarios import ExponentialTime, Flaky, JobType, Poisson, Scenario

FRAMES = ("events", "attempts", "jobs", "depth", "metrics")
HOURS = 10


def scenario(jobs: int, hours: float = HOURS) -> Scenario:
    return Scenario(
        arrivals=[Poisson(per_minute=jobs / (hours * 60))],
        job_types=[JobType("Work", service=ExponentialTime(5.0)), JobType("Mail", 2, ExponentialTime(1.0))],
        failures=[Flaky(0.05)],
        workers=4,
        concurrency=8,
        seed=1,
    )


def timings(jobs: int) -> dict[str, Any]:
    began = time.perf_counter()
    result = scenario(jobs).run(until=timedelta(hours=HOURS))
    simulate = time.perf_counter() - began
    out: dict[str, Any] = {"jobs": result.arrivals, "events": len(result.log)}
    out["simulate_s"] = round(simulate, 3)
    total = 0.0
    for name in FRAMES:
        began = time.perf_counter()
        getattr(frames, name)(result.log)
        seconds = time.perf_counter() - began
        total += seconds
        out[f"{name}_s"] = round(seconds, 3)
    out["frames_s"] = round(total, 3)
    out["frames_over_simulate"] = round(total / simulate, 3)
    return out


def memory(jobs: int) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    result = scenario(jobs).run(until=timedelta(hours=HOURS))
    events = len(result.log)
    gc.collect()
    with_log = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    built = {name: getattr(frames, name)(result.log) for name in FRAMES}
    peak_building = tracemalloc.get_traced_memory()[1] - with_log
    frame_bytes = sum(int(f.memory_usage(deep=True).sum()) for f in built.values())
    del built
    result.log.clear()
    gc.collect()
    without_log = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_event = (with_log - without_log) / events
    scale = 1_000_000 / result.arrivals
    log_1m = per_event * events * scale
    return {
        "bytes_per_event": round(per_event, 1),
        "events_per_job": round(events / result.arrivals, 2),
        "log_mb": round((with_log - without_log) / 1e6, 1),
        "frames_mb": round(frame_bytes / 1e6, 1),
        "frames_peak_build_mb": round(peak_building / 1e6, 1),
        "extrapolated_1m_jobs_log_mb": round(log_1m / 1e6),
        "extrapolated_1m_jobs_log_plus_frames_peak_mb": round((log_1m + peak_building * scale) / 1e6),
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    parser.add_argument("--write", action="store_true", help="save bench/results/lab_frames.json")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "bench": "lab_frames",
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "command": "python " + " ".join(["bench/lab_frames.py", *sys.argv[1:]]),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    report.update(timings(args.jobs))
    if not args.no_memory:
        report.update(memory(args.jobs))
    print(f"{report['jobs']:,} jobs, {report['events']:,} events: simulated in {report['simulate_s']} s")
    print(
        "frames: "
        + ", ".join(f"{name} {report[f'{name}_s']} s" for name in FRAMES)
        + f"; total {report['frames_s']} s = {report['frames_over_simulate']} x the simulation"
        " (target < 0.25)"
    )
    if "bytes_per_event" in report:
        print(
            f"memory: {report['bytes_per_event']} bytes per stored event "
            f"({report['events_per_job']} events/job), "
            f"log {report['log_mb']} MB, frames {report['frames_mb']} MB (peak while building "
            f"{report['frames_peak_build_mb']} MB); "
            f"1,000,000 jobs: log ~{report['extrapolated_1m_jobs_log_mb']} MB, "
            f"log + frames peak ~{report['extrapolated_1m_jobs_log_plus_frames_peak_mb']} MB (extrapolated)"
        )
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report))
    if args.write:
        out = Path(__file__).parent / "results" / "lab_frames.json"
        out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
