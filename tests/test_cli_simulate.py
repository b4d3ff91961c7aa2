"""``khadem-lab simulate``: a lab scenario headless, through the real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from khadem_lab.cli import exits
from khadem_lab.cli.simulate import FRAMES, PLOTS, parse_duration

from .cli_support import khadem

pytest.importorskip("matplotlib")
pytest.importorskip("pandas")


def test_simulate_writes_csv_frames_png_plots_and_a_summary_and_the_same_seed_the_same_bytes(
    tmp_path: Path,
) -> None:
    # When the same scenario runs twice with one seed, and once with another
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        done = khadem("simulate", "flaky", "--seed", seed, "--until", "10m", "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        runs[name] = tmp_path / name
    # Then each wrote its frames, its plots and its summary
    for name in FRAMES:
        header = (runs["a"] / f"{name}.csv").read_text().splitlines()[0]
        assert header, name
    for name in PLOTS:
        assert (runs["a"] / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    summary = (runs["a"] / "summary.txt").read_text()
    assert summary.startswith("scenario flaky --seed 3 --until 10m\n")
    assert "virtual time 2024-01-01T09:00:00+00:00 to 2024-01-01T09:10:00+00:00" in summary
    # and the same seed wrote the same CSV bytes; another seed, other jobs
    for name in FRAMES:
        assert (runs["a"] / f"{name}.csv").read_bytes() == (runs["b"] / f"{name}.csv").read_bytes(), name
    assert (runs["a"] / "events.csv").read_bytes() != (runs["c"] / "events.csv").read_bytes()
    assert (runs["a"] / "jobs.csv").read_text().splitlines()[0].startswith("job_id,job_type,queue,dispatched")


def test_simulate_refuses_an_unknown_scenario_and_a_bad_duration(tmp_path: Path) -> None:
    unknown = khadem("simulate", "nosuch", "--out", str(tmp_path))
    assert unknown.returncode == exits.USAGE
    assert "unknown scenario 'nosuch': built-in ones are steady, flaky, outage, crash" in unknown.stderr
    bad = khadem("simulate", "steady", "--until", "soon", "--out", str(tmp_path))
    assert bad.returncode == exits.USAGE and "--until 'soon' is not a duration" in bad.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2h", 7200), ("45", 45), ("0.5m", 30)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
