"""Damage in a SQLite write-ahead log, found before SQLite opens the database and drops it silently.

SQLite's WAL (https://sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, format
version, page size, checkpoint sequence, two salts, a checksum of the first 24 bytes), then frames
of a 24-byte header (page number, database size in pages after a commit or 0, the two salts, a
cumulative checksum) and one page. The checksum of each frame continues the one of the frame
before it, over the frame header's first 8 bytes and the page, in 32-bit words of the byte order
the magic names (``0x377f0682`` little-endian, ``0x377f0683`` big-endian).

When SQLite opens a WAL it keeps the frames up to the last commit frame before the first frame
that fails its salt or checksum, and ignores everything after it **without an error**: a damaged
frame in the middle silently drops every transaction committed after it, also those that were
fsynced and acknowledged. :func:`check_wal` finds that case: a frame that fails its checksum
followed by frames of the same WAL (same salts, checksums that chain from the damaged frame's
stored one) that end in a commit.

What this cannot tell apart from a clean WAL: damage in the last transaction itself (the torn tail
of a write that a crash interrupted looks the same, and such a transaction was never acknowledged);
a damaged frame header whose stored checksum is lost too (the frames after it cannot be tied to it:
they are not counted); and damage in the database file itself (the driver's ``quick_check`` at open
finds some of it). A WAL that SQLite restarted (new salts) holds old frames after the current ones:
those are not damage.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC_LITTLE = 0x377F0682
MAGIC_BIG = 0x377F0683
WAL_HEADER = 32
FRAME_HEADER = 24


@dataclass(frozen=True)
class WalDamage:
    """A WAL whose valid part ends at a damaged frame, with committed frames after it."""

    path: Path
    bad_frame: int  # 1-based number of the first frame that fails its checksum
    bad_offset: int  # its byte offset in the file
    valid_frames: int  # frames SQLite keeps (up to the last commit before the damage)
    dropped_frames: int  # frames of the same WAL after the damage, up to its last commit
    dropped_commits: int  # transactions among them (commit frames)

    def describe(self) -> str:
        return (
            f"the SQLite write-ahead log {str(self.path)!r} is damaged: frame {self.bad_frame} (byte "
            f"{self.bad_offset}) fails its checksum, and {self.dropped_commits} committed "
            f"transaction(s) ({self.dropped_frames} frame(s)) follow it, which SQLite would drop "
            f"without an error (it keeps the first {self.valid_frames} frame(s))"
        )


def _checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1


def check_wal(path: Path) -> WalDamage | None:
    """Read the WAL at ``path`` (if any) and return its damage, or None if SQLite would keep every
    committed transaction in it (or there is no WAL, or it is not one SQLite would read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    if len(data) < WAL_HEADER:
        return None
    magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:WAL_HEADER])
    if magic not in (MAGIC_LITTLE, MAGIC_BIG):
        return None
    big = magic == MAGIC_BIG
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    if _checksum(data[:24], big, 0, 0) != (c1, c2):
        return None  # SQLite ignores a WAL whose header fails: nothing in it is kept
    frame_size = FRAME_HEADER + page_size
    count = (len(data) - WAL_HEADER) // frame_size
    s = (c1, c2)
    valid = 0
    bad = 0
    bad_commit = False
    for n in range(count):
        at = WAL_HEADER + n * frame_size
        header = data[at : at + FRAME_HEADER]
        _page, commit, fs1, fs2, k1, k2 = struct.unpack(">6I", header)
        if (fs1, fs2) != (salt1, salt2):
            return None  # the end of this WAL's frames (older frames follow after a restart)
        s = _checksum(header[:8] + data[at + FRAME_HEADER : at + frame_size], big, *s)
        if s != (k1, k2):
            bad = n + 1
            bad_commit = commit != 0
            s = (k1, k2)  # the frames after it chain from its stored checksum
            break
        if commit:
            valid = n + 1
    else:
        return None
    # The damaged frame's own header is trusted only if frames after it chain from its checksum.
    commits, last_commit_frame = (1, bad) if bad_commit else (0, 0)
    later = 0
    for n in range(bad, count):
        at = WAL_HEADER + n * frame_size
        header = data[at : at + FRAME_HEADER]
        _page, commit, fs1, fs2, k1, k2 = struct.unpack(">6I", header)
        if (fs1, fs2) != (salt1, salt2):
            break
        s = _checksum(header[:8] + data[at + FRAME_HEADER : at + frame_size], big, *s)
        if s != (k1, k2):
            break  # a second fault: what follows cannot be tied to this WAL any more
        later += 1
        if commit:
            commits += 1
            last_commit_frame = n + 1
    if not later or not commits:
        return None  # only the last transaction is affected (a torn write): never acknowledged
    offset = WAL_HEADER + (bad - 1) * frame_size
    return WalDamage(path, bad, offset, valid, last_commit_frame - valid, commits)


def wal_path(database: Path) -> Path:
    return Path(f"{os.fspath(database)}-wal")
