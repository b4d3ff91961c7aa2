"""The wall-clock bridge: ``datetime.now()`` and ``time.time()`` in job code see virtual time.

``attach(thread_id, now)`` makes the wall-clock readings of one thread (a simulation's helper
thread, the only thread its virtual loop and its jobs run on) answer ``now()``, virtual seconds
since the Unix epoch. Every other thread keeps the real clock. Several threads can be attached at
once, each to its own time source. ``attach`` returns ``detach``; the first attach installs the
bridge, the last detach removes it completely. It only answers "what time is it": it schedules
nothing and never moves time.

What an attached thread sees (called without a time argument; with one, every function converts
the given time exactly as before):

* ``time.time()``, ``time.time_ns()``, ``time.localtime()``, ``time.gmtime()``, ``time.ctime()``,
  ``time.asctime()``, ``time.strftime(fmt)``;
* ``datetime.datetime.now()`` (naive: virtual time in the process's local time zone, as the real
  ``now()`` would give at that instant), ``datetime.datetime.now(tz)`` (aware, in ``tz``),
  ``datetime.datetime.utcnow()``, ``datetime.datetime.today()``, ``datetime.date.today()``.

``time.monotonic()``, ``time.perf_counter()`` and the other interval clocks are never touched:
asyncio, timeouts and locks rely on them.

How, and why it is safe for the other threads:

* ``datetime.datetime`` and ``datetime.date`` stay the very same classes. Their ``now``,
  ``utcnow`` and ``today`` class methods are replaced, in place, by methods that look up the
  calling thread; on a thread that is not attached they return what the original would. So every
  reference to the classes (``from datetime import datetime`` in any module, done before or after,
  class attributes, closures) sees the bridge, while ``isinstance``, ``type(x) is datetime``,
  pickling and subclasses (``pandas.Timestamp``) are unchanged, and every value returned is a
  plain ``datetime``/``date``. (The classes are immutable to Python code; the replacement goes
  through the type's dictionary and ``PyType_Modified``, which is CPython-specific: on another
  interpreter ``attach`` raises ``RuntimeError`` rather than half-working.)
* The ``time`` functions are builtins that cannot be changed in place, so the ``time`` module's
  attributes are replaced by Python functions with the same names. Names bound earlier with
  ``from time import time`` (a notebook's ``__main__``, a user module) are found by one scan of the
  loaded modules at install and swapped too; each swap is undone at the last detach, together
  with any bridge function a module picked up while the bridge was in place. Modules where a
  swap could only do harm are not scanned (:data:`SKIPPED_MODULES`: this package, the stdlib's
  time, datetime and concurrency internals, test runners, the Jupyter kernel and debugger
  machinery, freezegun and time-machine).
* A call on a thread that is not attached costs one thread-id lookup on top of the real call
  (measured on CPython 3.11: +65 ns for ``time.time()``, +85 ns for ``datetime.now()``); the
  process is patched only while some thread is attached. Installing (a scan of ~1,300 loaded
  modules) and removing take about 10 ms each.

Limits:

* C code that reads the system clock itself still sees real time: ``pandas.Timestamp.now()``,
  ``numpy.datetime64("now")``, file times, C extensions in general; so does a subclass of
  ``datetime`` whose own ``now()`` is written in C (``pandas.Timestamp``).
* A reference to a real ``time`` function or to a bound ``datetime.now`` kept where the scan
  cannot see it (a default argument, a class or instance attribute, a container, a closure,
  ``now = datetime.now`` taken before attach) keeps giving real time. Calls *with* a time
  argument are not concerned (``logging.Formatter.converter``, the real ``localtime``, converts
  the virtual ``record.created`` correctly).
* Code on an attached thread that polls ``time.time()`` to wait for something real (a timeout
  measured on the wall clock) waits forever, since virtual time moves only between callbacks;
  such code must use ``time.monotonic()``.
* While installed, ``time.time`` and the other six names are Python functions, not the
  builtins: an identity check against a builtin taken earlier, or pickling that builtin, behaves
  differently. The bridges themselves pickle by name, as ``time.time``.
* A ``Simulation`` (or any attachment) that is never detached keeps the bridge installed: other
  threads still get real time, through the bridges.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _datetime_module
import functools
import gc
import math
import sys
import threading
import time as _time_module
import types
from collections.abc import Callable
from typing import Any, Final

__all__ = ["SKIPPED_MODULES", "attach", "attached_threads", "installed"]

# -- the real objects, taken before anything is patched -------------------------------------------
_real_time = _time_module.time
_real_time_ns = _time_module.time_ns
_real_localtime = _time_module.localtime
_real_gmtime = _time_module.gmtime
_real_ctime = _time_module.ctime
_real_asctime = _time_module.asctime
_real_strftime = _time_module.strftime

_RealDatetime: Final = _datetime_module.datetime
_RealDate: Final = _datetime_module.date
_REAL_NOW: Final[Any] = _RealDatetime.__dict__["now"]  # classmethod descriptors
_REAL_UTCNOW: Final[Any] = _RealDatetime.__dict__["utcnow"]
_REAL_TODAY: Final[Any] = _RealDate.__dict__["today"]  # datetime.today is date.today, inherited
_real_datetime_now = _RealDatetime.now  # bound to the real class: the fast path
_real_datetime_utcnow = _RealDatetime.utcnow

_get_ident = threading.get_ident
_current_thread = threading.current_thread
_UTC = _datetime_module.UTC

#: Module names (and their submodules) whose globals the install scan leaves alone: they either
#: never run job code or need the real clock (timeouts, test durations, the kernel's messages).
# fmt: off
SKIPPED_MODULES: Final[tuple[str, ...]] = (
    "khadem_lab",                                           # reads time only from its clocks
    "time", "datetime", "_datetime", "_strptime",           # the stdlib's own (``time`` is patched by name)
    "threading", "_thread", "queue", "concurrent", "multiprocessing", "asyncio", "selectors",
    "sched", "subprocess", "socketserver", "signal",        # real timeouts
    "freezegun", "time_machine",                            # hold the real objects on purpose
    "_pytest", "pytest", "pluggy", "nose",                  # test runners time the tests
    "ipykernel", "IPython", "jupyter_client", "jupyter_core", "traitlets", "zmq", "tornado",
    "comm", "nbclient", "nbval", "debugpy", "pydevd", "_pydevd_bundle", "_pydev_bundle",
    "_pydevd_frame_eval",                                   # the kernel and its debugger
    "prompt_toolkit", "gi", "selenium", "google.gax", "six.moves",  # from freezegun's ignore list
)
# fmt: on


# -- who is attached ---------------------------------------------------------------------------------
class _Attachment:
    """One ``attach``: the thread (to tell a reused thread id apart) and its time source."""

    __slots__ = ("now", "thread", "thread_id")

    def __init__(self, thread_id: int, thread: threading.Thread | None, now: Callable[[], float]):
        self.thread_id = thread_id
        self.thread = thread
        self.now = now


#: Thread id -> its innermost attachment. Read without a lock on every call (a dict lookup is
#: atomic); changed only under ``_lock``, and never rebound.
_sources: dict[int, _Attachment] = {}
_stacks: dict[int, list[_Attachment]] = {}  # every live attachment per thread, innermost last
_lock = threading.RLock()  # re-entrant: a detach run by a finalizer during an install cannot hang
_count = 0
_undo: list[tuple[dict[str, Any], str, object, object]] = []  # (namespace, name, original, bridge)


# -- the bridge: time ----------------------------------------------------------------------------------
_MISSING: Any = object()


def _bridge_time() -> float:
    # Each bridge inlines the same check (a helper call would add ~40 ns to every call): the
    # calling thread's attachment, if any, and that thread is still the one that was attached
    # (an ended thread's id can be given to a new thread).
    entry = _sources.get(_get_ident())
    if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
        return entry.now()
    return _real_time()


def _bridge_time_ns() -> int:
    entry = _sources.get(_get_ident())
    if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
        return _to_ns(entry.now())
    return _real_time_ns()


def _bridge_localtime(secs: float | None = None, /) -> _time_module.struct_time:
    if secs is None:
        entry = _sources.get(_get_ident())
        if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
            return _real_localtime(entry.now())
        return _real_localtime()
    return _real_localtime(secs)


def _bridge_gmtime(secs: float | None = None, /) -> _time_module.struct_time:
    if secs is None:
        entry = _sources.get(_get_ident())
        if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
            return _real_gmtime(entry.now())
        return _real_gmtime()
    return _real_gmtime(secs)


def _bridge_ctime(secs: float | None = None, /) -> str:
    if secs is None:
        entry = _sources.get(_get_ident())
        if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
            return _real_ctime(entry.now())
        return _real_ctime()
    return _real_ctime(secs)


def _bridge_asctime(t: Any = _MISSING, /) -> str:
    if t is _MISSING:
        entry = _sources.get(_get_ident())
        if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
            return _real_asctime(_real_localtime(entry.now()))
        return _real_asctime()
    return _real_asctime(t)


def _bridge_strftime(format: str, t: Any = _MISSING, /) -> str:
    if t is _MISSING:
        entry = _sources.get(_get_ident())
        if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
            return _real_strftime(format, _real_localtime(entry.now()))
        return _real_strftime(format)
    return _real_strftime(format, t)


def _to_ns(seconds: float) -> int:
    whole = math.floor(seconds)
    return int(whole) * 1_000_000_000 + round((seconds - whole) * 1e9)


# -- the bridge: datetime --------------------------------------------------------------------------------
def _bridge_now(cls: type[_datetime_module.datetime], tz: _datetime_module.tzinfo | None = None) -> Any:
    entry = _sources.get(_get_ident())
    if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
        return cls.fromtimestamp(entry.now(), tz)
    if cls is _RealDatetime:
        return _real_datetime_now(tz)
    return _REAL_NOW.__get__(None, cls)(tz)  # a subclass that does not define now()


def _bridge_utcnow(cls: type[_datetime_module.datetime]) -> Any:
    entry = _sources.get(_get_ident())
    if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
        return cls.fromtimestamp(entry.now(), _UTC).replace(tzinfo=None)
    if cls is _RealDatetime:
        return _real_datetime_utcnow()
    return _REAL_UTCNOW.__get__(None, cls)()


def _bridge_today(cls: type[_datetime_module.date]) -> Any:
    entry = _sources.get(_get_ident())
    if entry is not None and (entry.thread is None or _current_thread() is entry.thread):
        return cls.fromtimestamp(entry.now())
    # What the C ``today()`` does, with the real clock read directly: the C version reads it
    # through ``time.time``, which would pass through the bridge a second time.
    return cls.fromtimestamp(_real_time())


def _dress(fn: Callable[..., Any], real: Any, module: str) -> None:
    """Give a bridge function the real one's name and doc (``repr``, ``help`` and pickling by name)."""
    fn.__name__ = fn.__qualname__ = real.__name__
    fn.__module__ = module
    fn.__doc__ = f"{real.__doc__}\n\n(khadem_lab wall-clock bridge: virtual time on attached threads.)"


_TIME_BRIDGES: Final[dict[str, tuple[Any, Callable[..., Any]]]] = {
    "time": (_real_time, _bridge_time),
    "time_ns": (_real_time_ns, _bridge_time_ns),
    "localtime": (_real_localtime, _bridge_localtime),
    "gmtime": (_real_gmtime, _bridge_gmtime),
    "ctime": (_real_ctime, _bridge_ctime),
    "asctime": (_real_asctime, _bridge_asctime),
    "strftime": (_real_strftime, _bridge_strftime),
}
_SWAP: Final[dict[int, tuple[object, object]]] = {id(r): (r, b) for r, b in _TIME_BRIDGES.values()}
_UNSWAP: Final[dict[int, tuple[object, object]]] = {id(b): (b, r) for r, b in _TIME_BRIDGES.values()}

_CLASS_BRIDGES: Final[list[tuple[type, str, Any, Any]]] = [
    (_RealDatetime, "now", _REAL_NOW, classmethod(_bridge_now)),
    (_RealDatetime, "utcnow", _REAL_UTCNOW, classmethod(_bridge_utcnow)),
    (_RealDate, "today", _REAL_TODAY, classmethod(_bridge_today)),
]


def _name_the_bridges() -> None:
    for real, bridge in _TIME_BRIDGES.values():
        _dress(bridge, real, "time")
    for cls, name, real, method in _CLASS_BRIDGES:
        _dress(method.__func__, real, cls.__module__)
        method.__func__.__qualname__ = f"{cls.__name__}.{name}"


_name_the_bridges()


# -- attach / detach ----------------------------------------------------------------------------------
def attach(thread_id: int, now: Callable[[], float]) -> Callable[[], None]:
    """Make wall-clock reads on thread ``thread_id`` return ``now()``; returns ``detach``.

    ``now`` gives virtual seconds since the Unix epoch; it is called on that thread, each time the
    thread reads the wall clock. The first attach installs the bridge (a scan of the loaded
    modules, some milliseconds); ``detach()`` ends this attachment, and the last one removes the
    bridge and restores every object it replaced. ``detach`` is idempotent and may be called from
    any thread. Attaching a thread that is already attached stacks: the newest source wins until
    it is detached. Thread-safe.
    """
    global _count
    if not callable(now):
        raise TypeError(f"now must be a callable giving seconds since the epoch, got {now!r}")
    thread = next((t for t in threading.enumerate() if t.ident == thread_id), None)
    entry = _Attachment(thread_id, thread, now)
    with _lock:
        if _count == 0:
            _install()
        _count += 1
        _stacks.setdefault(thread_id, []).append(entry)
        _sources[thread_id] = entry
    done = False

    def detach() -> None:
        """End this attachment (idempotent); the last one removes the bridge from the process."""
        nonlocal done
        global _count
        with _lock:
            if done:
                return
            done = True
            stack = _stacks[thread_id]
            stack.remove(entry)
            if stack:
                _sources[thread_id] = stack[-1]
            else:
                del _stacks[thread_id], _sources[thread_id]
            _count -= 1
            if _count == 0:
                _uninstall()

    return detach


def installed() -> bool:
    """Whether the bridge is in place (some thread is attached)."""
    return _count > 0


def attached_threads() -> set[int]:
    """The ids of the threads attached now."""
    return set(_sources)


# -- install / uninstall ---------------------------------------------------------------------------------
def _install() -> None:
    try:
        for cls, name, real, bridge in _CLASS_BRIDGES:
            _swap_class_attribute(cls, name, real, bridge)
        _swap_into(vars(_time_module), _SWAP, _undo)  # the module itself (skipped by the scan)
        _undo.extend(_swap_module_globals(_SWAP, skip=SKIPPED_MODULES))
    except BaseException:
        _uninstall()
        raise


def _uninstall() -> None:
    """Undo everything, whatever state an install left. Never raises for one stubborn object."""
    for cls, name, real, bridge in reversed(_CLASS_BRIDGES):
        with contextlib.suppress(Exception):  # install checked that this works
            _swap_class_attribute(cls, name, bridge, real)
    undo, _undo[:] = list(_undo), []
    for namespace, name, original, bridge in reversed(undo):
        if namespace.get(name) is bridge:
            namespace[name] = original
    # Bridge functions picked up while installed (``from time import time`` in a module imported
    # meanwhile, or in a cell): every module, skipped or not, but this one, which defines them.
    _swap_module_globals(_UNSWAP, skip=(__name__,))
    _swap_into(vars(_time_module), _UNSWAP, [])


def _swap_module_globals(
    replacements: dict[int, tuple[object, object]], skip: tuple[str, ...]
) -> list[tuple[dict[str, Any], str, object, object]]:
    changed: list[tuple[dict[str, Any], str, object, object]] = []
    for name, module in sys.modules.copy().items():
        if not isinstance(module, types.ModuleType) or _skipped(name, skip):
            continue
        try:
            _swap_into(vars(module), replacements, changed)
        except Exception:  # an odd module object: leave it alone rather than fail the install
            continue
    return changed


def _swap_into(
    namespace: dict[str, Any],
    replacements: dict[int, tuple[object, object]],
    changed: list[tuple[dict[str, Any], str, object, object]],
) -> None:
    for attr, value in namespace.copy().items():  # a copy: other threads may add names meanwhile
        pair = replacements.get(id(value))
        if pair is not None and pair[0] is value and namespace.get(attr) is value:
            namespace[attr] = pair[1]
            changed.append((namespace, attr, value, pair[1]))


def _skipped(name: object, skip: tuple[str, ...]) -> bool:
    if not isinstance(name, str):
        return True
    return name in skip or name.startswith(tuple(prefix + "." for prefix in skip))


@functools.cache
def _type_modified() -> Callable[[type], None]:
    """CPython's ``PyType_Modified``: drops the attribute caches of a type and its subclasses."""
    function = ctypes.pythonapi["PyType_Modified"]  # a handle of our own: pythonapi's stays as is
    function.argtypes = [ctypes.py_object]
    function.restype = None
    return function


def _swap_class_attribute(cls: type, name: str, expected: object, replacement: object) -> None:
    """Set ``cls.name`` to ``replacement`` if it is ``expected``, on a class Python cannot change
    (a C type): through the type's own dictionary, then ``PyType_Modified`` so that attribute
    caches see it. Raises RuntimeError if this interpreter does not work that way."""
    if sys.implementation.name != "cpython":
        raise RuntimeError("the wall-clock bridge needs CPython (it patches datetime's class methods)")
    referents = gc.get_referents(cls.__dict__)  # the dict behind the read-only mappingproxy
    if len(referents) != 1 or not isinstance(referents[0], dict) or referents[0] != cls.__dict__:
        raise RuntimeError(f"cannot reach the dictionary of {cls!r} on this interpreter")
    namespace: dict[str, Any] = referents[0]
    if namespace.get(name) is not expected:
        return  # someone else's patch (freezegun?) is in place: leave it, undo nothing of theirs
    namespace[name] = replacement
    _type_modified()(cls)
    if cls.__dict__.get(name) is not replacement:  # pragma: no cover - sanity check
        namespace[name] = expected
        _type_modified()(cls)
        raise RuntimeError(f"cannot patch {cls.__qualname__}.{name} on this interpreter")
