"""A TCP proxy that adds network latency: every byte is forwarded ``--delay-ms`` after it arrived,
each way, so a request/reply between a client and Redis costs about twice that more.

    python bench/redis_proxy.py --listen 6391 --target 127.0.0.1:6390 --delay-ms 0.5

For the latency case of ``bench/redis_run.py``: every client (ours and the peers') reaches Redis
through it, so the comparison reflects a networked Redis, not a loopback one (``tc netem`` would
delay the whole loopback device, the shared server included). One
thread reads every connection and stamps each chunk with its arrival time + delay, another writes
the chunks when due: chunks keep their order and are delayed from their own arrival, also when
several are in flight (a pipelined burst is not delayed once per chunk); two threads whatever the
number of connections. ``--probe N`` prints the median PING
round trip measured through the proxy (one JSON line) and exits. Runs until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import select
import selectors
import socket
import statistics
import threading
import time


class Proxy:
    """Two threads for all connections: one reads every socket (epoll) and stamps each chunk with
    its arrival time + delay; the other writes the chunks when due, in that order."""

    def __init__(self, listen: int, target: tuple[str, int], delay: float) -> None:
        self.server = socket.create_server(("127.0.0.1", listen), backlog=1024)
        self.server.setblocking(False)
        self.target, self.delay = target, delay
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ, None)
        self.due: list[tuple[float, int, socket.socket, socket.socket, bytes]] = []  # a heap, by due
        self.seq = 0
        self.ready = threading.Condition()

    def run(self) -> None:
        threading.Thread(target=self._write, daemon=True).start()
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self.server.accept()
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        self.selector.register(client, selectors.EVENT_READ, upstream)
        self.selector.register(upstream, selectors.EVENT_READ, client)

    def _read(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            data = src.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # one side closed: both are closed (after what is in flight)
            self.selector.unregister(src)
        with self.ready:
            self.seq += 1
            heapq.heappush(self.due, (time.monotonic() + self.delay, self.seq, src, dst, data))
            self.ready.notify()

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.due:
                    self.ready.wait()
                when, _, src, dst, data = self.due[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self.ready.wait(wait)  # woken early by a new chunk: look again
                    continue
                heapq.heappop(self.due)
            if not data:
                for sock in (src, dst):
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self.selector.unregister(sock)
                    sock.close()
                continue
            with contextlib.suppress(OSError):
                while data:
                    try:
                        data = data[dst.send(data) :]
                    except BlockingIOError:
                        select.select([], [dst], [], 1.0)


def probe(port: int, n: int) -> dict[str, float]:
    """Median and p90 of N PINGs (one at a time) through the proxy, in milliseconds."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(64)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"rtt_ms_median": round(statistics.median(times), 3), "rtt_ms_p90": round(times[int(n * 0.9)], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", default="127.0.0.1:6390")
    p.add_argument("--delay-ms", type=float, default=0.5, help="added each way")
    p.add_argument("--probe", type=int, default=0, help="measure N PINGs through --listen, then exit")
    a = p.parse_args()
    if a.probe:
        print(json.dumps(probe(a.listen, a.probe)), flush=True)
        return
    host, _, port = a.target.rpartition(":")
    Proxy(a.listen, (host, int(port)), a.delay_ms / 1000).run()


if __name__ == "__main__":
    main()
