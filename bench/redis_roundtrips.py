"""Count a Python program's Redis round trips (client side), without changing it.

    python bench/redis_roundtrips.py --n 1000 -- SCRIPT [ARGS...]

Wraps redis-py's ``Connection.send_packed_command`` / ``send_command`` (sync and asyncio): every
write to the server is one round trip (a pipeline, a MULTI/EXEC block or a script call counts
once; a blocking pop counts once however long it waits). Runs SCRIPT with ``runpy`` in this
interpreter (so the peers' scripts run unchanged, their worker threads included), then prints one
JSON line on stdout after the script's own output: the round trips in total, per job (/ --n) and
by first command name. Works with redis-py 5 and 8. Untimed use only: the hook costs time.
"""

from __future__ import annotations

import argparse
import collections
import json
import runpy
import sys
import threading
from typing import Any

COUNTS: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_tls = threading.local()


def _name(args: tuple[Any, ...]) -> str:
    first = args[0] if args else b"?"
    text = first.decode() if isinstance(first, bytes) else str(first)
    return text.split()[0].lower()


def _single_name(command: Any) -> str | None:
    """The name of the command if ``command`` (packed RESP bytes) is exactly one command (as the
    Redis driver sends its script calls), else None (a pipeline, or chunks)."""
    if not isinstance(command, bytes) or not command.startswith(b"*"):
        return None
    try:
        end = command.index(b"\r\n")
        pos, name = end + 2, None
        for i in range(int(command[1:end])):
            end = command.index(b"\r\n", pos)
            if command[pos : pos + 1] != b"$":
                return None
            start = end + 2
            size = int(command[pos + 1 : end])
            if i == 0:
                name = command[start : start + size].decode().lower()
            pos = start + size + 2
    except ValueError:
        return None
    return name if pos == len(command) else None


def install() -> collections.Counter[str]:
    """Patch redis-py's connections to count round trips into COUNTS; returns COUNTS."""
    import redis.asyncio.connection as aconn
    import redis.connection as conn

    def wrap_sync(cls: type) -> None:
        send_packed, send = cls.send_packed_command, cls.send_command

        def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            _tls.inside = True
            try:
                with _lock:
                    COUNTS[_name(args)] += 1
                return send(self, *args, **kwargs)
            finally:
                _tls.inside = False

        def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            if not getattr(_tls, "inside", False):
                with _lock:
                    COUNTS["(pipeline)"] += 1
            return send_packed(self, command, *args, **kwargs)

        cls.send_command, cls.send_packed_command = send_command, send_packed_command

    def wrap_async(cls: type) -> None:
        send_packed, send = cls.send_packed_command, cls.send_command

        async def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            COUNTS[_name(args)] += 1
            await send_packed(self, self.pack_command(*args), check_health=kwargs.get("check_health", True))

        async def send_packed_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            COUNTS[_single_name(command) or "(pipeline)"] += 1
            return await send_packed(self, command, *args, **kwargs)

        del send
        cls.send_command, cls.send_packed_command = send_command, send_packed_command

    for name in ("AbstractConnection", "Connection"):
        cls = getattr(conn, name, None)
        if cls is not None and "send_command" in vars(cls):
            wrap_sync(cls)
    for name in ("AbstractConnection", "Connection"):
        cls = getattr(aconn, name, None)
        if cls is not None and "send_command" in vars(cls):
            wrap_async(cls)
    return COUNTS


def report(n: int) -> dict[str, Any]:
    total = sum(COUNTS.values())
    return {
        "bench": "redis_roundtrips",
        "n": n,
        "round_trips": total,
        "per_job": round(total / n, 3),
        "by_command": dict(COUNTS.most_common()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, required=True, help="jobs the script runs (to divide by)")
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args()
    install()
    sys.argv = [a.script, *a.args]
    sys.path.insert(0, str(__import__("pathlib").Path(a.script).resolve().parent))
    try:
        runpy.run_path(a.script, run_name="__main__")
    finally:
        print(json.dumps(report(a.n)), flush=True)


if __name__ == "__main__":
    main()
