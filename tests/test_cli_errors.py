"""The command's errors: one clear line on stderr and a documented exit code; ``--verbose`` adds
the traceback. Each runs the real command in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from khadem_lab.cli import exits

from .cli_support import khadem, write_config

pytestmark = pytest.mark.realtime


def error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_bad_config_key_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "queue.json"
    config.write_text(
        json.dumps({"queue": {"default": "q", "drivers": {"q": {"driver": "sqlite", "max_retries": -1}}}})
    )
    done = khadem("work", str(config), "--jobs", "tests.cli_jobs")
    assert done.returncode == exits.USAGE
    assert "invalid queue config: queue.drivers.q.max_retries = -1; expected an integer >= 0" in error_line(
        done.stderr
    )


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    done = khadem("stats", str(tmp_path / "nope.yaml"))
    assert done.returncode == exits.USAGE
    assert "nope.yaml" in error_line(done.stderr)


def test_an_unknown_driver_type_lists_the_known_ones_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "queue.yaml"
    config.write_text("queue:\n  default: q\n  drivers:\n    q: {driver: mongodb}\n")
    done = khadem("stats", str(config))
    assert done.returncode == exits.USAGE
    line = error_line(done.stderr)
    assert "unknown queue driver 'mongodb'" in line and "'sqlite'" in line


def test_an_unknown_driver_name_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    done = khadem("dlq", str(config), "--driver", "nope", "list")
    assert done.returncode == exits.USAGE
    assert "unknown queue driver 'nope'; drivers configured in" in error_line(done.stderr)


def test_an_in_process_driver_is_refused_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "queue.json"
    config.write_text(
        json.dumps({"queue": {"default": "memory", "drivers": {"memory": {"driver": "memory"}}}})
    )
    done = khadem("work", str(config), "--jobs", "tests.cli_jobs")
    assert done.returncode == exits.USAGE
    assert "keeps its jobs inside one process" in error_line(done.stderr)


def test_an_unreachable_redis_exits_3(tmp_path: Path) -> None:
    # 7449: one of this suite's private ports, where nothing listens
    config = tmp_path / "queue.json"
    entry = {"driver": "redis", "url": "redis://127.0.0.1:7449/0", "queue_name": "cli-unreachable"}
    config.write_text(json.dumps({"queue": {"default": "q", "drivers": {"q": entry}}}))
    done = khadem("work", str(config), "--jobs", "tests.cli_jobs", "--burst")
    assert done.returncode == exits.UNAVAILABLE, done.stderr
    line = error_line(done.stderr)
    assert "127.0.0.1:7449" in line and "Start redis-server there" in line


def test_a_missing_jobs_module_exits_4(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    done = khadem("work", str(config), "--jobs", "myapp.nosuchjobs")
    assert done.returncode == exits.JOBS_MODULE
    assert "cannot import the jobs module 'myapp.nosuchjobs': ModuleNotFoundError" in error_line(done.stderr)


def test_a_jobs_module_that_registers_nothing_exits_4(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    empty = tmp_path / "nojobs.py"
    empty.write_text("X = 1\n")
    done = khadem("work", str(config), "--jobs", str(empty))
    assert done.returncode == exits.JOBS_MODULE
    assert "registers no job class" in error_line(done.stderr)


def test_verbose_adds_the_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite")
    done = khadem("work", str(config), "--jobs", "myapp.nosuchjobs", "--verbose")
    assert done.returncode == exits.JOBS_MODULE
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("khadem-lab work: error: cannot import")


def test_every_command_has_an_example_in_its_help() -> None:
    for command in ("work", "stats", "dlq", "jobs", "simulate", "lab", "demo"):
        done = khadem(command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert "example:" in done.stdout and f"khadem-lab {command}" in done.stdout.split("example:")[1], (
            command
        )


def test_lab_without_a_notebooks_folder_says_where_it_looked(tmp_path: Path) -> None:
    done = khadem("lab", "--notebooks", str(tmp_path / "nowhere"))
    assert done.returncode == exits.USAGE
    assert f"no notebooks folder at {tmp_path / 'nowhere'}: give one with --notebooks DIR" in error_line(
        done.stderr
    )


def test_demo_runs_through_the_command() -> None:
    done = khadem("demo", "--minutes", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("What ran when (virtual time, 3 minutes from 2024-01-01 09:00 UTC):")
    assert "Statistics (await qm.driver.get_stats()):" in done.stdout
