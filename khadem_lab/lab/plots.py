"""Pictures of a run on the virtual clock (matplotlib).

Every function takes the frames of :mod:`khadem_lab.lab.frames` (or an ``EventLog`` / events,
turned into frames here), draws into ``ax`` if given (else into a new figure) and returns the
:class:`~matplotlib.figure.Figure`. Figures are built without pyplot (no global state, nothing
shown twice in a notebook: return the figure from a cell and Jupyter shows it once).

One look throughout: :data:`OUTCOME_COLORS` colours an attempt by how it ended, the x axis is
virtual time with concise date labels that read well from seconds to days, and titles and legends
say what a mark means.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator
from matplotlib.transforms import offset_copy

from ..backoff import Explicit, Exponential, ExponentialJitter, Fixed, RetryStrategy, delay_for
from ..clock import to_seconds

__all__ = [
    "DEPTH_COLORS",
    "OUTCOME_COLORS",
    "depth",
    "format_duration",
    "latency",
    "new_figure",
    "outcomes",
    "overview",
    "retry_schedules",
    "success_rate",
    "throughput",
    "timeline",
]

#: One colour per way an attempt can end (the ``outcome`` column of ``frames.attempts``).
OUTCOME_COLORS: dict[str, str] = {
    "completed": "#2e9e44",  # green
    "failed": "#d62728",  # red
    "timed_out": "#ff7f0e",  # orange
    "stalled": "#9467bd",  # purple
    "lease_expired": "#8c564b",  # brown
    "lease_lost": "#7f7f7f",  # grey
    "running": "#1f77b4",  # blue
}

#: Where the jobs are, for the stacked depth plot (the columns of ``frames.depth``).
DEPTH_COLORS: dict[str, str] = {
    "ready": "#1f77b4",
    "delayed": "#aec7e8",
    "in_progress": "#2e9e44",
    "dead_lettered": "#d62728",
}

DEPTH_LABELS = {
    "ready": "ready: due, no worker yet",
    "delayed": "delayed: later, or retry wait",
    "in_progress": "in progress: on a worker",
    "dead_lettered": "dead-lettered",
}

RETRY_LINK_COLOR = "#555555"
DEAD_LETTER_COLOR = "#000000"

Source = Any  # a DataFrame of lab.frames, an EventLog or an iterable of QueueEvent


# ===================================================================================== helpers
def show_figures_in_ipython() -> bool:
    """In an IPython kernel, make a :class:`Figure` returned from a cell show as a PNG, with or
    without ``%matplotlib inline`` (our figures are made outside pyplot, so the inline backend's
    own display hook never sees them). Called at import; True if a kernel was found."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    from IPython.core.pylabtools import print_figure

    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))  # type: ignore[no-untyped-call]
    return True


def new_figure(width: float = 9.0, height: float = 4.0, dpi: int = 100) -> Figure:
    """A figure with an Agg canvas, outside pyplot (render it with ``fig.savefig`` or show it)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _axes(ax: Axes | None, width: float = 9.0, height: float = 4.0) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def _frames() -> Any:
    # late, and by name: the lab's data layer (lab/frames.py) loads when a plot needs it
    return importlib.import_module(".frames", __package__)


def _frame(source: Source, builder: str, tz: tzinfo | None = None) -> Any:
    """``source`` itself if it is a DataFrame, else ``frames.<builder>(source, tz=tz)``."""
    if isinstance(source, pd.DataFrame):
        return source
    return getattr(_frames(), builder)(source, tz=tz)


def _naive_utc(values: Any) -> Any:
    series = pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, utc=True)
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


def _dates(values: Any) -> Any:
    """Aware (or naive UTC) timestamps as matplotlib date numbers (NaT: nan)."""
    series = _naive_utc(values)
    return mdates.date2num(series.to_numpy(dtype="datetime64[ns]"))  # type: ignore[no-untyped-call]


def _tz_of(values: Any) -> Any:
    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series) and series.dt.tz is not None:
        return series.dt.tz
    return "UTC"


def _time_axis(ax: Axes, tz: Any) -> None:
    """Virtual time on x: concise labels (seconds to days) in the run's time zone."""
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    name = str(tz)
    ax.set_xlabel(f"virtual time ({name})")


def format_duration(seconds: float) -> str:
    """``42 s``, ``2 min 30 s``, ``1 h 5 min``, ``3 d 4 h``: a duration a reader takes in at once."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    seconds = round(float(seconds), 3)  # float noise from date arithmetic: 59.9999... is 1 min
    if abs(seconds) < 59.5:
        return f"{seconds:.3g} s" if seconds != int(seconds) else f"{int(seconds)} s"
    if abs(seconds) < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s} s" if s else f"{m} min"
    if abs(seconds) < 86400:
        h, rest = divmod(round(seconds), 3600)
        m = rest // 60
        return f"{h} h {m} min" if m else f"{h} h"
    d, rest = divmod(round(seconds), 86400)
    h = rest // 3600
    return f"{d} d {h} h" if h else f"{d} d"


_DURATION_TICKS = FuncFormatter(lambda x, _pos: format_duration(x))
_TICK_STEPS = [
    s * unit
    for unit, steps in ((1, (1, 2, 5, 10, 15, 30)), (60, (1, 2, 5, 10, 15, 30)), (3600, (1, 2, 3, 6, 12)))
    for s in steps
] + [86400 * d for d in (1, 2, 7, 14, 30, 90, 365)]


def duration_locator(span: float, most: int = 7) -> MultipleLocator:
    """Ticks at round durations (10 s, 5 min, 6 h, 1 d, ...), at most ``most`` over ``span`` s."""
    step = next((s for s in _TICK_STEPS if span / s <= most), _TICK_STEPS[-1])
    return MultipleLocator(step)


def _empty(ax: Axes, fig: Figure, title: str, what: str) -> Figure:
    ax.set_title(title)
    ax.text(
        0.5,
        0.5,
        f"nothing to show yet: {what}",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="#777777",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


# ===================================================================================== timeline
def timeline(
    source: Source,
    ax: Axes | None = None,
    by: str = "worker",
    *,
    tz: tzinfo | None = None,
    last: int | None = None,
    now: Any = None,
) -> Figure:
    """Attempts as horizontal bars over virtual time, one row per worker (``by="worker"``) or per
    job (``by="job"``), coloured by outcome (:data:`OUTCOME_COLORS`).

    Exactly one bar (a ``Rectangle`` in ``ax.patches``, ``gid`` ``"<job_id>:<attempt>"``) per
    attempt. The attempts of one job are linked by a thin dotted line from one attempt's end to the
    next one's start: the gap is the retry delay (labelled when the rows are jobs). If the attempt
    outlived its lease (the job was taken again while it ran), the line starts where the next
    attempt's ``wait`` began, never after that attempt's start. A running
    attempt (no end yet) reaches ``now`` (default: the latest time in the frame), hatched.
    ``last``: only the ``last`` attempts by start time (keeps a long run readable and cheap).
    ``source``: ``frames.attempts`` or events.
    """
    if by not in ("worker", "job"):
        raise ValueError(f"by must be 'worker' or 'job', got {by!r}")
    frame = _frame(source, "attempts", tz)
    fig, ax = _axes(ax, 10, 4.5)
    title = "Attempts over virtual time, one row per " + ("worker" if by == "worker" else "job")
    if frame.empty:
        return _empty(ax, fig, title, "no job has been reserved")
    frame = frame.copy()
    start_col = frame["started"].where(frame["started"].notna(), frame["reserved"])
    frame["_start"] = _dates(start_col)
    frame["_end"] = _dates(frame["ended"])
    if last is not None and len(frame) > last:
        frame = frame.sort_values("_start", kind="stable").iloc[-last:]
    if now is None:
        now_num = float(np.nanmax(np.concatenate([frame["_start"].to_numpy(), frame["_end"].to_numpy()])))
    else:
        now_num = float(_dates([pd.Timestamp(now)])[0])
    running = frame["_end"].isna()
    frame.loc[running, "_end"] = now_num
    span = max(float(frame["_end"].max() - frame["_start"].min()), 1 / 86400)
    width = np.maximum((frame["_end"] - frame["_start"]).to_numpy(dtype=float), span * 0.002)

    if by == "worker":
        keys = frame["worker"].astype("str").fillna("(no worker)")
        rows = sorted(keys.unique())
        row_labels = rows
    else:
        keys = frame["job_id"].astype(str)
        order = frame.sort_values("_start", kind="stable").drop_duplicates("job_id")
        rows = list(order["job_id"].astype(str))
        types = dict(zip(order["job_id"].astype(str), order["job_type"].astype(str), strict=True))
        row_labels = [f"job {j} {types[j]}" for j in rows]
    index = {key: i for i, key in enumerate(rows)}
    y = keys.map(index).to_numpy(dtype=float)
    outcomes = frame["outcome"].astype(str)
    colors = [OUTCOME_COLORS.get(o, "#bbbbbb") for o in outcomes]
    bars = ax.barh(
        y,
        width,
        left=frame["_start"].to_numpy(dtype=float),
        height=0.6,
        color=colors,
        edgecolor="white",
        linewidth=0.5,
    )
    for rect, job_id, attempt, is_running in zip(
        bars.patches, frame["job_id"], frame["attempt"], running, strict=True
    ):
        rect.set_gid(f"{job_id}:{attempt}")
        if is_running:
            rect.set_hatch("//")

    # retries of one job: end of attempt k -> start of attempt k+1
    frame["_y"] = y
    segments: list[list[tuple[float, float]]] = []
    waits: list[tuple[float, float, float]] = []
    # The wait before a retry starts where the previous attempt gave the job back: its end, or
    # (a lease that ran out under a live run, which goes on after it) the retry's start - wait.
    frame["_wait"] = frame["wait"] / 86400 if "wait" in frame else np.nan
    for _, group in frame.sort_values(["job_id", "attempt"], kind="stable").groupby("job_id", sort=False):
        starts, ends, ys = group["_start"].to_numpy(), group["_end"].to_numpy(), group["_y"].to_numpy()
        given_back = np.fmin(ends[:-1], starts[1:] - group["_wait"].to_numpy()[1:])
        given_back = np.minimum(given_back, starts[1:])
        for k in range(len(group) - 1):
            begin, end = given_back[k], starts[k + 1]
            segments.append([(begin, ys[k]), (end, ys[k + 1])])
            waits.append(((begin + end) / 2, ys[k], (end - begin) * 86400))
    if segments:
        ax.add_collection(
            LineCollection(
                segments,
                colors=RETRY_LINK_COLOR,
                linewidths=0.9,
                linestyles=":",
                label="wait before the retry",
                zorder=1,
            )
        )
        if by == "job" and len(waits) <= 40:
            for x, yy, seconds in waits:
                ax.text(
                    x,
                    yy - 0.04,
                    format_duration(seconds),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color=RETRY_LINK_COLOR,
                )

    ax.set_yticks(range(len(rows)), row_labels)
    ax.set_ylim(len(rows) - 0.4, -0.7)
    ax.set_xlim(frame["_start"].min() - span * 0.02, frame["_end"].max() + span * 0.02)
    _time_axis(ax, _tz_of(start_col))
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    present = [o for o in OUTCOME_COLORS if o in set(outcomes)]
    handles: list[Any] = [Patch(color=OUTCOME_COLORS[o], label=o.replace("_", " ")) for o in present]
    if segments:
        handles.append(Line2D([], [], color=RETRY_LINK_COLOR, linestyle=":", label="wait before the retry"))
    ax.legend(
        handles=handles,
        title="attempt ended",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title_fontsize=8,
        frameon=False,
    )
    shown = "" if last is None or len(frame) < last else f" (the last {last})"
    ax.set_title(f"{title}{shown}: one bar per attempt, coloured by how it ended", fontsize=10)
    return fig


# ============================================================================= retry schedules
StrategyLike = RetryStrategy | timedelta | float | int | Sequence[timedelta | float]


def _as_strategy(value: StrategyLike) -> RetryStrategy | timedelta | float:
    if isinstance(value, RetryStrategy | timedelta | float | int) and not isinstance(value, bool):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return Explicit(list(value))
    raise TypeError(
        "a retry strategy is a khadem_lab.backoff strategy, a timedelta, seconds or a list of "
        f"them; got {value!r}"
    )


def strategy_name(strategy: Any) -> str:
    """A short readable name: ``fixed 30 s``, ``exponential 30 s x2``, ``explicit 10 s, 1 min``."""
    if isinstance(strategy, timedelta | float | int) and not isinstance(strategy, bool):
        return f"fixed {format_duration(to_seconds(strategy))}"
    if isinstance(strategy, Fixed):
        return f"fixed {format_duration(strategy.seconds)}"
    if isinstance(strategy, ExponentialJitter):
        return f"exponential {format_duration(to_seconds(strategy.base))} x{strategy.factor:g} + jitter"
    if isinstance(strategy, Exponential):
        return f"exponential {format_duration(to_seconds(strategy.base))} x{strategy.factor:g}"
    if isinstance(strategy, Explicit):
        return "explicit " + ", ".join(format_duration(to_seconds(d)) for d in strategy.delays)
    return type(strategy).__name__


def attempt_offsets(
    strategy: RetryStrategy | timedelta | float, attempts: int, duration: float = 0.0
) -> list[float]:
    """Seconds from the first attempt's start to each attempt's start (``attempts`` of them), each
    attempt running ``duration`` seconds before it fails."""
    times = [0.0]
    for k in range(1, attempts):
        times.append(times[-1] + duration + delay_for(strategy, k))
    return times


def retry_schedules(
    strategies: Mapping[str, StrategyLike] | Sequence[StrategyLike],
    max_retries: int = 3,
    seeds: Sequence[int] = (0, 1, 2),
    ax: Axes | None = None,
    *,
    duration: float = 0.0,
    beyond: int = 2,
) -> Figure:
    """Several retry strategies side by side: when each attempt of an always-failing job runs.

    One line of markers per strategy (per seed in ``seeds`` for a jittered one); the numbers are
    the attempt numbers. After ``max_retries`` retries (``max_retries + 1`` attempts) the job goes
    to the dead-letter queue: a black X, annotated with the total time to get there. Hollow grey
    markers show the ``beyond`` retries that a higher ``max_retries`` would add (the cut-off).
    ``duration``: how long each attempt runs before it fails (seconds).
    """
    if isinstance(strategies, Mapping):
        named = [(str(k), _as_strategy(v)) for k, v in strategies.items()]
    else:
        named = [(strategy_name(_as_strategy(v)), _as_strategy(v)) for v in strategies]
    series: list[tuple[str, RetryStrategy | timedelta | float]] = []
    for name, strategy in named:
        if isinstance(strategy, ExponentialJitter):
            series.extend((f"{name} (seed {s})", dataclasses.replace(strategy, seed=s)) for s in seeds)
        else:
            series.append((name, strategy))
    attempts = max_retries + 1
    fig, ax = _axes(ax, 9, 0.9 + 0.45 * max(len(series), 2))
    dlq_x: list[float] = []
    dlq_y: list[float] = []
    ghost_x: list[float] = []
    ghost_y: list[float] = []
    cmap = [f"C{i % 10}" for i in range(len(series))]
    schedules = [attempt_offsets(strategy, attempts + beyond, duration) for _, strategy in series]
    spread = max(1.0, *(times[attempts - 1] + duration for times in schedules))
    for row, (name, _) in enumerate(series):
        times = schedules[row]
        shown, extra = times[:attempts], times[attempts:]
        ax.plot(
            shown, [row] * len(shown), marker="o", markersize=6, linewidth=1.2, color=cmap[row], label=name
        )
        labelled = -math.inf
        for k, t in enumerate(shown, start=1):
            if t - labelled >= spread * 0.025:  # number the attempts that do not crowd each other
                labelled = t
                ax.annotate(
                    str(k),
                    (t, row),
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color=cmap[row],
                )
        dead_at = shown[-1] + duration
        dlq_x.append(dead_at)
        dlq_y.append(row)
        ax.annotate(  # in a column right of the plot
            f"DLQ after {format_duration(dead_at)}",
            (1.01, row),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            va="center",
        )
        ghost_x.extend(extra)
        ghost_y.extend([row] * len(extra))
    ax.scatter(  # just right of the attempt that failed for good, which it would hide
        dlq_x,
        dlq_y,
        transform=offset_copy(ax.transData, fig=fig, x=9, units="points"),
        marker="X",
        s=70,
        color=DEAD_LETTER_COLOR,
        zorder=3,
        label="dead-letter queue (retries used up)",
    )
    if ghost_x:
        ax.scatter(
            ghost_x,
            ghost_y,
            marker="o",
            s=28,
            facecolors="none",
            edgecolors="#aaaaaa",
            zorder=2,
            label=f"would retry with max_retries > {max_retries}",
        )
    ax.set_yticks(range(len(series)), [name for name, _ in series], fontsize=8)
    ax.set_ylim(len(series) - 0.4, -0.7)
    ax.xaxis.set_major_formatter(_DURATION_TICKS)
    ax.set_xlim(-spread * 0.03, spread * 1.2)  # the later would-be retries may fall off
    ax.xaxis.set_major_locator(duration_locator(spread * 1.2))
    ax.set_xlabel(
        "time since the first attempt"
        + (f" (each attempt runs {format_duration(duration)})" if duration else "")
    )
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_title(
        f"When the attempts run: max_retries={max_retries} means {attempts} attempts, then the "
        "dead-letter queue",
        fontsize=10,
    )
    handles = [
        Line2D([], [], marker="o", color="#444444", label="an attempt (number above)"),
        Line2D([], [], marker="X", linestyle="", color=DEAD_LETTER_COLOR, label="dead-letter queue"),
    ]
    if ghost_x:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                markerfacecolor="none",
                markeredgecolor="#aaaaaa",
                label="would run with more retries",
            )
        )
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False
    )
    return fig


# ======================================================================================= depth
def depth(source: Source, ax: Axes | None = None, *, tz: tzinfo | None = None) -> Figure:
    """Where the jobs are over time, stacked: ready, delayed, in progress, dead-lettered (steps:
    a count holds until the next event). One ``PolyCollection`` per series, labelled.
    ``source``: ``frames.depth`` or events."""
    frame = _frame(source, "depth", tz)
    fig, ax = _axes(ax, 9, 3.5)
    title = "Queue depth: where the jobs are"
    if frame.empty:
        return _empty(ax, fig, title, "no job dispatched")
    x = _dates(frame["time"])
    columns = [c for c in DEPTH_COLORS if c in frame.columns]
    ys = [frame[c].to_numpy(dtype=float) for c in columns]
    # the last state holds on: draw it a little past the last event (at least a second)
    x = np.append(x, x[-1] + max((x[-1] - x[0]) * 0.03, 1 / 86400))
    ys = [np.append(v, v[-1]) for v in ys]
    ax.stackplot(
        x,
        *ys,
        labels=[DEPTH_LABELS[c] for c in columns],
        colors=[DEPTH_COLORS[c] for c in columns],
        step="post",
        alpha=0.9,
    )
    total = np.sum(ys, axis=0)
    ax.set_ylim(0, max(1.0, float(total.max()) * 1.15))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("jobs")
    ax.set_xlim(x[0], x[-1])
    _time_axis(ax, _tz_of(frame["time"]))
    ax.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.8, title="stacked", title_fontsize=7)
    ax.set_title(f"{title}: the top edge is every job not yet completed", fontsize=10)
    return fig


# ===================================================================================== latency
LATENCY_SERIES = {
    "wait": ("wait: dispatch to first start", "#1f77b4"),
    "latency": ("total: dispatch to done", "#ff7f0e"),
}
PERCENTILES = (50, 90, 99)


def latency(
    source: Source, ax: Axes | None = None, kind: str = "ecdf", *, tz: tzinfo | None = None
) -> Figure:
    """How long jobs wait and how long they take in all, with p50/p90/p99 marked.

    ``kind="ecdf"``: one step line per series (the share of jobs done within x); ``"hist"``: one
    histogram per series. ``source``: ``frames.jobs`` or events."""
    if kind not in ("ecdf", "hist"):
        raise ValueError(f"kind must be 'ecdf' or 'hist', got {kind!r}")
    frame = _frame(source, "jobs", tz)
    fig, ax = _axes(ax, 8, 3.5)
    title = "Job latency"
    values = {c: frame[c].dropna().to_numpy(dtype=float) for c in LATENCY_SERIES if c in frame.columns}
    values = {c: v for c, v in values.items() if len(v)}
    if not values:
        return _empty(ax, fig, title, "no job has started")
    if kind == "ecdf":
        for column, data in values.items():
            label, color = LATENCY_SERIES[column]
            ax.ecdf(data, label=f"{label} ({len(data)} jobs)", color=color)
            qs = np.percentile(data, PERCENTILES)
            ax.scatter(qs, [p / 100 for p in PERCENTILES], color=color, s=22, zorder=3)
            for p, q in zip(PERCENTILES, qs, strict=True):
                ax.annotate(
                    f"p{p} {format_duration(q)}",
                    (q, p / 100),
                    xytext=(5, -10),
                    textcoords="offset points",
                    fontsize=7,
                    color=color,
                )
        ax.set_ylabel("share of jobs")
        ax.set_ylim(0, 1.05)
    else:
        data = list(values.values())
        labels = [LATENCY_SERIES[c][0] for c in values]
        colors = [LATENCY_SERIES[c][1] for c in values]
        ax.hist(
            data,
            bins=min(30, max(5, int(math.sqrt(max(len(d) for d in data))))),
            label=labels,
            color=colors,
            alpha=0.85,
        )
        top = ax.get_ylim()[1]
        for column, d in values.items():
            qs = np.percentile(d, PERCENTILES)
            color = LATENCY_SERIES[column][1]
            ax.vlines(qs, 0, top, colors=color, linestyles="--", linewidth=0.9)
            for p, q in zip(PERCENTILES, qs, strict=True):
                ax.annotate(
                    f"p{p}", (q, top), xytext=(2, -10), textcoords="offset points", fontsize=7, color=color
                )
        ax.set_ylabel("jobs")
    ax.xaxis.set_major_formatter(_DURATION_TICKS)
    ax.xaxis.set_major_locator(duration_locator(max(1.0, *(float(v.max()) for v in values.values())), 5))
    ax.set_xlabel("virtual time taken")
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right" if kind == "ecdf" else "upper right", fontsize=8, frameon=False)
    ax.set_title(f"{title} (retries included), p50/p90/p99 marked", fontsize=10)
    return fig


# ================================================================================ success rate
ALERT_SUCCESS_RATE = 0.9  # the spec's "What to Monitor": below 90 % indicates issues


def success_rate(source: Source, ax: Axes | None = None, *, tz: tzinfo | None = None) -> Figure:
    """The success rate (completed / finished for good) over time, with each failed attempt (red
    x) and each job that failed for good (black X) marked, and the spec's 90 % alert line.
    ``source``: ``frames.metrics`` or events."""
    frame = _frame(source, "metrics", tz)
    fig, ax = _axes(ax, 8, 3.2)
    title = "Success rate"
    if frame.empty:
        return _empty(ax, fig, title, "no event")
    x = _dates(frame["time"])
    rate = frame["success_rate"].to_numpy(dtype=float) * 100
    held = max((x[-1] - x[0]) * 0.03, 1 / 86400)  # the last rate holds on past the last event
    ax.step(
        np.append(x, x[-1] + held),
        np.append(rate, rate[-1]),
        where="post",
        color=OUTCOME_COLORS["completed"],
        linewidth=1.6,
        label="success rate: completed / finished",
    )
    ax.axhline(
        ALERT_SUCCESS_RATE * 100,
        color="#999999",
        linestyle="--",
        linewidth=0.9,
        label="90 %: the spec's alert line",
    )
    for column, marker, color, size, label in (
        ("attempts_failed", "x", OUTCOME_COLORS["failed"], 30, "an attempt failed (retried or not)"),
        ("jobs_failed", "X", DEAD_LETTER_COLOR, 60, "a job failed for good"),
    ):
        if column in frame.columns:
            grew = frame[column].diff().fillna(frame[column]).to_numpy(dtype=float) > 0
            if grew.any():
                ax.scatter(x[grew], rate[grew], marker=marker, color=color, s=size, zorder=3, label=label)
    ax.set_ylim(min(80.0, float(np.nanmin(rate)) - 5), 102)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f} %"))
    ax.set_xlim(x[0], x[-1] + held)
    _time_axis(ax, _tz_of(frame["time"]))
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=7, frameon=False)
    ax.set_title(f"{title} over time, failures marked", fontsize=10)
    return fig


# ================================================================================== throughput
def throughput(
    source: Source, ax: Axes | None = None, freq: str = "1min", *, tz: tzinfo | None = None
) -> Figure:
    """Jobs completed per ``freq`` interval (green bars) with the failed attempts stacked on top
    (red). ``source``: ``frames.events`` (or events)."""
    frame = _frame(source, "events", tz)
    fig, ax = _axes(ax, 8, 3.2)
    step = pd.Timedelta(freq)
    title = f"Throughput per {format_duration(step.total_seconds())}"
    if frame.empty or "kind" not in frame.columns:
        return _empty(ax, fig, title, "no event")
    kinds = frame["kind"].astype(str)
    times = pd.Series(pd.to_datetime(frame["time"], utc=True).to_numpy(), index=frame.index)
    start = times.min().floor(step)
    end = times.max().floor(step)
    bins = pd.date_range(start, end, freq=step)

    def count(kind: str) -> Any:
        picked = times[kinds == kind]
        return picked.dt.floor(step).value_counts().reindex(bins, fill_value=0).to_numpy(dtype=float)

    completed, failed = count("completed"), count("failed")
    x = _dates(pd.Series(bins))
    width = step.total_seconds() / 86400 * 0.9
    ax.bar(x, completed, width=width, align="edge", color=OUTCOME_COLORS["completed"], label="jobs completed")
    ax.bar(
        x,
        failed,
        width=width,
        align="edge",
        bottom=completed,
        color=OUTCOME_COLORS["failed"],
        label="attempts failed",
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"per {format_duration(step.total_seconds())}")
    ax.set_xlim(x[0], x[-1] + step.total_seconds() / 86400)
    _time_axis(ax, _tz_of(frame["time"]))
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_title(f"{title}: completed, failed attempts on top", fontsize=10)
    return fig


# ==================================================================================== overview
def overview(
    source: Source,
    fig: Figure | None = None,
    *,
    tz: tzinfo | None = None,
    last: int | None = 200,
    freq: str = "1min",
) -> Figure:
    """The dashboard's plots in one figure: timeline on top, then depth and throughput, latency
    and success rate. ``source``: events (an ``EventLog``)."""
    f = _frames()
    # read the log's columns once for the five frames
    events = source if isinstance(source, pd.DataFrame) else f._columns(source)
    if fig is None:
        fig = new_figure(12, 10)
    else:
        fig.clear()
    grid = fig.add_gridspec(3, 2, height_ratios=[1.3, 1, 1])
    timeline(f.attempts(events, tz=tz), fig.add_subplot(grid[0, :]), last=last)
    depth(f.depth(events, tz=tz), fig.add_subplot(grid[1, 0]))
    throughput(f.events(events, tz=tz), fig.add_subplot(grid[1, 1]), freq=freq)
    latency(f.jobs(events, tz=tz), fig.add_subplot(grid[2, 0]))
    success_rate(f.metrics(events, tz=tz), fig.add_subplot(grid[2, 1]))
    return fig


# ==================================================================================== outcomes
def outcomes(source: Source, ax: Axes | None = None, *, tz: tzinfo | None = None) -> Figure:
    """Each job as a dot: how long it took in all (x) and how many attempts it used (y), coloured
    by how it ended (completed green, dead-lettered black). ``source``: ``frames.jobs`` or events."""
    frame = _frame(source, "jobs", tz)
    fig, ax = _axes(ax, 8, 3.2)
    title = "Jobs: attempts used and time taken"
    done = frame[frame["latency"].notna()] if not frame.empty else frame
    if done.empty:
        return _empty(ax, fig, title, "no job has finished")
    states = done["final_state"].astype(str)
    colors = {"completed": OUTCOME_COLORS["completed"], "dead_lettered": DEAD_LETTER_COLOR}
    for state, color in colors.items():
        picked = done[states == state]
        if len(picked):
            ax.scatter(
                picked["latency"].to_numpy(dtype=float),
                picked["attempts"].to_numpy(dtype=float),
                s=24,
                alpha=0.7,
                color=color,
                marker="o" if state == "completed" else "X",
                label=f"{state.replace('_', '-')}: {len(picked)}",
            )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("attempts")
    ax.xaxis.set_major_formatter(_DURATION_TICKS)
    ax.xaxis.set_major_locator(duration_locator(max(1.0, float(done["latency"].max())), 5))
    ax.set_xlabel("virtual time from dispatch to done")
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(f"{title} ({len(done)} of {len(frame)} finished)", fontsize=10)
    return fig


show_figures_in_ipython()
