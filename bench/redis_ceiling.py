"""The ceiling of a worker with 8 slots and one round trip per job per slot, measured (issue 11).

    .venv/bin/python bench/redis_ceiling.py --url redis://127.0.0.1:6390/0 --n 2000

No queue at all: --coroutines (default 8) asyncio coroutines share one client, built by the
driver's own connection code (``khadem_lab.drivers.redisconn.connect``: ``redis.asyncio`` with
the hiredis parser when installed, no client-side timeouts, no retry, as the driver runs it), and
each makes bare round trips in a loop, one after another, until N round trips are done in all,
and again until --least seconds (default 0.5) have passed (at loopback N = 2,000 lasts about
50 ms, where one stall of the machine would halve the rate).
Each round trip goes as the driver sends its script calls (``RedisStorageDriver._evalsha``): a
connection taken from the client's pool, the command packed by ``pack_evalsha`` and sent, the reply
read, the connection given back; so 8 coroutines use 8 connections, as 8 slots with a reserve each
in flight would. Three kinds, timed apart (``time.perf_counter()``):

- ``evalsha_rps``: EVALSHA of a trivial script that returns a job-sized reply, the two arguments it
  was sent (an id and a 200-byte body, about what ``take.lua`` returns for one no-op job); one key
  named, never touched;
- ``ping_rps``: PING;
- ``gathered_rps``: jobs/s of one coroutine whose EVALSHA returns 8 (``--coroutines``) such pairs
  per call, one call in flight at a time: the skeleton of our worker's gathered reserve (one call
  for the slots that want a job, ``khadem_lab/gather.py``), 8 jobs per round trip.

What they bound: a worker without prefetch holds no job while it asks for the next, so each slot
does at most one job per round trip. ``evalsha_rps`` and ``ping_rps`` are the most 8 slots making
one call each can reach on this machine and network with nothing else to do (no job record, no
event, no Lua beyond a return); ``gathered_rps`` the most our design (the slots' calls in one) can.
Both are bounded by 8 jobs per round trip time. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE

from khadem_lab.drivers.redisconn import connect, pack_evalsha

SCRIPT = "return {ARGV[1], ARGV[2]}"
#: One call for every slot: ARGV[1] pairs (id, body) back, one per slot
GATHERED = "local r = {} for i = 1, tonumber(ARGV[1]) do r[i] = {ARGV[2], ARGV[3]} end return r"
PING = b"*1\r\n$4\r\nPING\r\n"


async def round_trips(client: Any, packed: bytes, n: int, coroutines: int, least: float) -> float:
    """N round trips of ``packed`` from ``coroutines`` coroutines at once, again until ``least``
    seconds have passed; the rate per second."""
    pool = client.connection_pool
    left = n

    async def slot() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            connection = await pool.get_connection()
            try:
                await connection.send_packed_command(packed, check_health=False)
                await connection.read_response()
            finally:
                await pool.release(connection)

    await asyncio.gather(*(slot() for _ in range(coroutines)))  # warm: every connection made
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < least:
        left = n
        await asyncio.gather(*(slot() for _ in range(coroutines)))
        done += n
    return done / (time.perf_counter() - started)


async def measure(url: str, n: int, coroutines: int, least: float) -> dict[str, Any]:
    options = {"url": url, "timeout": 10.0, "cluster": False}
    client = connect(options, asynchronous=True)
    try:
        sha = await client.script_load(SCRIPT)
        packed = pack_evalsha(sha, ["{ceiling}:untouched"], ["123456", "x" * 200])
        evalsha = await round_trips(client, packed, n, coroutines, least)
        ping = await round_trips(client, PING, n, coroutines, least)
        sha = await client.script_load(GATHERED)
        packed = pack_evalsha(sha, ["{ceiling}:untouched"], [coroutines, "123456", "x" * 200])
        gathered = await round_trips(client, packed, n // coroutines, 1, least) * coroutines
        connections = len(client.connection_pool._available_connections)
    finally:
        await client.aclose()
    return {
        "bench": "ceiling",
        "n": n,
        "coroutines": coroutines,
        "least_seconds": least,
        "connections": connections,
        "evalsha_rps": round(evalsha, 1),
        "ping_rps": round(ping, 1),
        "gathered_rps": round(gathered, 1),
        "hiredis_parser": HIREDIS_AVAILABLE,
        "versions": {"redis": redis.__version__, "python": platform.python_version()},
        "pid": os.getpid(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6390") + "/0")
    p.add_argument("--n", type=int, default=10_000, help="round trips of each kind, in all")
    p.add_argument("--coroutines", type=int, default=8, help="coroutines making round trips at once")
    p.add_argument("--least", type=float, default=0.5, help="seconds each kind runs at least (N again)")
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.url, a.n, a.coroutines, a.least))), flush=True)


if __name__ == "__main__":
    main()
