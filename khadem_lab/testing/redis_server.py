"""A private redis-server for tests and drills that stop, kill or restart it.

Never do that to a shared server: start one of your own on a free port, with its append-only file
in a directory of yours, so that what it stored survives a kill and a restart::

    server = RedisServer(tmp_path, ports=range(7200, 7300))
    server.start()
    ...  # RedisStorageDriver(..., options={"url": server.url})
    server.stop(signal.SIGKILL); server.start()
    server.close()

Needs the ``redis-server`` program and redis-py.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def free_port(ports: Iterable[int] | None = None) -> int | None:
    """The first of ``ports`` that nothing listens on (any free port if None); None if none is."""
    for port in [0] if ports is None else ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    return None


class RedisServer:
    """A redis-server of one's own on 127.0.0.1: no RDB snapshots, an append-only file in
    ``directory`` written with ``appendfsync`` (``always``, ``everysec`` or ``no``)."""

    def __init__(
        self, directory: Path, *, ports: Iterable[int] | None = None, appendfsync: str = "everysec"
    ) -> None:
        port = free_port(ports)
        if port is None:
            raise RuntimeError(f"no free port in {ports!r} for a private redis-server")
        self.directory = directory
        self.port = port
        self.appendfsync = appendfsync
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and return once it answers (loading its append-only file included)."""
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    exited = self.process.poll() is not None
                    if exited or time.monotonic() > deadline:
                        what = "exited" if exited else f"did not answer within {timeout:g} s"
                        raise RuntimeError(f"the private redis-server on port {self.port} {what}") from None
                    time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (SIGTERM: a clean shutdown; SIGKILL: a crash) and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait()

    def close(self) -> None:
        """Kill it if it still runs (the end of a test)."""
        self.stop(signal.SIGKILL)
