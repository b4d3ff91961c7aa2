"""Binder's launch script (binder/start, issue 9): it gives notebook 15 a Redis server when none
answers (local, nothing kept on disk) and hands over to its command, as repo2docker requires."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], port: int, run_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environ |= {"REDIS_PORT": str(port), "TMPDIR": str(run_dir), **env}
    return subprocess.run(
        ["bash", str(BINDER / "start"), *command], env=environ, capture_output=True, text=True, timeout=60
    )


def test_binder_files_install_redis_and_start_ends_by_handing_over() -> None:
    assert "redis-server" in (BINDER / "apt.txt").read_text().split()
    assert any(line.startswith("redis") for line in (BINDER / "requirements.txt").read_text().splitlines())
    assert os.access(BINDER / "start", os.X_OK)
    lines = (BINDER / "start").read_text().splitlines()
    code = [line for line in lines if line.strip() and not line.startswith("#")]
    assert code[-1] == 'exec "$@"'


def test_start_runs_a_local_redis_without_persistence_when_none_answers(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    # Given nothing listening on a private port
    port = free_port()
    check = (
        "import os, sys, redis\n"
        "r = redis.Redis.from_url(os.environ['REDIS_URL'])\n"
        "print(r.ping(), r.config_get('save'), r.config_get('appendonly'), r.config_get('bind'))\n"
        "sys.exit(5)\n"
    )
    pidfile = tmp_path / f"khadem-redis-{port}.pid"
    try:
        # When binder/start runs a command
        result = start([sys.executable, "-c", check], port, tmp_path)
        # Then a Redis answered at the REDIS_URL it set, keeping nothing on disk, bound to this
        # machine only, and the command's own exit status came back (exec)
        assert result.returncode == 5, result.stderr
        assert result.stdout.split("\n")[0] == (
            "True {'save': ''} {'appendonly': 'no'} {'bind': '127.0.0.1'}"
        )
        assert pidfile.exists()
    finally:
        if pidfile.exists():  # the server this test started, and only it
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_start_leaves_a_server_that_answers_alone_and_keeps_a_given_url(tmp_path: Path) -> None:
    # Given something already answering on the port (CI's Redis, say)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        show_url = [sys.executable, "-c", "import os; print(os.environ['REDIS_URL'])"]
        # When binder/start runs, with and without a REDIS_URL of the user's
        default = start(show_url, port, tmp_path)
        given = start(show_url, port, tmp_path, REDIS_URL="redis://cache:6380/2")
    # Then it starts no server of its own and hands over, with the URL of that port or the given one
    assert default.returncode == 0, default.stderr
    assert default.stdout == f"redis://127.0.0.1:{port}/0\n"
    assert given.stdout == "redis://cache:6380/2\n"
    assert not list(tmp_path.glob("khadem-redis-*"))
    assert default.stderr == ""
