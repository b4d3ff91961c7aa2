"""The lab's panels (khadem_lab.lab.widgets), driven without a browser through their twins."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from khadem_lab import EventLog, QueueJob, QueueManager, Simulation
from khadem_lab.lab import widgets as lab_widgets

CONFIG = {"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}}


@dataclass
class Flaky(QueueJob):
    """Runs 2 s; fails its first ``fails`` attempts. 2 retries, 30 s apart."""

    fails: int
    max_retries = 2
    retry_delay = timedelta(seconds=30)

    async def handle(self) -> None:
        await asyncio.sleep(2)
        if self.attempt <= self.fails:
            raise ConnectionError("service down")


@pytest.fixture
def world() -> Iterator[tuple[Simulation, QueueManager, EventLog]]:
    with Simulation(seed=1) as sim:
        qm = QueueManager(CONFIG, clock=sim.clock)
        qm.load_from_config()
        log = EventLog()
        qm.subscribe(log)
        sim.run(qm.dispatch_batch([Flaky(0), Flaky(1), Flaky(5)]))
        yield sim, qm, log


def test_clock_buttons_advance_virtual_time_and_count_events(
    world: tuple[Simulation, QueueManager, EventLog],
) -> None:
    sim, qm, log = world
    panel = lab_widgets.ClockPanel(sim, log=log)
    start = sim.now()
    sim.run(qm.start_worker(run_in_background=True, concurrency=2))
    panel.step_buttons["+1 min"].click()
    assert sim.now() - start == timedelta(minutes=1)
    assert panel.last_step is not None and panel.last_step > 0
    assert f"{panel.last_step:,} events" in panel.status.value
    assert "09:01:00" in panel.now_label.value
    assert panel.advance(3600) == 0 or panel.last_step is not None
    panel.step_buttons["+1 day"].click()
    assert sim.now() - start == timedelta(days=1, hours=1, minutes=1)


def test_clock_counts_with_its_own_subscriber(world: tuple[Simulation, QueueManager, EventLog]) -> None:
    sim, qm, log = world
    panel = lab_widgets.ClockPanel(sim, qm=qm)
    sim.run(qm.start_worker(run_in_background=True))
    before = len(log)
    produced = panel.advance(10)
    assert produced == len(log) - before > 0


def test_run_until_idle_button(world: tuple[Simulation, QueueManager, EventLog]) -> None:
    sim, qm, log = world
    panel = lab_widgets.ClockPanel(sim, log=log)
    sim.run(qm.start_worker(run_in_background=True))
    panel.idle_button.click()
    assert "ran until idle" in panel.status.value
    assert sum(e.kind == "dead_lettered" for e in log) == 1


def test_play_advances_in_steps_without_blocking_the_loop(
    world: tuple[Simulation, QueueManager, EventLog],
) -> None:
    sim, qm, log = world
    panel = lab_widgets.ClockPanel(sim, log=log, tick=0.02, speed=100)
    sim.run(qm.start_worker(run_in_background=True))
    steps: list[int | None] = []
    panel.on_step(steps.append)
    start = sim.time()

    async def kernel() -> int:
        panel.play()
        assert panel.play_button.description == "pause"
        turns = 0
        while sim.time() - start < 10:  # the loop stays free while the clock plays
            await asyncio.sleep(0.005)
            turns += 1
        panel.pause()
        await panel.wait()
        return turns

    turns = asyncio.run(kernel())
    assert turns > 1 and len(steps) >= 5
    assert sim.time() - start == pytest.approx(2 * len(steps))  # 0.02 s x 100 per step
    assert not panel.playing


def test_play_outside_a_running_loop_says_why(
    world: tuple[Simulation, QueueManager, EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    sim, _, log = world
    panel = lab_widgets.ClockPanel(sim, log=log)
    with caplog.at_level(logging.ERROR, logger="khadem_lab.lab.widgets"):
        panel.play()
    assert "play needs a running event loop" in panel.status.value
    assert not panel.playing
    assert any("play needs a running event loop" in r.getMessage() for r in caplog.records)


def test_an_error_in_a_callback_is_shown_and_logged(
    world: tuple[Simulation, QueueManager, EventLog], caplog: pytest.LogCaptureFixture
) -> None:
    sim, _, log = world
    panel = lab_widgets.ClockPanel(sim, log=log)

    def broken(_produced: int | None) -> None:
        raise RuntimeError("boom in a listener")

    panel.on_step(broken)
    with caplog.at_level(logging.ERROR, logger="khadem_lab.lab.widgets"):
        panel.step_buttons["+1 s"].click()
    assert "+1 s failed: RuntimeError: boom in a listener" in panel.status.value
    (record,) = [r for r in caplog.records if r.name == "khadem_lab.lab.widgets"]
    assert "boom in a listener" in record.getMessage() and record.exc_info is not None
    with pytest.raises(RuntimeError):  # the programmatic twin raises as usual
        panel.advance(1)


def test_dashboard_redraws_after_every_step(world: tuple[Simulation, QueueManager, EventLog]) -> None:
    sim, qm, log = world
    dash = lab_widgets.QueueDashboard(qm, sim, log)
    assert "queue depth" in dash.stats_html.value and "success rate" in dash.stats_html.value
    worker = dash.start_worker(2)
    assert worker.name in dash.workers_html.value
    dash.clock.step_buttons["+1 h"].click()
    frame = dash.frame
    assert list(frame.columns[:4]) == ["job_id", "job_type", "queue", "attempt"]
    assert len(frame) == 1 + 2 + 3  # attempts: Flaky(0), Flaky(1), Flaky(5) with 2 retries
    bars = [p for p in dash.timeline_figure.axes[0].patches if p.get_gid()]
    assert len(bars) == len(frame)
    assert dash.timeline_image.value[:4] == b"\x89PNG" and dash.depth_image.value[:4] == b"\x89PNG"
    assert "dead_lettered" in set(dash.frames["depth"].columns)
    assert "1 job(s) in the dead-letter queue" in dash.stats_html.value
    assert "66.7 %" in dash.stats_html.value
    (option,) = dash.dead_letters.options
    assert "ConnectionError: service down" in option[0]
    dash.dead_letters.value = option[1]
    assert dash.requeue() is True
    assert "runs again from attempt 1" in dash.status.value and dash.dead_letters.options == ()
    dash.clock.advance(3600)
    assert len(dash.dead_letters.options) == 1
    assert dash.purge_all() == 1
    dash.stop_workers()
    assert "none running" in dash.workers_html.value
    assert {"frames", "plots", "render", "total"} <= set(dash.timings)


def test_dashboard_buttons_without_a_selection_say_so(
    world: tuple[Simulation, QueueManager, EventLog],
) -> None:
    sim, qm, log = world
    dash = lab_widgets.QueueDashboard(qm, sim, log)
    (requeue,) = [
        b
        for b in dash.body.children[0].children[1].children[1].children[2].children
        if b.description == "requeue"
    ]
    requeue.click()
    assert "requeue failed: ValueError: no dead-lettered job selected" in dash.status.value


def test_dashboard_figure_is_the_overview(world: tuple[Simulation, QueueManager, EventLog]) -> None:
    sim, qm, log = world
    dash = lab_widgets.QueueDashboard(qm, sim, log)
    dash.start_worker(1)
    dash.clock.advance(600)
    assert len(dash.figure().axes) == 5


def test_retry_explorer_plans_and_simulates(caplog: pytest.LogCaptureFixture) -> None:
    explorer = lab_widgets.RetryExplorer(jobs=20)
    explorer.set(strategy="fixed", retry_delay=30.0, max_retries=2, failure_probability=1.0)
    assert explorer.outcome["dead_lettered"] == 20 and explorer.outcome["completed"] == 0
    assert "20</b> reached the dead-letter queue" in explorer.summary.value
    plan = explorer.plan
    assert list(plan["delay"].dropna())[:3] == [0.0, 30.0, 30.0]
    gaps = plan["at"].diff().dropna().dt.total_seconds()
    assert list(gaps)[:2] == [31.0, 31.0]  # each attempt runs 1 s, then waits 30 s
    assert explorer.plan_image.value[:4] == b"\x89PNG"
    explorer.failure_probability.value = 0.0  # a control change redraws on its own
    assert explorer.outcome["completed"] == 20
    explorer.set(strategy="exponential", jitter=True, failure_probability=0.5, seed=3)
    first = dict(explorer.outcome)
    explorer.set(seed=3)
    assert {k: v for k, v in explorer.outcome.items() if k != "real_seconds"} == {
        k: v for k, v in first.items() if k != "real_seconds"
    }
    with pytest.raises(ValueError, match="no control named bogus"):
        explorer.set(bogus=1)
    with caplog.at_level(logging.ERROR, logger="khadem_lab.lab.widgets"):
        explorer.strategy.value = "explicit"  # with jitter on: refused, and said
    assert "jitter applies to the fixed and exponential strategies" in explorer.status.value
    assert caplog.records


def test_lab_puts_the_three_together(world: tuple[Simulation, QueueManager, EventLog]) -> None:
    sim, qm, log = world
    lab = lab_widgets.Lab(sim, qm, log)
    assert lab.tabs.titles == ("Queue", "Retries")
    assert lab.widget.children[0] is lab.clock.widget
    lab.clock.advance(60)
    assert lab.dashboard.clock is lab.clock
