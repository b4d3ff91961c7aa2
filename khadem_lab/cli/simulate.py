"""``khadem-lab simulate SCENARIO --out DIR``: a lab scenario run headless on the virtual clock.

Writes the scenario's frames as CSV (``events``, ``attempts``, ``jobs``, ``depth``, ``metrics``),
its plots as PNG (``overview``, ``depth``, ``throughput``, ``latency``, ``outcomes``) and
``summary.txt``. The same scenario and seed write the same CSV bytes. SCENARIO is one of the
built-in ones (:data:`SCENARIOS`) or ``module:attribute`` naming a
:class:`~khadem_lab.lab.scenarios.Scenario`, or a function of the seed that returns one.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import exits

if TYPE_CHECKING:
    from ..lab.scenarios import Scenario, ScenarioResult

FRAMES = ("events", "attempts", "jobs", "depth", "metrics")
PLOTS = ("overview", "depth", "throughput", "latency", "outcomes")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def _steady(seed: int) -> Scenario:
    """10 jobs a minute, each 2 to 20 s of work, one worker: a quiet queue."""
    from ..lab.scenarios import ExponentialTime, JobType, Poisson, Scenario

    return Scenario(
        arrivals=[Poisson(per_minute=10)], job_types=[JobType("Task", service=ExponentialTime(5))], seed=seed
    )


def _flaky(seed: int) -> Scenario:
    """30 jobs a minute on two workers; one call in five fails and is retried with backoff."""
    from ..lab.scenarios import ExponentialTime, Flaky, JobType, Poisson, Scenario

    return Scenario(
        arrivals=[Poisson(per_minute=30)],
        job_types=[JobType("SendEmail", 3, ExponentialTime(2)), JobType("ChargeCard", 1, ExponentialTime(4))],
        failures=[Flaky(0.2)],
        workers=2,
        seed=seed,
    )


def _outage(seed: int) -> Scenario:
    """20 jobs a minute; the service is down from minute 10 to minute 20: retries pile up."""
    from ..lab.scenarios import ExponentialTime, JobType, Outage, Poisson, Scenario

    return Scenario(
        arrivals=[Poisson(per_minute=20)],
        job_types=[JobType("CallApi", service=ExponentialTime(2), max_retries=4)],
        failures=[Outage(start=timedelta(minutes=10), duration=timedelta(minutes=10))],
        workers=2,
        seed=seed,
    )


def _crash(seed: int) -> Scenario:
    """Two workers; worker 1 crashes at minute 10: its jobs come back when their leases end."""
    from ..lab.scenarios import ExponentialTime, JobType, Poisson, Scenario, WorkerCrash

    return Scenario(
        arrivals=[Poisson(per_minute=20)],
        job_types=[JobType("Task", service=ExponentialTime(4))],
        failures=[WorkerCrash(at=timedelta(minutes=10))],
        workers=2,
        concurrency=2,
        lease_time=timedelta(minutes=2),
        seed=seed,
    )


#: The built-in scenarios, by name: each a function of the seed.
SCENARIOS: dict[str, Callable[[int], Scenario]] = {
    "steady": _steady,
    "flaky": _flaky,
    "outage": _outage,
    "crash": _crash,
}
EXAMPLE = """example:
  khadem-lab simulate flaky --seed 1 --until 1h --out results/
  khadem-lab simulate myapp.load:black_friday --until 30m --out bf/

built-in scenarios:
""" + "\n".join(f"  {name:<8}{(f.__doc__ or '').strip()}" for name, f in SCENARIOS.items())


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "simulate",
        parents=[common],
        help="run a lab scenario headless: CSV frames, PNG plots, a summary",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", help="a built-in scenario (below) or module:attribute")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--until",
        default="30m",
        metavar="DURATION",
        help="virtual time to run: 90s, 15m, 1h30m (default 30m)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV, PNG and summary files")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal)",
    )
    p.set_defaults(run=run)


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h30m"`` or a number of seconds, as a timedelta."""
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise exits.CommandError(
            f"--until {text!r} is not a duration: write e.g. 90s, 15m or 1h30m", exits.USAGE
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise exits.CommandError(f"--until {text!r} must be longer than zero", exits.USAGE)
    return duration


def load_scenario(name: str, seed: int) -> Scenario:
    """A built-in scenario, or the one ``module:attribute`` names, with ``seed``."""
    from ..lab.scenarios import Scenario

    if name in SCENARIOS:
        return SCENARIOS[name](seed)
    if ":" not in name:
        raise exits.CommandError(
            f"unknown scenario {name!r}: built-in ones are {', '.join(SCENARIOS)}; or give module:attribute",
            exits.USAGE,
        )
    module_name, _, attribute = name.partition(":")
    try:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise exits.CommandError(
            f"cannot load scenario {name!r}: {type(exc).__name__}: {exc}", exits.USAGE
        ) from exc
    if callable(target) and not isinstance(target, Scenario):
        target = target(seed)
    if not isinstance(target, Scenario):
        raise exits.CommandError(
            f"{name} is a {type(target).__name__}, not a Scenario (or a function of the seed returning one)",
            exits.USAGE,
        )
    return replace(target, seed=seed)


def run(args: argparse.Namespace) -> int:
    try:
        import matplotlib
    except ImportError:
        raise exits.CommandError(
            "simulate needs the lab extra: pip install 'khadem-lab[lab]'", exits.USAGE
        ) from None
    matplotlib.use("Agg")
    until = parse_duration(args.until)
    scenario = load_scenario(args.scenario, args.seed)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = scenario.run(until=until, progress=progress)
    written = write_outputs(result, out, f"{args.scenario} --seed {args.seed} --until {args.until}")
    print((out / "summary.txt").read_text(), end="")
    print(f"wrote {len(written)} files to {out}: {', '.join(p.name for p in written)}")
    return exits.OK


def write_outputs(result: ScenarioResult, out: Path, title: str) -> list[Path]:
    """The frames as CSV, the plots as PNG and summary.txt, in ``out``; returns the paths."""
    import matplotlib.pyplot as plt

    from ..lab import plots

    written: list[Path] = []
    for name in FRAMES:
        frame = getattr(result, name)
        path = out / f"{name}.csv"
        frame.to_csv(path, index=frame.index.name is not None, lineterminator="\n")
        written.append(path)
    figures = {
        "overview": lambda: plots.overview(result.log),
        "depth": lambda: plots.depth(result.depth),
        "throughput": lambda: plots.throughput(result.events),
        "latency": lambda: plots.latency(result.jobs),
        "outcomes": lambda: plots.outcomes(result.jobs),
    }
    for name in PLOTS:
        fig = figures[name]()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    path = out / "summary.txt"
    path.write_text(summary(result, title), encoding="utf-8")
    written.append(path)
    return written


def summary(result: ScenarioResult, title: str) -> str:
    """A short text report of a run: arrivals, how the jobs ended, waits and latencies."""
    jobs = result.jobs
    states = jobs["final_state"].value_counts()
    stats = result.stats
    lines = [
        f"scenario {title}",
        f"virtual time {result.scenario.start.isoformat()} to {result.sim.now().isoformat()}",
        f"arrivals      {result.arrivals}",
        f"events        {len(result.log)}",
    ]
    for state in ("completed", "dead_lettered", "discarded", "pending", "running"):
        lines.append(f"{state:<14}{int(states.get(state, 0))}")
    metrics = stats.get("metrics", {})
    if metrics:
        lines.append(f"{'success rate':<14}{metrics['success_rate'] * 100:.1f}%")
        lines.append(f"{'retries':<14}{metrics['jobs_retried']}")
    for column in ("wait", "latency"):
        done = jobs[column].dropna()
        if len(done):
            seconds = done.dt.total_seconds() if hasattr(done, "dt") else done
            p50, p90, p99 = (float(seconds.quantile(q)) for q in (0.5, 0.9, 0.99))
            lines.append(f"{column:<14}p50 {p50:.1f} s, p90 {p90:.1f} s, p99 {p99:.1f} s")
    left = f"{stats['queue_depth']} (ready {stats['ready_jobs']}, delayed {stats['delayed_jobs']})"
    lines.append(f"{'left waiting':<14}{left}")
    return "\n".join(lines) + "\n"
