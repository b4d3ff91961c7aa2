"""The lab's plots (khadem_lab.lab.plots) render on Agg with the artists they promise."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from khadem_lab.backoff import Explicit, Exponential, ExponentialJitter, Fixed
from khadem_lab.lab import plots

T0 = pd.Timestamp("2024-01-01 09:00", tz="UTC")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def hand_attempts() -> pd.DataFrame:
    """Job 1 fails twice then completes (waits of 30 s and 60 s); job 2 completes; job 3 runs."""
    rows = [
        ("1", 1, "w.1", 0, 2, "failed", "ConnectionError: x", np.nan),
        ("1", 2, "w.1", 32, 34, "failed", "ConnectionError: x", np.nan),
        ("1", 3, "w.2", 94, 96, "completed", None, np.nan),
        ("2", 1, "w.2", 0, 1, "completed", None, np.nan),
        ("3", 1, "w.2", 100, None, "running", None, np.nan),
    ]
    frame = pd.DataFrame(
        {
            "job_id": [r[0] for r in rows],
            "job_type": ["Flaky", "Flaky", "Flaky", "Quick", "Slow"],
            "queue": "default",
            "attempt": [r[1] for r in rows],
            "worker": [r[2] for r in rows],
            "reserved": [at(r[3]) for r in rows],
            "started": [at(r[3]) for r in rows],
            "ended": pd.Series([at(r[4]) if r[4] is not None else pd.NaT for r in rows]).astype(
                "datetime64[ns, UTC]"
            ),
            "outcome": pd.Categorical([r[5] for r in rows], categories=list(plots.OUTCOME_COLORS)),
            "error": [r[6] for r in rows],
            "wait": [0.0, 0.0, 0.0, 0.0, 0.0],
            "retry_delay": [30.0, 60.0, np.nan, np.nan, np.nan],
        }
    )
    return frame


def hand_depth() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [at(0), at(2), at(34), at(96), at(100)],
            "ready": [1, 0, 0, 0, 0],
            "delayed": [0, 1, 1, 0, 0],
            "in_progress": [2, 0, 0, 0, 1],
            "dead_lettered": [0, 0, 0, 1, 1],
        }
    )


def hand_jobs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "job_id": ["1", "2", "3"],
            "job_type": ["Flaky", "Quick", "Slow"],
            "queue": "default",
            "dispatched": [at(0)] * 3,
            "first_start": [at(0), at(0), at(100)],
            "done": [at(96), at(1), pd.NaT],
            "attempts": [3, 1, 1],
            "final_state": ["completed", "completed", "running"],
            "wait": [0.0, 0.0, 100.0],
            "latency": [96.0, 1.0, np.nan],
        }
    )


def hand_metrics() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [at(0), at(1), at(2), at(34), at(96)],
            "jobs_queued": [3, 3, 3, 3, 3],
            "jobs_completed": [0, 1, 1, 1, 2],
            "jobs_failed": [0, 0, 0, 1, 1],
            "attempts_failed": [0, 0, 1, 2, 2],
            "jobs_retried": [0, 0, 1, 1, 1],
            "jobs_dead_lettered": [0, 0, 0, 1, 1],
            "success_rate": [1.0, 1.0, 1.0, 0.5, 2 / 3],
        }
    )


def hand_events() -> pd.DataFrame:
    kinds = ["dispatched", "started", "completed", "started", "failed", "started", "completed"]
    seconds = [0, 0, 1, 0, 2, 94, 96]
    return pd.DataFrame({"time": [at(s) for s in seconds], "seq": range(len(kinds)), "kind": kinds})


def bars(fig: Figure) -> list[Rectangle]:
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


@pytest.mark.parametrize("by", ["worker", "job"])
def test_timeline_draws_one_bar_per_attempt_coloured_by_outcome(by: str) -> None:
    frame = hand_attempts()
    fig = plots.timeline(frame, by=by)
    fig.canvas.draw()
    drawn = bars(fig)
    assert len(drawn) == len(frame)
    assert {r.get_gid() for r in drawn} == {"1:1", "1:2", "1:3", "2:1", "3:1"}
    by_gid = {r.get_gid(): r for r in drawn}
    assert matplotlib.colors.to_hex(by_gid["1:1"].get_facecolor()) == plots.OUTCOME_COLORS["failed"]
    assert matplotlib.colors.to_hex(by_gid["2:1"].get_facecolor()) == plots.OUTCOME_COLORS["completed"]
    assert by_gid["3:1"].get_hatch() == "//"  # still running
    # the retries of job 1 are linked: two waits, the gap is the retry delay
    (links,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(links.get_segments()) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["completed", "failed", "running", "wait before the retry"]
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows == (["w.1", "w.2"] if by == "worker" else ["job 1 Flaky", "job 2 Quick", "job 3 Slow"])
    if by == "job":  # the waits are written on the gaps
        texts = {t.get_text() for t in fig.axes[0].texts}
        assert {"30 s", "1 min"} <= texts


def lease_ran_out_attempts() -> pd.DataFrame:
    """Attempts of a job (no timeout) running 100 s under a 60 s lease, on a live worker: its lease
    ends at 60 s and another slot runs it again at once, while the first run goes on to 100 s
    (lease_lost), and so on; as ``frames.attempts`` gives them (the wait counts from the lease's
    end, the moment the job was given back)."""
    frame = hand_attempts().iloc[:4].copy()
    frame["job_id"] = "1"
    frame["attempt"] = [1, 2, 3, 4]
    frame["worker"] = ["w.1", "w.2", "w.1", "w.2"]
    frame["started"] = frame["reserved"] = [at(0), at(60), at(120), at(180)]
    frame["ended"] = [at(100), at(160), at(220), at(280)]
    frame["outcome"] = pd.Categorical(["lease_lost"] * 4, categories=list(plots.OUTCOME_COLORS))
    frame["wait"] = [0.0, 0.0, 0.0, 0.0]
    return frame


@pytest.mark.parametrize("by", ["worker", "job"])
def test_timeline_retry_links_run_forward_when_a_lease_ran_out_under_a_live_run(by: str) -> None:
    fig = plots.timeline(lease_ran_out_attempts(), by=by)
    (links,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    segments = links.get_segments()
    assert len(segments) == 3
    # each link starts where the retry's wait began (the lease's end) and ends at its start
    starts = plots._dates([at(60), at(120), at(180)])
    for segment, retry_start in zip(segments, starts, strict=True):
        (x0, _), (x1, _) = segment
        assert x0 <= x1, "a retry link runs backwards"
        assert x0 == x1 == retry_start
    if by == "job":
        assert {t.get_text() for t in fig.axes[0].texts} == {"0 s"}


def test_timeline_of_attempts_without_a_worker() -> None:
    # a bounded log can lose the events that name an attempt's worker
    frame = hand_attempts()
    frame["worker"] = pd.Categorical([None, "w.1", "w.2", "w.2", "w.2"], categories=["", "w.1", "w.2"])
    fig = plots.timeline(frame)
    assert len(bars(fig)) == len(frame)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["(no worker)", "w.1", "w.2"]


def test_timeline_keeps_the_last_attempts_and_draws_into_a_given_axes() -> None:
    fig = plots.new_figure()
    ax = fig.add_subplot()
    assert plots.timeline(hand_attempts(), ax=ax, last=2) is fig
    assert len(bars(fig)) == 2


def test_timeline_time_axis_reads_in_the_frame_time_zone() -> None:
    frame = hand_attempts()
    for column in ("reserved", "started", "ended"):
        frame[column] = frame[column].dt.tz_convert("Asia/Tehran")
    fig = plots.timeline(frame)
    fig.canvas.draw()
    assert "Asia/Tehran" in fig.axes[0].get_xlabel()
    labels = " ".join(t.get_text() for t in fig.axes[0].get_xticklabels())
    assert "12:3" in labels  # 09:00 UTC is 12:30 in Tehran


def test_empty_frames_say_so() -> None:
    fig = plots.timeline(hand_attempts().iloc[0:0])
    assert "nothing to show yet" in fig.axes[0].texts[0].get_text()
    assert plots.depth(hand_depth().iloc[0:0]).axes[0].texts


def test_retry_schedules_one_line_per_strategy_and_seed() -> None:
    strategies = {
        "fixed 30 s": timedelta(seconds=30),
        "exponential": Exponential(base=10, factor=2),
        "jitter": ExponentialJitter(base=10, factor=2),
        "explicit": [timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5)],
        "Fixed": Fixed(5),
    }
    fig = plots.retry_schedules(strategies, max_retries=3, seeds=(0, 1, 2))
    fig.canvas.draw()
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    names = [line.get_label() for line in lines]
    assert names == [
        "fixed 30 s",
        "exponential",
        "jitter (seed 0)",
        "jitter (seed 1)",
        "jitter (seed 2)",
        "explicit",
        "Fixed",
    ]
    assert all(len(line.get_xdata()) == 4 for line in lines)  # max_retries=3: 4 attempts
    assert list(lines[1].get_xdata()) == [0, 10, 30, 70]
    assert list(lines[5].get_xdata()) == [0, 10, 70, 370]
    texts = [t.get_text() for t in ax.texts]
    assert "DLQ after 1 min 30 s" in texts  # fixed 30 s
    assert "DLQ after 6 min 10 s" in texts  # explicit
    assert "max_retries=3 means 4 attempts" in ax.get_title()
    jitter = [list(line.get_xdata()) for line in lines[2:5]]
    assert jitter[0] != jitter[1]  # the seeds differ ...
    again = plots.retry_schedules({"jitter": ExponentialJitter(base=10, factor=2)}, seeds=(0,))
    assert list(again.axes[0].get_lines()[0].get_xdata()) == jitter[0]  # ... and repeat


def test_retry_schedules_names_strategies_given_as_a_list() -> None:
    fig = plots.retry_schedules([30, Exponential(), Explicit([1, 2])], max_retries=1)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        "fixed 30 s",
        "exponential 30 s x2",
        "explicit 1 s, 2 s",
    ]


def test_depth_is_a_stack_of_four_labelled_series() -> None:
    fig = plots.depth(hand_depth())
    fig.canvas.draw()
    stacks = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert [s.get_label() for s in stacks] == [plots.DEPTH_LABELS[c] for c in plots.DEPTH_COLORS]


@pytest.mark.parametrize("kind", ["ecdf", "hist"])
def test_latency_marks_the_percentiles(kind: str) -> None:
    fig = plots.latency(hand_jobs(), kind=kind)
    fig.canvas.draw()
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("p50") for t in texts) == 2  # wait and total
    assert any(t.startswith("p99") for t in texts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("wait") and legend[1].startswith("total")
    if kind == "ecdf":
        assert len(ax.get_lines()) == 2


def test_success_rate_marks_failures_and_the_alert_line() -> None:
    fig = plots.success_rate(hand_metrics())
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("success rate") and labels[1].startswith("90 %")
    assert "an attempt failed (retried or not)" in labels and "a job failed for good" in labels
    failed = [c for c in ax.collections if c.get_label().startswith("an attempt failed")]
    assert len(failed[0].get_offsets()) == 2


def test_throughput_counts_completed_per_interval() -> None:
    fig = plots.throughput(hand_events(), freq="1min")
    ax = fig.axes[0]
    completed, failed = ax.containers
    assert [r.get_height() for r in completed] == [1, 1]  # 09:00 and 09:01
    assert [r.get_height() for r in failed] == [1, 0]


def test_format_duration() -> None:
    assert [plots.format_duration(s) for s in (0, 1.5, 59, 60, 90, 3600, 5400, 86400, 90000)] == [
        "0 s",
        "1.5 s",
        "59 s",
        "1 min",
        "1 min 30 s",
        "1 h",
        "1 h 30 min",
        "1 d",
        "1 d 1 h",
    ]


@pytest.mark.realtime
def test_a_figure_returned_from_a_cell_shows_as_a_picture_in_a_fresh_kernel() -> None:
    # without %matplotlib inline: our figures are made outside pyplot
    from .kernel import Kernel

    with Kernel() as kernel:
        cell = kernel.run("from khadem_lab.lab import plots\nplots.retry_schedules({'fixed': 30})")
        assert cell.error is None, cell.text
        assert cell.mimetypes == [["image/png", "text/plain"]]
