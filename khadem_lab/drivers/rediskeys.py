"""The Redis driver's key layout, in one place: the Python side and the scripts' (:func:`lua_layout`).

Every key of a queue starts with ``khadem:{NAME}:``, the queue name encoded by :func:`key_part`,
so the braces are a Redis Cluster hash tag: all keys of one queue hash to one slot, and a script
may touch any of them on the node that owns it. After the prefix:

- the fixed keys (:data:`FIXED`, passed to every script as ``KEYS[1..5]``, in this order): ``seq``
  (the id counter), ``queues`` (names with waiting jobs), ``reserved``, ``dead``, ``foreign``;
- per job ID: ``job:ID`` (the body) and ``state:ID`` (what changed since);
- per job queue NAME: ``ready:NAME`` (due jobs, a list) and ``queue:NAME`` (the others, a sorted
  set), NAME encoded as above.

A call passes, after the fixed keys, every other key it can name before it runs (the keys of the
job it settles, of the queues it names: :func:`job_keys`, :func:`queue_keys`). Keys a script only
finds as it runs (the keys of the jobs a dispatch creates, of the job a reserve finds, of the
queues listed in ``queues``) are built inside it from the same prefix, so they are in the same slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: The queue's fixed keys, after its prefix, in the order every script gets them as KEYS.
FIXED = ("seq", "queues", "reserved", "dead", "foreign")
JOB, STATE = "job:", "state:"  # per job id
READY, WAITING = "ready:", "queue:"  # per job queue name (encoded)
_ESCAPED = re.compile(r"[%:{}]")


def key_part(name: str) -> str:
    """A queue name as it appears in keys: ``%``, ``:``, ``{`` and ``}`` percent-encoded, so no
    two names give the same key and the name never ends or opens a hash tag."""
    return _ESCAPED.sub(lambda m: f"%{ord(m[0]):02X}", name)


def prefix_of(queue_name: str) -> str:
    """Every key of the queue ``queue_name`` starts with this: ``khadem:{ENCODED_NAME}:``."""
    return f"khadem:{{{key_part(queue_name)}}}:"


def fixed_keys(prefix: str) -> list[str]:
    return [prefix + name for name in FIXED]


def job_keys(prefix: str, job_id: str) -> tuple[str, str]:
    """The job's body and state keys."""
    return prefix + JOB + job_id, prefix + STATE + job_id


def queue_keys(prefix: str, queues: Iterable[str]) -> list[str]:
    """The waiting keys (ready list, then sorted set) of each job queue named, once each."""
    keys: list[str] = []
    for queue in dict.fromkeys(queues):
        part = key_part(queue)
        keys += (prefix + READY + part, prefix + WAITING + part)
    return keys


def lua_layout(fields: Sequence[str]) -> str:
    """The layout as the scripts see it: the first lines of every script."""
    names = ", ".join(f"'{name}'" for name in fields)
    return (
        f"local FIELDS = {{{names}}}\n"
        f"local SEQ_NAME, JOB, STATE, READY, WAITING = '{FIXED[0]}', '{JOB}', '{STATE}', '{READY}', "
        f"'{WAITING}'\n"
    )
