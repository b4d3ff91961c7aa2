"""Lease renewal for the Redis driver: one self-contained script that renews a worker's leases.

Kept apart from :mod:`khadem_lab.drivers.redis` (it uses none of its script prelude): the script
reads the job keys that driver writes (``state:ID``'s ``status``, ``attempts``, ``seq`` and
``reserved_until``; the ``reserved`` sorted set, members ``SEQ:ID`` with the seq zero-padded to 20
digits) and changes only ``reserved_until`` and that member's score. It checks every key's type
before it writes anything, so it never half-applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..records import JobRecord

if TYPE_CHECKING:
    from .redis import RedisStorageDriver

# KEYS: the queue's fixed keys (KEYS[3] is its `reserved` sorted set, whose prefix is that of every
# job key), then the state key of each job. ARGV: now, lease seconds, then (id, attempts) per job.
# Returns, per job, the lease's new end as text (17 significant digits: it reads back as the very
# double), or 0 if that reservation is not held.
RENEW = """
local RESERVED = KEYS[3]
local P = string.sub(RESERVED, 1, -(#'reserved' + 1))
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TYPE', RESERVED)['ok']
if t ~= 'zset' and t ~= 'none' then
  return redis.error_reply('KHADEMKEY ' .. RESERVED .. ' holds a ' .. t .. ', not a zset')
end
local out = {}
for i = 3, #ARGV, 2 do
  local id, attempts = ARGV[i], ARGV[i + 1]
  local state = P .. 'state:' .. id
  local result = 0
  if redis.call('TYPE', state)['ok'] == 'hash' then
    local cur = redis.call('HMGET', state, 'status', 'attempts', 'seq', 'reserved_until')
    local seq = tonumber(cur[3] or id)
    if cur[1] == 'reserved' and cur[2] == attempts and seq then
      local untl = tonumber(cur[4] or '')
      local text = cur[4]
      if not untl or now + lease > untl then text = string.format('%.17g', now + lease) end
      redis.call('HSET', state, 'reserved_until', text)
      redis.call('ZADD', RESERVED, text, string.format('%020d:', seq) .. id)
      result = text
    end
  end
  out[#out + 1] = result
end
return out
"""


async def renew(driver: RedisStorageDriver, records: Sequence[JobRecord], now: float) -> list[bool | None]:
    """:meth:`~khadem_lab.drivers.base.BaseQueueDriver.renew_records` for ``driver``: one script
    call (one round trip) for all of ``records``."""
    if not records:
        return []
    args: list[str | int] = [repr(now), repr(driver.lease_seconds)]
    for record in records:
        args += (record.id, record.attempts)
    keys = [f"{driver.prefix}state:{record.id}" for record in records]
    replies = await driver._script(driver._renew, *args, keys=keys)
    renewed: list[bool | None] = []
    for record, reply in zip(records, replies, strict=True):
        if isinstance(reply, bytes):
            record.reserved_until = float(reply)
        renewed.append(isinstance(reply, bytes))
    return renewed
