"""``stats``, ``dlq`` and ``jobs`` on a real queue, through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from khadem_lab.cli import exits

from .cli_jobs import FailsUntil, Note
from .cli_support import dispatch, khadem, log_lines, write_config

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
