"""``stats``, ``dlq`` and ``jobs`` on a real queue, through the real command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from khadem_lab.cli import exits

from .cli_jobs import FailsUntil, Note
from .cli_support import ROOT, dispatch, env, khadem, log_lines, start, stats, wait_until, write_config

pytestmark = pytest.mark.realtime


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_dlq_retry_brings_a_dead_job_back_and_a_worker_completes_it(kind: str, tmp_path: Path) -> None:
    # Given a job that failed for good (its service was down) and sits in the dead-letter queue
    config = write_config(tmp_path, kind)
    log, fixed = tmp_path / "jobs.log", tmp_path / "fixed"
    [job_id] = dispatch(config, [FailsUntil("charge", str(log), str(fixed))])
    assert khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst").returncode == 0
    listed = khadem("dlq", str(config), "list", "--json")
    [dead] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (dead["id"], dead["type"], dead["attempts"]) == (job_id, "FailsUntil", 1)
    assert dead["error"] == "ConnectionError: charge: the service is down"
    shown = khadem("dlq", str(config), "show", job_id)
    assert "error:      ConnectionError: charge: the service is down" in shown.stdout
    assert '"name": "charge"' in shown.stdout
    # When the service is back and the job is retried from the command line
    fixed.touch()
    retried = khadem("dlq", str(config), "retry", job_id)
    assert retried.returncode == 0 and f"requeued 1 job(s): {job_id}" in retried.stdout
    # Then a worker completes it and the dead-letter queue is empty
    assert khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst").returncode == 0
    assert [(what, name) for what, name, _ in log_lines(log)] == [("done", "charge")]
    assert khadem("dlq", str(config), "list", "--json").stdout == ""
    stats = json.loads(khadem("stats", str(config), "--json").stdout)
    assert (stats["queue_depth"], stats["dlq"]["total_jobs"]) == (0, 0)


def test_dlq_errors_name_the_id_and_purge_wants_yes(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    dispatch(config, [FailsUntil("x", str(tmp_path / "log"), str(tmp_path / "never"))])
    khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst")
    missing = khadem("dlq", str(config), "retry", "1", "404")
    assert missing.returncode == exits.NOT_FOUND
    assert "no dead-lettered job with id '404'; nothing was requeued" in missing.stderr
    refused = khadem("dlq", str(config), "purge", stdin="")
    assert refused.returncode == exits.USAGE and "add --yes" in refused.stderr
    purged = khadem("dlq", str(config), "purge", "--yes")
    assert purged.returncode == 0 and "purged 1 job(s)" in purged.stdout


def test_stats_prints_the_counts_as_a_table(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file")
    dispatch(config, [Note("a", str(tmp_path / "log")), Note("b", str(tmp_path / "log"))])
    done = khadem("stats", str(config))
    assert done.returncode == 0
    rows = dict(line.split(None, 1) for line in done.stdout.splitlines()[1:])
    assert (rows["queue_depth"], rows["ready_jobs"], rows["dlq.total_jobs"]) == ("2", "2", "0")


@pytest.mark.parametrize("kind", ["file", "sqlite", "redis"])
def test_jobs_lists_by_state_with_the_lease_holder_shows_and_cancels(kind: str, tmp_path: Path) -> None:
    # Given a worker holding one job, one job waiting behind it and one delayed by an hour
    config = write_config(tmp_path, kind, lease_time=600)
    log, go, err = tmp_path / "jobs.log", tmp_path / "go", tmp_path / "w.log"
    held, waiting = dispatch(config, [Note("held", str(log), wait_for=str(go)), Note("waiting", str(log))])
    [later] = dispatch(config, [Note("later", str(log))], delay=3600)
    worker = start("work", str(config), "--jobs", "tests.cli_jobs", "--name", "w-cli", stderr=err)
    try:
        wait_until(lambda: ("start", "held", worker.pid) in log_lines(log), "the worker to start a job")
        # When the jobs are listed
        listed = khadem("jobs", str(config), "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        # Then each is there in its state, the reserved one with its holder and lease end
        assert [(r["id"], r["state"]) for r in rows] == [
            (waiting, "ready"),
            (later, "delayed"),
            (held, "reserved"),
        ]
        assert rows[2]["reserved_by"] == "w-cli" and rows[2]["reserved_until"] > rows[2]["available_at"]
        table = khadem("jobs", str(config), "list", "--state", "reserved").stdout
        assert "lease holder" in table and "w-cli" in table and "1 job(s)" in table
        shown = khadem("jobs", str(config), "show", later)
        assert "state:          pending" in shown.stdout and '"name": "later"' in shown.stdout
        # A running job cannot be cancelled; a waiting one can, and then no worker runs it
        running = khadem("jobs", str(config), "cancel", held)
        assert running.returncode == exits.FAILED and "w-cli holds it until" in running.stderr
        cancelled = khadem("jobs", str(config), "cancel", later)
        assert cancelled.returncode == 0 and f"cancelled job {later} (Note" in cancelled.stdout
        assert khadem("jobs", str(config), "show", later).returncode == exits.NOT_FOUND
        assert stats(config)["delayed_jobs"] == 0
    finally:
        go.touch()
        worker.terminate()
        worker.wait(timeout=120)


def test_stats_watch_refreshes_until_interrupted_and_ends_with_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    dispatch(config, [Note("a", str(tmp_path / "log"))])
    out = tmp_path / "watch.out"
    with out.open("wb") as stdout:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "khadem_lab", "stats", str(config), "--watch", "0.05"],
            cwd=ROOT,
            env=env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    try:
        wait_until(lambda: out.read_text().count("queue_depth       1") >= 2, "two refreshes")
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=120) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
