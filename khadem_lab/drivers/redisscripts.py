"""The Redis driver's Lua scripts: one file each under ``redis_scripts/``, read at the first driver
built, each prefixed with the key layout (:func:`.rediskeys.lua_layout`) and the shared prelude."""

from __future__ import annotations

from importlib import resources

from .rediskeys import lua_layout
from .redisrecords import FIELDS


def _lua(name: str) -> str:
    return (resources.files(__package__) / "redis_scripts" / f"{name}.lua").read_text("utf-8")


def load_scripts() -> dict[str, str]:
    """Every script's full text, by name: the key layout (:func:`.rediskeys.lua_layout`), the
    shared prelude (``redis_scripts/prelude.lua``), then the script's own file. Read once, at the
    first driver built."""
    global _SCRIPTS
    if _SCRIPTS is None:
        head = lua_layout(FIELDS) + _lua("prelude")
        _SCRIPTS = {name: head + _lua(name) for name in SCRIPT_NAMES}
        for name in DEAD_ID_SCRIPTS:  # a requeue or a purge acts on the dead letters named
            _SCRIPTS[name] = head + _lua("dead_ids") + _lua(name)
        for name in JOB_STEP_SCRIPTS:  # the steps of a worker's slot: functions in jobs.lua
            _SCRIPTS[name] = head + _lua("jobs") + _lua(name)
    return _SCRIPTS


#: The scripts, one file each under ``redis_scripts/``; every queue change is one of them.
SCRIPT_NAMES = (
    "push", "reserve", "ack", "release", "bury", "reclaim", "counts", "next_at", "clear", "dead_list",
    "requeue", "purge", "list", "cancel", "push_ids", "take",
)  # fmt: skip
DEAD_ID_SCRIPTS = ("requeue", "purge")
JOB_STEP_SCRIPTS = ("ack", "reclaim", "reserve", "take")
_SCRIPTS: dict[str, str] | None = None
