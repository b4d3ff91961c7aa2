"""On-disk pieces of the file driver: the snapshot, the operation journal, the lock, quarantine.

Layout of a storage directory (every file 0o600, the directory 0o700 when the driver creates it)::

    main.json          snapshot: {"format": 1, "generation": G, "seq": S, "jobs": [...]}, one job per line
                       (and "ids": [[id, fingerprint, remember_until], ...] before "jobs", when
                       ids given to dispatch are remembered)
    journal-G.log      operations since that snapshot, one JSON object per line, appended
    lock               flock()ed around every operation; holds the current generation number
    *.corrupt-N        bytes that could not be read, moved aside (never deleted)

Nothing here knows about queues: :mod:`khadem_lab.drivers.file` decides what the lines mean.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..records import JobRecord, JobStatus

log = logging.getLogger("khadem_lab.drivers.file")

FORMAT = 1
SNAPSHOT = "main.json"
LOCK = "lock"
FILE_MODE = 0o600
DIR_MODE = 0o700
_JOURNAL = re.compile(r"^journal-(\d+)\.log$")
_HEADER = re.compile(rb'^\{"format":(\d+),"generation":(\d+),"seq":(\d+),(?:"ids":(\[.*\]),)?"jobs":\[$')
_FOOTER = b"]}"


def journal_name(generation: int) -> str:
    return f"journal-{generation}.log"


def journal_generation(name: str) -> int | None:
    match = _JOURNAL.match(name)
    return int(match.group(1)) if match else None


def dumps(data: Any) -> bytes:
    """One compact JSON line (no NaN: what cannot be read back is never written)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def storage_error(path: Path, what: str, exc: OSError | None = None) -> StorageError:
    reason = f": {exc.strerror or exc}" if exc is not None else ""
    return StorageError(f"file queue storage {path}: {what}{reason}")


def open_private(path: Path, flags: int) -> int:
    """Open (creating with mode 0o600) ``path``, never through a symbolic link (O_NOFOLLOW); a
    StorageError naming it if that fails."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if os.path.islink(path):
            raise refuse_symlink(path) from exc
        raise storage_error(path, "cannot open", exc) from exc
    return fd


def refuse_symlink(path: Path) -> StorageError:
    return storage_error(
        path,
        "is a symbolic link; storage files are never opened through one (someone who can write "
        "the directory may have planted it to make the queue overwrite another file). Remove it "
        "after checking where it points",
    )


def refuse_symlinks(*paths: Path) -> None:
    """StorageError if any of ``paths`` is a symbolic link (dangling ones too)."""
    for path in paths:
        if os.path.islink(path):
            raise refuse_symlink(path)


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and every missing parent with mode 0o700 (``Path.mkdir(parents=True)``
    would give the parents the umask's mode). Existing directories are left as they are."""
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass  # another process made it at the same time
        except OSError as exc:
            raise storage_error(path, "cannot create the directory", exc) from exc


def check_not_world_writable(path: Path, what: str, *, sticky_ok: bool = False) -> None:
    """Refuse a world-writable ``path`` (anyone could replace or plant queue files in it); with
    ``sticky_ok``, a world-writable directory with the sticky bit (``/tmp``) only logs a warning."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise storage_error(path, f"cannot check the {what}", exc) from exc
    if not mode & stat.S_IWOTH:
        return
    if sticky_ok and stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        log.warning(
            "%s: the %s is world-writable (sticky, like /tmp): other users can plant files next to "
            "the queue's; prefer a directory of your own (mode 0o700)",
            path,
            what,
        )
        return
    raise storage_error(
        path,
        f"the {what} is world-writable (mode {stat.S_IMODE(mode):o}): any user could replace or "
        f"plant queue files. Run chmod o-w on it (or 700), or use a directory of your own",
    )


def fsync_dir(directory: Path) -> None:
    """Make renames and new files in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def quarantine(path: Path, data: bytes, why: str) -> Path:
    """Move bad bytes aside to ``path.corrupt-N`` (the first free N) and log a warning."""
    n = 1
    while True:
        target = path.with_name(f"{path.name}.corrupt-{n}")
        try:
            fd = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE
            )
        except FileExistsError:
            n += 1
            continue
        except OSError as exc:
            raise storage_error(target, "cannot write the quarantine file", exc) from exc
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning("%s: %s; moved %d bytes aside to %s", path, why, len(data), target)
        return target


# ============================================================================== records
_STR = (str,)
_NUM = (int, float)
_REQUIRED: dict[str, tuple[type, ...]] = {
    "id": _STR,
    "type": _STR,
    "queue": _STR,
    "display_name": _STR,
    "max_retries": (int,),
    "available_at": _NUM,
    "created_at": _NUM,
    "seq": (int,),
    "attempts": (int,),
    "status": _STR,
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "timeout": _NUM,
    "reserved_until": _NUM,
    "reserved_by": _STR,
    "last_error": _STR,
    "error_type": _STR,
    "failed_at": _NUM,
}
_STORED_STATUSES = {JobStatus.PENDING.value, JobStatus.RESERVED.value, JobStatus.DEAD.value}


def record_from_json(data: object) -> JobRecord:
    """A stored record, checked field by field; ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"a job must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - _REQUIRED.keys() - _OPTIONAL.keys() - {"payload"}
    if unknown:
        raise ValueError(f"unknown job field(s) {sorted(unknown)}")
    for key, types in _REQUIRED.items():
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"job field {key!r} must be {types[0].__name__}, got {value!r}")
    for key, types in _OPTIONAL.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"job field {key!r} must be {types[0].__name__} or null, got {value!r}")
    if data["status"] not in _STORED_STATUSES:
        raise ValueError(f"job status {data['status']!r} is not one of {sorted(_STORED_STATUSES)}")
    if data["status"] == JobStatus.RESERVED.value and data.get("reserved_until") is None:
        raise ValueError("a reserved job needs reserved_until")
    if data["max_retries"] < 0 or data["attempts"] < 0:
        raise ValueError("max_retries and attempts must be >= 0")
    payload = data.get("payload")
    if payload is not None and not isinstance(payload, (dict, str)):
        # kept, as text: running it dead-letters the job with this payload in the error
        data = {**data, "payload": json.dumps(payload)}
    return JobRecord.from_dict(data)


# ============================================================================== snapshot
@dataclass
class Snapshot:
    generation: int
    seq: int
    records: list[JobRecord]
    damaged: bool = False  # something was quarantined: rewrite it
    client_ids: dict[str, tuple[str, float]] | None = None  # remembered ids given to dispatch


def client_ids_from_json(data: object, path: Path | str) -> dict[str, tuple[str, float]]:
    """The remembered ids of a snapshot or a push line, ``[[id, fingerprint, until], ...]``;
    entries that are not that shape are skipped with a warning (an id is then not remembered)."""
    found: dict[str, tuple[str, float]] = {}
    if data is None:
        return found
    items = data if isinstance(data, list) else [data]
    for item in items:
        if (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and isinstance(item[2], (int, float))
            and not isinstance(item[2], bool)
        ):
            found[item[0]] = (item[1], float(item[2]))
        else:
            log.warning("%s: %r is not a remembered job id ([id, fingerprint, until]); skipped", path, item)
    return found


def write_snapshot(
    path: Path,
    generation: int,
    seq: int,
    records: list[JobRecord],
    client_ids: dict[str, tuple[str, float]] | None = None,
) -> int:
    """Write a snapshot to ``path`` (a temporary name) and fsync it; returns its size in bytes.

    The caller renames it over ``main.json``: a reader sees the old snapshot or the new one, whole.
    """
    ids = b""
    if client_ids:
        ids = b'"ids":%s,' % dumps([[i, mark, until] for i, (mark, until) in client_ids.items()])
    parts = [b'{"format":%d,"generation":%d,"seq":%d,%s"jobs":[' % (FORMAT, generation, seq, ids)]
    lines = [dumps(r.to_dict()) for r in records]
    if lines:
        parts.append(b",\n".join(lines))
    parts.append(_FOOTER + b"\n")
    data = b"\n".join(parts)
    if os.path.islink(path):
        raise refuse_symlink(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a leftover of a crashed compaction (we hold the lock): never reused
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise storage_error(path, "cannot write the snapshot", exc) from exc
    finally:
        os.close(fd)
    return len(data)


def read_snapshot(path: Path) -> Snapshot:
    """Read ``main.json``. A job that cannot be read is quarantined and the rest kept; a snapshot
    whose frame (header, end) is damaged raises StorageError naming the file and the fault."""
    fd = open_private(path, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise storage_error(path, "cannot read the snapshot", exc) from exc
    if not data.strip():
        raise storage_error(
            path, 'the snapshot is empty (expected {"jobs": [...]}); restore it or move it aside'
        )
    try:
        whole = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: a job nested too deep
        return _salvage_snapshot(path, data, exc)
    if not isinstance(whole, dict) or not isinstance(whole.get("jobs"), list):
        raise storage_error(path, 'not a queue snapshot (expected an object with a "jobs" list)')
    generation, seq = whole.get("generation", 0), whole.get("seq", 0)
    if not isinstance(generation, int) or not isinstance(seq, int) or whole.get("format", FORMAT) != FORMAT:
        raise storage_error(path, f"unsupported snapshot header (format {whole.get('format')!r})")
    records: list[JobRecord] = []
    bad: list[bytes] = []
    for n, item in enumerate(whole["jobs"]):
        try:
            records.append(record_from_json(item))
        except ValueError as exc:
            log.warning("%s: job #%d cannot be read: %s", path, n + 1, exc)
            bad.append(json.dumps(item).encode())
    if bad:
        quarantine(path, b"\n".join(bad) + b"\n", f"{len(bad)} unreadable job(s) in the snapshot")
    client_ids = client_ids_from_json(whole.get("ids"), path)
    return Snapshot(generation, seq, records, damaged=bool(bad), client_ids=client_ids)


def _salvage_snapshot(path: Path, data: bytes, error: ValueError | RecursionError) -> Snapshot:
    """The snapshot is not valid JSON: keep every job line that still reads, if the frame holds."""
    lines = data.rstrip(b"\n").split(b"\n")
    header = _HEADER.match(lines[0])
    if header is None or len(lines) < 2 or lines[-1] != _FOOTER:
        where = "header" if header is None else "end (it looks truncated)"
        raise storage_error(
            path,
            f"not valid JSON ({error}); its {where} is damaged, so it cannot be salvaged. "
            "Restore it from a backup or move it aside (the driver then starts empty)",
        ) from error
    if int(header.group(1)) != FORMAT:
        raise storage_error(path, f"unsupported snapshot format {int(header.group(1))}")
    records: list[JobRecord] = []
    bad: list[bytes] = []
    for n, line in enumerate(lines[1:-1], start=2):
        text = line[:-1] if line.endswith(b",") else line
        try:
            records.append(record_from_json(json.loads(text)))
        except RecursionError:
            log.warning("%s: line %d cannot be read: nested too deep to decode", path, n)
            bad.append(line)
        except ValueError as exc:
            log.warning("%s: line %d cannot be read: %s", path, n, exc)
            bad.append(line)
    if bad:
        quarantine(path, b"\n".join(bad) + b"\n", f"{len(bad)} unreadable line(s) in the snapshot")
    ids: object = None
    if header.group(4) is not None:
        try:
            ids = json.loads(header.group(4))
        except ValueError:
            log.warning("%s: the remembered job ids cannot be read; they are forgotten", path)
    client_ids = client_ids_from_json(ids, path)
    return Snapshot(int(header.group(2)), int(header.group(3)), records, damaged=True, client_ids=client_ids)


# ============================================================================== journal
class Journal:
    """An append-only file of JSON lines, read incrementally from this process's offset."""

    def __init__(self, path: Path, generation: int, *, truncate: bool = False) -> None:
        self.path = path
        self.generation = generation
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.fd = open_private(path, flags)
        self.offset = 0  # bytes applied by this process (always at a line end)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def size(self) -> int:
        try:
            return os.fstat(self.fd).st_size
        except OSError as exc:
            raise storage_error(self.path, "cannot stat the journal", exc) from exc

    def read_new(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(start offset, line)`` for each complete line after ``offset``, advancing it.

        A last line without its newline is a write cut short by a crash (writers hold the lock
        while they write, and so does the caller): it was never acknowledged and is cut off."""
        size = self.size()
        if size <= self.offset:
            return
        try:
            data = os.pread(self.fd, size - self.offset, self.offset)
        except OSError as exc:
            raise storage_error(self.path, "cannot read the journal", exc) from exc
        end = data.rfind(b"\n") + 1
        if end < len(data):
            tail = data[end:]
            if not tail.startswith(b'{"op":'):
                # Not the start of a line this driver writes: garbage, not a write cut short.
                # Kept aside (it may matter to someone), then cut off so the journal goes on.
                quarantine(
                    self.path,
                    tail,
                    f"{len(tail)} bytes at offset {self.offset + end} are not a journal line (not "
                    "a write cut short by a crash: the file was damaged or written by something else)",
                )
            else:
                log.warning(
                    "%s: cut off a torn last line of %d bytes at offset %d (an operation interrupted "
                    "by a crash; it was never acknowledged)",
                    self.path,
                    len(tail),
                    self.offset + end,
                )
            try:
                os.ftruncate(self.fd, self.offset + end)
            except OSError as exc:
                raise storage_error(self.path, "cannot cut off an incomplete last line", exc) from exc
        start = 0
        base = self.offset
        while start < end:
            stop = data.index(b"\n", start)
            self.offset = base + stop + 1
            yield base + start, data[start:stop]
            start = stop + 1

    def append(self, line: bytes, fsync: bool) -> None:
        """Append one line with a single write (the caller holds the lock and has caught up)."""
        try:
            write_all(self.fd, line)
            if fsync:
                os.fsync(self.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.offset)  # never leave half a line behind
            raise storage_error(self.path, "cannot append to the journal", exc) from exc
        self.offset += len(line)


# ============================================================================== lock
class LockFile:
    """``fcntl.flock`` on the ``lock`` file; its content is the current snapshot generation.

    The generation lets every process see at one read (under the lock) that a compaction replaced
    the snapshot it loaded from, without reading the snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = open_private(path, os.O_RDWR | os.O_CREAT)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise storage_error(self.path, "cannot lock", exc) from exc
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def generation(self) -> int:
        try:
            text = os.pread(self.fd, 32, 0).strip()
            return int(text) if text else -1
        except (OSError, ValueError):
            return -1

    def set_generation(self, generation: int) -> None:
        try:
            os.pwrite(self.fd, b"%-20d\n" % generation, 0)
        except OSError as exc:
            raise storage_error(self.path, "cannot write the generation", exc) from exc
