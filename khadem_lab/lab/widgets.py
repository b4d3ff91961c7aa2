"""Notebook panels (ipywidgets 8) over a :class:`~khadem_lab.simulation.Simulation`.

- :class:`ClockPanel`: the virtual now, buttons that advance it, play/pause in real time.
- :class:`QueueDashboard`: the spec's statistics, depth and timeline plots redrawn after every
  clock step, the dead-letter queue (requeue, purge) and workers (start, stop).
- :class:`RetryExplorer`: retry settings in, the retry plan and a simulated outcome out.
- :class:`Lab`: the three in one layout: ``Lab(sim, qm)`` is the first line of a notebook.

Every control has a programmatic twin (a method, or ``button.click()``), so a test or a cell
drives a panel without a browser. An exception in a callback is shown in the panel's ``status``
and logged (``khadem_lab.lab.widgets``), never swallowed. Callbacks run in the kernel's main
thread and use the blocking ``sim.advance(...)``; plots are drawn there after it returns, into one
reused figure per plot, as PNG images (no ipympl needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import importlib
import io
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import ipywidgets as widgets  # type: ignore[import-untyped]
import pandas as pd
from matplotlib.figure import Figure

from ..backoff import Explicit, Exponential, ExponentialJitter, RetryStrategy
from ..events import EventLog, QueueEvent
from ..job import QueueJob
from ..manager import QueueManager
from ..simulation import Simulation
from . import plots

__all__ = ["SPEEDS", "ClockPanel", "Lab", "QueueDashboard", "RetryExplorer"]

log = logging.getLogger(__name__)

#: The play speeds offered: virtual seconds per real second.
SPEEDS = (1, 10, 60, 100, 1_000, 3_600, 10_000, 100_000)
#: The step buttons of the clock: label and virtual seconds.
STEPS = {"+1 s": 1.0, "+1 min": 60.0, "+1 h": 3600.0, "+1 day": 86400.0}

ERROR_STYLE = "color:#b00020"


def _frames() -> Any:
    return importlib.import_module(".frames", __package__)


def png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for a ``widgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class Panel:
    """What every panel shares: ``widget`` (the layout), ``status`` (an HTML line that shows what
    happened, and any error), and display in a notebook."""

    widget: Any
    status: Any

    def __init__(self) -> None:
        self.status = widgets.HTML(value="")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def report_error(self, error: BaseException, what: str) -> None:
        """Show ``error`` in the status line and log it with its traceback."""
        log.error(
            "%s: %s failed: %s: %s", type(self).__name__, what, type(error).__name__, error, exc_info=error
        )
        self.status.value = (
            f'<span style="{ERROR_STYLE}">&#9888; {html.escape(what)} failed: '
            f"{html.escape(type(error).__name__)}: {html.escape(str(error))}</span>"
        )

    def guard(self, fn: Callable[..., Any], what: str) -> Callable[..., None]:
        """``fn`` as a widget callback: an exception is reported (status and log), not lost in
        the browser's console."""

        @functools.wraps(fn)
        def callback(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as error:
                self.report_error(error, what)

        return callback

    def button(self, description: str, action: Callable[[], Any], *, tooltip: str = "", **style: Any) -> Any:
        b = widgets.Button(description=description, tooltip=tooltip or description, **style)
        b.on_click(self.guard(lambda _button: action(), description))
        return b


# ========================================================================================== clock
class ClockPanel(Panel):
    """The virtual now (in ``sim.tz``), buttons that advance it, and play/pause.

    Counts the events each step produced: from ``log`` (an :class:`EventLog` already subscribed),
    or from a counter it subscribes to ``qm``. Programmatic twins: :meth:`advance`,
    :meth:`run_until_idle`, :meth:`step` / :meth:`step_async`, :meth:`play`, :meth:`pause`.
    ``on_step(fn)``: call ``fn(events_produced)`` after every step (the dashboard redraws there).
    """

    def __init__(
        self,
        sim: Simulation,
        *,
        log: EventLog | None = None,
        qm: QueueManager | None = None,
        tick: float = 0.25,
        speed: int = 60,
        idle_limit: timedelta = timedelta(days=7),
    ) -> None:
        super().__init__()
        self.sim = sim
        self.tick = tick
        self.idle_limit = idle_limit
        self._seen = 0
        self._count: Callable[[], int] | None = None
        if log is not None:
            self._count = functools.partial(len, log)
        elif qm is not None:
            qm.subscribe(self._counted)
            self._count = lambda: self._seen
        self._listeners: list[Callable[[int | None], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_step: int | None = None

        self.now_label = widgets.HTML()
        self.events_label = widgets.HTML()
        self.step_buttons = {
            label: self.button(
                label, functools.partial(self.advance, seconds), tooltip=f"advance {label[1:]}"
            )
            for label, seconds in STEPS.items()
        }
        self.idle_button = self.button(
            "run until idle",
            self.run_until_idle,
            tooltip=f"run until nothing is scheduled (at most {idle_limit})",
        )
        self.speed = widgets.Dropdown(
            options=[(f"x{s:,}", s) for s in SPEEDS],
            value=speed,
            description="speed",
            layout={"width": "160px"},
        )
        self.play_button = widgets.ToggleButton(value=False, description="play", icon="play")
        self.play_button.observe(self.guard(self._on_play, "play"), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.now_label, self.events_label]),
                widgets.HBox([*self.step_buttons.values(), self.idle_button]),
                widgets.HBox([self.play_button, self.speed]),
                self.status,
            ]
        )
        self.refresh()

    # -- what the buttons do ----------------------------------------------------------------
    def advance(self, seconds: float) -> int | None:
        """Advance the clock by ``seconds`` (blocking); returns the events it produced."""
        before = self._events()
        self.sim.advance(seconds=seconds)
        return self._stepped(before, f"advanced {plots.format_duration(seconds)}")

    def run_until_idle(self) -> int | None:
        """Run until nothing is scheduled (or ``idle_limit`` has passed); returns the events."""
        before, start = self._events(), self.sim.time()
        self.sim.run_until_idle(self.idle_limit)
        took = plots.format_duration(self.sim.time() - start)
        return self._stepped(before, f"ran until idle ({took} of virtual time)")

    def step(self) -> int | None:
        """One play step, blocking: ``tick`` real seconds at the chosen speed."""
        return self.advance(self.tick * self.speed.value)

    async def step_async(self) -> int | None:
        """One play step that keeps the kernel responsive (``await sim.advance_async``)."""
        before = self._events()
        seconds = self.tick * self.speed.value
        await self.sim.advance_async(seconds=seconds)
        return self._stepped(before, f"playing at x{self.speed.value:,}")

    def play(self) -> None:
        """Start advancing in real time at ``speed`` (needs a running event loop: a kernel's, or
        ``asyncio.run`` in a test); returns at once."""
        self.play_button.value = True

    def pause(self) -> None:
        """Stop playing after the current step."""
        self.play_button.value = False

    @property
    def playing(self) -> bool:
        return bool(self.play_button.value)

    async def wait(self) -> None:
        """Wait until a play loop has ended (after :meth:`pause`)."""
        if self._task is not None:
            await self._task

    def on_step(self, listener: Callable[[int | None], Any]) -> None:
        """Call ``listener(events_produced)`` after every step (None: not counted)."""
        self._listeners.append(listener)

    def refresh(self) -> None:
        now = self.sim.now()
        self.now_label.value = (
            f"<b style='font-size:1.2em'>{now:%Y-%m-%d %H:%M:%S}</b> {html.escape(str(now.tzinfo))} "
            f"(virtual; {plots.format_duration(self.sim.elapsed.total_seconds())} in)"
        )
        if self.last_step is not None:
            self.events_label.value = f"&nbsp;&nbsp;last step: <b>{self.last_step:,}</b> events"

    # -- plumbing ---------------------------------------------------------------------------------
    def _counted(self, _event: QueueEvent) -> None:
        self._seen += 1

    def _events(self) -> int | None:
        return None if self._count is None else self._count()

    def _stepped(self, before: int | None, what: str) -> int | None:
        after = self._events()
        produced = None if before is None or after is None else after - before
        self.last_step = produced
        self.refresh()
        self.say(what + ("" if produced is None else f": {produced:,} events"))
        for listener in self._listeners:
            listener(produced)
        return produced

    def _on_play(self, change: dict[str, Any]) -> None:
        self.play_button.icon = "pause" if change["new"] else "play"
        self.play_button.description = "pause" if change["new"] else "play"
        if not change["new"] or (self._task is not None and not self._task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.play_button.value = False
            raise RuntimeError(
                "play needs a running event loop (a Jupyter kernel); use step() or advance() here"
            ) from None
        self._task = loop.create_task(self._play(), name="ClockPanel.play")

    async def _play(self) -> None:
        try:
            while self.playing:
                started = time.monotonic()
                await self.step_async()
                await asyncio.sleep(max(0.0, self.tick - (time.monotonic() - started)))
        except Exception as error:
            self.report_error(error, "play")
            self.play_button.value = False


# ====================================================================================== dashboard
STAT_ROWS = (
    ("driver", "driver_name"),
    ("queue depth", "queue_depth"),
    ("processing", "processing_count"),
    ("pending", "pending_count"),
    ("ready", "ready_jobs"),
    ("delayed", "delayed_jobs"),
)
METRIC_ROWS = (
    ("queued (total)", "jobs_queued"),
    ("completed", "jobs_completed"),
    ("failed for good", "jobs_failed"),
    ("attempts failed", "attempts_failed"),
    ("retried", "jobs_retried"),
)


def stats_table(stats: dict[str, Any]) -> str:
    """The spec's statistics ("Monitoring and Metrics") as an HTML table, with its warnings."""
    rows = [(label, stats.get(key, "-")) for label, key in STAT_ROWS]
    warnings: list[str] = []
    metrics = stats.get("metrics")
    if metrics is not None:
        rows += [(label, metrics.get(key, "-")) for label, key in METRIC_ROWS]
        rate = float(metrics.get("success_rate", 1.0))
        rows.append(("success rate", f"{rate * 100:.1f} %"))
        by_type = metrics.get("jobs_by_type") or {}
        rows.append(("jobs by type", ", ".join(f"{k}: {v}" for k, v in by_type.items()) or "-"))
        if rate < plots.ALERT_SUCCESS_RATE:
            warnings.append(f"low success rate: {rate * 100:.1f} % (under 90 %)")
    dlq = stats.get("dlq")
    if dlq is not None:
        rows.append(("dead-letter queue", dlq.get("total_jobs", 0)))
        if dlq.get("total_jobs"):
            warnings.append(f"{dlq['total_jobs']} job(s) in the dead-letter queue")
    if int(stats.get("queue_depth", 0) or 0) > 100:
        warnings.append(f"large queue backlog: {stats['queue_depth']} jobs (over 100)")
    body = "".join(
        f"<tr><td style='padding:0 1em 0 0'>{html.escape(label)}</td>"
        f"<td style='text-align:right'><b>{html.escape(str(value))}</b></td></tr>"
        for label, value in rows
    )
    notes = "".join(f"<div style='{ERROR_STYLE}'>&#9888; {html.escape(w)}</div>" for w in warnings)
    return f"<b>get_stats()</b><table style='font-family:monospace'>{body}</table>{notes}"


class QueueDashboard(Panel):
    """The queue at a glance, redrawn after every clock step.

    ``log``: an :class:`EventLog` subscribed to ``qm`` (one is subscribed if None). ``timeline``:
    how many recent attempts the timeline shows. Programmatic twins: :meth:`refresh`,
    :meth:`requeue`, :meth:`requeue_all`, :meth:`purge`, :meth:`purge_all`, :meth:`start_worker`,
    :meth:`stop_workers`, and ``dashboard.clock``'s. :attr:`frame`: what the timeline plots (the
    attempts); :attr:`frames`: every frame drawn. :attr:`timings`: real seconds of the last
    redraw, by part.
    """

    def __init__(
        self,
        qm: QueueManager,
        sim: Simulation,
        log: EventLog | None = None,
        *,
        clock: ClockPanel | None = None,
        timeline: int = 200,
        by: str = "worker",
        dpi: int = 80,
    ) -> None:
        super().__init__()
        self.qm = qm
        self.sim = sim
        if log is None:
            log = EventLog()
            qm.subscribe(log)
        self.log = log
        self.timeline_last = timeline
        self.by = by
        self.dpi = dpi
        self.clock = clock or ClockPanel(sim, log=log)
        self.clock.on_step(self._after_step)
        self.frames: dict[str, pd.DataFrame] = {}
        self.timings: dict[str, float] = {}
        self._drawn_at: tuple[int, float] | None = None

        self.stats_html = widgets.HTML()
        self.timeline_figure = plots.new_figure(10, 3.6)
        self.depth_figure = plots.new_figure(10, 2.8)
        self.timeline_image = widgets.Image(format="png", layout={"width": "100%"})
        self.depth_image = widgets.Image(format="png", layout={"width": "100%"})
        self.dead_letters = widgets.Select(options=[], rows=5, layout={"width": "100%"})
        self.concurrency = widgets.BoundedIntText(value=2, min=1, max=64, description="concurrency")
        self.workers_html = widgets.HTML()
        dead_box = widgets.VBox(
            [
                widgets.HTML("<b>dead-letter queue</b> (failed for good, kept with the error)"),
                self.dead_letters,
                widgets.HBox(
                    [
                        self.button(
                            "requeue", self.requeue, tooltip="run the selected job again, attempts from 1"
                        ),
                        self.button("requeue all", self.requeue_all),
                        self.button(
                            "purge", self.purge, tooltip="delete the selected job", button_style="danger"
                        ),
                        self.button("purge all", self.purge_all, button_style="danger"),
                    ]
                ),
            ]
        )
        workers_box = widgets.VBox(
            [
                widgets.HTML("<b>workers</b>"),
                self.workers_html,
                widgets.HBox(
                    [
                        self.concurrency,
                        self.button("start worker", self.start_worker, button_style="success"),
                        self.button(
                            "stop workers", self.stop_workers, tooltip="graceful: jobs in hand finish"
                        ),
                    ]
                ),
            ]
        )
        self.body = widgets.VBox(
            [
                widgets.HBox([self.stats_html, widgets.VBox([workers_box, dead_box])]),
                self.timeline_image,
                self.depth_image,
                self.status,
            ]
        )
        self.widget = widgets.VBox([self.clock.widget, self.body])
        self.refresh()

    # -- data ----------------------------------------------------------------------------------
    @property
    def frame(self) -> pd.DataFrame:
        """The attempts the timeline draws (``frames.attempts`` of the log), as of the last redraw."""
        return self.frames["attempts"]

    @property
    def driver(self) -> Any:
        return self.qm.driver

    # -- redraw --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the statistics and the dead letters, and redraw both plots (if anything happened)."""
        t0 = time.perf_counter()
        stats = self.sim.run(self.driver.get_stats())
        self.stats_html.value = stats_table(stats)
        dead = self.sim.run(self.driver.dead_letters.list()) if self.driver.config.use_dlq else []
        self.dead_letters.options = [
            (f"job {d.id} {d.type}: {d.attempts} attempt(s), {d.error}", d.id) for d in dead
        ]
        running = self.qm.workers
        self.workers_html.value = (
            ", ".join(f"{html.escape(w.name)} (x{w.concurrency})" for w in running) or "none running"
        )
        t1 = time.perf_counter()
        key = (len(self.log), self.sim.time())
        if key != self._drawn_at:
            self._redraw()
            self._drawn_at = key
        self.timings["stats"] = t1 - t0
        self.timings["total"] = time.perf_counter() - t0

    def _redraw(self) -> None:
        t0 = time.perf_counter()
        f = _frames()
        events = f._columns(self.log)  # read once for both frames
        tz = self.sim.tz
        self.frames = {"attempts": f.attempts(events, tz=tz), "depth": f.depth(events, tz=tz)}
        t1 = time.perf_counter()
        self.timeline_figure.clear()
        plots.timeline(
            self.frames["attempts"],
            ax=self.timeline_figure.add_subplot(),
            by=self.by,
            last=self.timeline_last,
            now=self.sim.now(),
        )
        self.depth_figure.clear()
        plots.depth(self.frames["depth"], ax=self.depth_figure.add_subplot())
        t2 = time.perf_counter()
        self.timeline_image.value = png(self.timeline_figure, self.dpi)
        self.depth_image.value = png(self.depth_figure, self.dpi)
        t3 = time.perf_counter()
        self.timings.update(frames=t1 - t0, plots=t2 - t1, render=t3 - t2)

    def _after_step(self, _produced: int | None) -> None:
        self.refresh()

    def figure(self, fig: Figure | None = None) -> Figure:
        """The dashboard's plots (and more: throughput, latency, success rate) as one figure."""
        return plots.overview(self.log, fig, tz=self.sim.tz, last=self.timeline_last)

    # -- dead letters ------------------------------------------------------------------------------
    def _selected(self, job_id: str | None) -> str:
        chosen = job_id if job_id is not None else self.dead_letters.value
        if chosen is None:
            raise ValueError("no dead-lettered job selected")
        return str(chosen)

    def requeue(self, job_id: str | None = None) -> bool:
        """Put a dead-lettered job (the selected one by default) back, attempts from 1."""
        chosen = self._selected(job_id)
        done = bool(self.sim.run(self.driver.dead_letters.requeue(chosen)))
        self.refresh()
        self.say(f"job {chosen} requeued: it runs again from attempt 1" if done else f"no dead job {chosen}")
        return done

    def requeue_all(self) -> int:
        count = int(self.sim.run(self.driver.dead_letters.requeue_all()))
        self.refresh()
        self.say(f"{count} job(s) requeued")
        return count

    def purge(self, job_id: str | None = None) -> int:
        """Delete a dead-lettered job (the selected one by default) for good."""
        chosen = self._selected(job_id)
        count = int(self.sim.run(self.driver.dead_letters.purge([chosen])))
        self.refresh()
        self.say(f"job {chosen} purged" if count else f"no dead job {chosen}")
        return count

    def purge_all(self) -> int:
        count = int(self.sim.run(self.driver.dead_letters.purge()))
        self.refresh()
        self.say(f"{count} dead-lettered job(s) purged")
        return count

    # -- workers ----------------------------------------------------------------------------------
    def start_worker(self, concurrency: int | None = None, **options: Any) -> Any:
        """Start a background worker (``qm.start_worker(run_in_background=True, ...)``)."""
        n = int(self.concurrency.value if concurrency is None else concurrency)
        worker = self.sim.run(self.qm.start_worker(run_in_background=True, concurrency=n, **options))
        self.refresh()
        self.say(f"{worker.name} started (concurrency {n}); advance the clock to see it work")
        return worker

    def stop_workers(self) -> None:
        """Stop every worker gracefully: the jobs in hand finish (virtual time moves for them)."""
        names = [w.name for w in self.qm.workers]
        self.sim.run(self.qm.stop_workers())
        self.clock.refresh()
        self.refresh()
        self.say(f"stopped: {', '.join(names) or 'no worker was running'}")


# ================================================================================ retry explorer
@dataclass
class FlakyJob(QueueJob):
    """The explorer's job: runs ``seconds`` (virtual), then fails with probability ``p``.

    The draws come from ``rng``, seeded per run: jobs run in a deterministic order, so a run
    repeats exactly."""

    number: int
    rng: ClassVar[random.Random] = random.Random(0)
    p: ClassVar[float] = 0.5
    seconds: ClassVar[float] = 1.0

    async def handle(self) -> None:
        await asyncio.sleep(self.seconds)
        if self.rng.random() < self.p:
            raise ConnectionError("the flaky service failed")


STRATEGIES = ("fixed", "exponential", "explicit")


class RetryExplorer(Panel):
    """Retry settings in; the retry plan and a simulated outcome out.

    Controls: ``max_retries``, ``retry_delay`` (seconds), ``strategy`` (fixed, exponential,
    explicit), ``factor``, ``explicit`` (seconds, comma-separated), ``jitter``,
    ``failure_probability``, ``seed``, ``jobs`` and ``seconds`` (each attempt's run time).
    Programmatic twin: :meth:`set` (several at once, one redraw). :attr:`plan` is
    ``frames.retry_plan`` of one job; :attr:`outcome` the summary of the last simulated run and
    :attr:`jobs_frame` its ``frames.jobs``.
    """

    def __init__(self, *, jobs: int = 30, seed: int = 0, dpi: int = 80) -> None:
        super().__init__()
        self.dpi = dpi
        style = {"description_width": "150px"}
        layout = {"width": "420px"}
        self.max_retries = widgets.IntSlider(
            3, min=0, max=10, description="max retries", style=style, layout=layout
        )
        self.retry_delay = widgets.FloatLogSlider(
            30, base=10, min=0, max=4, description="retry delay (s)", style=style, layout=layout
        )
        self.strategy = widgets.Dropdown(
            options=STRATEGIES, value="exponential", description="strategy", style=style
        )
        self.factor = widgets.FloatSlider(2.0, min=1.0, max=4.0, step=0.5, description="factor", style=style)
        self.explicit = widgets.Text("10, 60, 300", description="explicit delays (s)", style=style)
        self.jitter = widgets.Checkbox(False, description="jitter (full, seeded)")
        self.failure_probability = widgets.FloatSlider(
            0.5, min=0.0, max=1.0, step=0.05, description="failure probability", style=style, layout=layout
        )
        self.seed = widgets.IntText(seed, description="seed", style=style)
        self.jobs = widgets.IntSlider(
            jobs, min=1, max=500, description="jobs to simulate", style=style, layout=layout
        )
        self.seconds = widgets.FloatSlider(
            1.0, min=0.0, max=60.0, description="attempt runs (s)", style=style
        )
        self.controls = [
            self.strategy,
            self.max_retries,
            self.retry_delay,
            self.factor,
            self.explicit,
            self.jitter,
            self.failure_probability,
            self.jobs,
            self.seed,
            self.seconds,
        ]
        self._holding = False
        for control in self.controls:
            control.observe(self.guard(self._changed, "redraw"), names="value")
        self.plan_figure = plots.new_figure(9, 2.4)
        self.outcome_figure = plots.new_figure(9, 3.0)
        self.plan_image = widgets.Image(format="png", layout={"width": "100%"})
        self.outcome_image = widgets.Image(format="png", layout={"width": "100%"})
        self.plan_html = widgets.HTML()
        self.summary = widgets.HTML()
        self.plan: pd.DataFrame = pd.DataFrame()
        self.jobs_frame: pd.DataFrame = pd.DataFrame()
        self.outcome: dict[str, Any] = {}
        self.widget = widgets.VBox(
            [
                widgets.HBox([widgets.VBox(self.controls), self.plan_html]),
                self.plan_image,
                self.summary,
                self.outcome_image,
                self.status,
            ]
        )
        self.redraw()

    # -- the settings ---------------------------------------------------------------------------
    def retry_strategy(self) -> RetryStrategy | timedelta:
        """The strategy the controls describe."""
        base = float(self.retry_delay.value)
        seed = int(self.seed.value)
        kind = self.strategy.value
        if kind == "explicit":
            delays = [float(x) for x in str(self.explicit.value).replace(";", ",").split(",") if x.strip()]
            if not delays:
                raise ValueError("explicit delays: give seconds separated by commas, e.g. 10, 60, 300")
            if self.jitter.value:
                raise ValueError(
                    "jitter applies to the fixed and exponential strategies, not explicit delays"
                )
            return Explicit(delays)
        factor = 1.0 if kind == "fixed" else float(self.factor.value)
        if self.jitter.value:  # full jitter: a uniform draw up to the (fixed or exponential) delay
            return ExponentialJitter(base=base, factor=factor, seed=seed)
        return timedelta(seconds=base) if kind == "fixed" else Exponential(base=base, factor=factor)

    def set(self, **values: Any) -> None:
        """Set several controls by name (``set(max_retries=5, jitter=True)``), then redraw once."""
        unknown = [name for name in values if not any(c is getattr(self, name, None) for c in self.controls)]
        if unknown:
            raise ValueError(f"no control named {', '.join(unknown)}; the controls: {self._names()}")
        with self._hold():
            for name, value in values.items():
                getattr(self, name).value = value
        self.redraw()

    def _names(self) -> str:
        return ", ".join(name for name, v in vars(self).items() if any(v is c for c in self.controls))

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def _changed(self, _change: Any) -> None:
        if not self._holding:
            self.redraw()

    # -- the pictures -----------------------------------------------------------------------------
    def job(self) -> FlakyJob:
        job = FlakyJob(0)
        job.max_retries = int(self.max_retries.value)
        job.retry_delay = self.retry_strategy()
        return job

    def redraw(self) -> None:
        job = self.job()
        strategy = job.retry_delay
        seed = int(self.seed.value)
        self.plan = _frames().retry_plan(job, seed=seed, duration=float(self.seconds.value))
        self.plan_html.value = self.plan.to_html(index=False, na_rep="", float_format=lambda v: f"{v:g}")
        self.plan_figure.clear()
        name = plots.strategy_name(strategy)
        plots.retry_schedules(
            {name: strategy},
            max_retries=int(self.max_retries.value),
            seeds=(seed, seed + 1, seed + 2),
            ax=self.plan_figure.add_subplot(),
            duration=float(self.seconds.value),
        )
        self.plan_image.value = png(self.plan_figure, self.dpi)
        self.outcome = self.simulate()
        self.outcome_figure.clear()
        plots.outcomes(self.jobs_frame, ax=self.outcome_figure.add_subplot())
        self.outcome_image.value = png(self.outcome_figure, self.dpi)
        o = self.outcome
        self.summary.value = (
            f"<b>{o['jobs']}</b> jobs, each attempt failing with probability {o['failure_probability']:g}: "
            f"<b>{o['completed']}</b> completed, <b>{o['dead_lettered']}</b> reached the dead-letter queue; "
            f"all done after <b>{plots.format_duration(o['makespan'])}</b> of virtual time "
            f"(median job {plots.format_duration(o['median_latency'])}). "
            f"Expected share dead-lettered: p<sup>{int(self.max_retries.value) + 1}</sup> = "
            f"{o['failure_probability'] ** (int(self.max_retries.value) + 1):.3g}."
        )
        self.say(f"simulated {o['jobs']} jobs in {o['real_seconds']:.2f} s of real time")

    def simulate(self) -> dict[str, Any]:
        """Run ``jobs`` flaky jobs on a fresh seeded Simulation (memory driver, one worker with
        concurrency 4) until idle; return the summary (also in :attr:`outcome`)."""
        started = time.perf_counter()
        seed = int(self.seed.value)
        p = float(self.failure_probability.value)
        FlakyJob.rng = random.Random(seed)
        FlakyJob.p = p
        FlakyJob.seconds = float(self.seconds.value)
        strategy = self.retry_strategy()  # one shared instance: as a class attribute would be
        events = EventLog()
        config = {"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}}
        with Simulation(seed=seed, stall_timeout=None) as sim:
            qm = QueueManager(config, clock=sim.clock)
            qm.load_from_config()
            qm.subscribe(events)
            batch = []
            for n in range(int(self.jobs.value)):
                job = FlakyJob(n)
                job.max_retries = int(self.max_retries.value)
                job.retry_delay = strategy
                batch.append(job)
            sim.run(qm.dispatch_batch(batch))
            sim.run(qm.start_worker(run_in_background=True, concurrency=4, name="explorer"))
            sim.run_until_idle(timedelta(days=365))
            sim.run(qm.stop_workers())
        self.jobs_frame = jobs = _frames().jobs(events)
        states = jobs["final_state"].astype(str)
        done = jobs["done"].dropna()
        return {
            "jobs": len(jobs),
            "failure_probability": p,
            "completed": int((states == "completed").sum()),
            "dead_lettered": int((states == "dead_lettered").sum()),
            "makespan": float((done.max() - jobs["dispatched"].min()).total_seconds()) if len(done) else 0.0,
            "median_latency": float(jobs["latency"].median()) if len(done) else float("nan"),
            "real_seconds": time.perf_counter() - started,
        }


# ============================================================================================ lab
class Lab(Panel):
    """The clock, the dashboard and the retry explorer in one layout: ``Lab(sim, qm)``."""

    def __init__(self, sim: Simulation, qm: QueueManager, log: EventLog | None = None) -> None:
        super().__init__()
        self.dashboard = QueueDashboard(qm, sim, log)
        self.clock = self.dashboard.clock
        self.explorer = RetryExplorer()
        self.status = self.dashboard.status
        self.tabs = widgets.Tab(
            children=[self.dashboard.body, self.explorer.widget], titles=["Queue", "Retries"]
        )
        self.widget = widgets.VBox([self.clock.widget, self.tabs])
