"""How the Redis driver connects: its clients (synchronous or asyncio, one server or a Redis Cluster),
the errors it turns Redis failures into, and keeping passwords out of every message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import StorageError

URL_SCHEMES = ("redis://", "rediss://", "unix://")
_URL_PASSWORD = re.compile(r"(://[^/@]*?:)[^/@]*@")


def redact_url(url: object) -> object:
    """A Redis URL with its password replaced by ``***`` (anything else as it is)."""
    return _URL_PASSWORD.sub(r"\1***@", url) if isinstance(url, str) else url


def scrub(text: str, *secrets: str) -> str:
    """``text`` with every secret (a password, a URL that carries one) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return str(redact_url(text))


def parse_nodes(nodes: object) -> list[tuple[str, int]] | None:
    """``["host:port", ...]`` as (host, port) pairs; None if that is not what ``nodes`` is."""
    if not isinstance(nodes, (list, tuple)) or not nodes:
        return None
    pairs = []
    for node in nodes:
        host, _, port = node.rpartition(":") if isinstance(node, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return None
        pairs.append((host, int(port)))
    return pairs


def pack_evalsha(sha: str, keys: Sequence[str], args: Sequence[str | int]) -> bytes:
    """``EVALSHA sha len(keys) *keys *args`` in the Redis protocol (RESP), ready to send."""
    items: list[bytes] = [sha.encode(), b"%d" % len(keys)]
    items += [key.encode() for key in keys]
    for arg in args:
        if isinstance(arg, str):
            items.append(arg.encode())
        elif isinstance(arg, int) and not isinstance(arg, bool):
            items.append(b"%d" % arg)
        else:
            raise TypeError(f"a script argument must be a str or an int, not {type(arg).__name__}: {arg!r}")
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(items) + 1)]
    parts += [b"$%d\r\n%s\r\n" % (len(item), item) for item in items]
    return b"".join(parts)


def connect(options: dict[str, Any], *, asynchronous: bool) -> Any:
    """A client, synchronous or asyncio, for one server or a Redis Cluster. No automatic
    retry: a script whose reply was lost may have run, and running a dispatch twice would
    store the job twice. A failed call raises StorageError; the worker backs off and calls
    again, and the client reconnects on that next call (a server restart included). A
    cluster client still follows the cluster's redirections (MOVED, ASK: the script did not
    run) and learns the new primary after a failover."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.retry
    import redis.cluster
    import redis.retry
    from redis.backoff import NoBackoff

    o = options
    retry = (redis.asyncio.retry.Retry if asynchronous else redis.retry.Retry)(NoBackoff(), 0)
    # (the asyncio client's calls are timed by the driver: RedisStorageDriver._timed)
    timeout = None if asynchronous else o["timeout"]
    common = {"socket_timeout": timeout, "socket_connect_timeout": o["timeout"], "retry": retry}
    if o["cluster"]:
        cluster: Any = redis.asyncio.cluster if asynchronous else redis.cluster
        if o["nodes"]:
            startup = [cluster.ClusterNode(h, p) for h, p in o["nodes"]]
            return cluster.RedisCluster(startup_nodes=startup, password=o["password"], **common)
        if o["url"] is not None:
            return cluster.RedisCluster.from_url(o["url"], **common)
        return cluster.RedisCluster(host=o["host"], port=o["port"], password=o["password"], **common)
    single: Any = redis.asyncio.Redis if asynchronous else redis.Redis
    if o["url"] is not None:
        return single.from_url(o["url"], **common)
    return single(host=o["host"], port=o["port"], db=o["db"], password=o["password"], **common)


def storage_error(
    exc: Exception, key: str | None, *, address: str, prefix: str, secrets: Sequence[str]
) -> StorageError:
    """A Redis failure as a StorageError naming the server (and ``key``, the key a plain command
    was about) with the advice that fits its cause; ``secrets`` never appear in it."""
    import redis.exceptions as errors

    text = scrub(str(exc).rstrip("."), *secrets)
    server = f"Redis server {address}"
    if isinstance(exc, errors.ResponseError) and text.startswith("KHADEMKEY "):
        found = text[len("KHADEMKEY ") :].split(" script: ")[0]
        bad_key = found.split(" ", 1)[0]
        message = (
            f"{server}: {found}. The driver did not write it: the queue cannot use that key "
            f"until it is deleted or renamed (redis-cli -n DB DEL '{bad_key}', after keeping "
            "what you need). Nothing was changed."
        )
    elif isinstance(exc, errors.BusyLoadingError):
        message = (
            f"{server} is loading its data set into memory (after a restart): {text}. Wait "
            "until it has loaded; workers try again on their own, a dispatch can be tried "
            "again in a moment. Nothing was changed."
        )
    elif isinstance(exc, (errors.AuthenticationError, errors.AuthenticationWrongNumberOfArgsError)):
        message = (
            f"{server} refused the credentials: {text}. Check the driver's password (or the "
            "user and password in its url)."
        )
    elif isinstance(exc, (errors.ConnectionError, errors.TimeoutError)):
        message = (
            f"{server} (queue keys {prefix}*) cannot be used: {type(exc).__name__}: "
            f"{text}. Start redis-server there, or point the driver's host, port, db, password "
            "or url at a running one. Every change is one atomic script: nothing is ever "
            "half-written."
        )
    elif isinstance(exc, errors.NoPermissionError):
        message = f"{server} refuses this user the driver's commands: {text}. Grant them (ACL SETUSER)."
    elif isinstance(exc, errors.ReadOnlyError):
        message = f"{server} is a read-only replica: {text}. Point the driver at the primary."
    elif isinstance(
        exc,
        (errors.ClusterError, errors.MasterDownError, errors.TryAgainError, errors.RedisClusterException),
    ):
        message = (
            f"{server} cannot serve the queue's slot (keys {prefix}*) right now: "
            f"{type(exc).__name__}: {text}. A failover may be under way: workers try again on "
            "their own, a dispatch can be tried again in a moment. Check CLUSTER INFO if it lasts."
        )
    elif isinstance(exc, errors.OutOfMemoryError):
        message = f"{server} is out of memory: {text}. Free memory or raise maxmemory."

    elif isinstance(exc, errors.ResponseError):
        where = f"key {key}" if key else f"a key under {prefix}"
        message = (
            f"{server} refused a queue command ({where}): {type(exc).__name__}: {text}. A key "
            f"under {prefix} probably holds data the driver did not write: inspect it "
            "(redis-cli TYPE KEY), then delete or rename it. Every change is one script that "
            "checks before it writes."
        )
    else:
        message = f"{server} (queue keys {prefix}*) cannot be used: {type(exc).__name__}: {text}."
    return StorageError(message)
