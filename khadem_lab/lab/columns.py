"""The events of a log as numpy arrays, read straight from an EventLog's blocks: what
:mod:`khadem_lab.lab.frames` is built from (internal).

:class:`_Columns` reads each field when first needed and caches it; a frame lets a cached column
go (:meth:`_Columns.forget`) once it has made its own, so building one holds little more than the
frame. Strings stay codes into the distinct values until a frame makes its column of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..eventlog import Block, EventLog, Events
from ..events import EventKind, QueueEvent

Source = EventLog | Iterable[QueueEvent]
TZ = tzinfo | str | None

_REQUEUED = list(EventKind).index(EventKind.REQUEUED)
_NAT = np.iinfo(np.int64).min
#: Rows per slice where a temporary the length of a whole column would be large (8 MB of float64).
_SLICE = 1 << 20


def _array(part: Any, dtype: Any) -> np.ndarray:
    """A block's ``array.array`` (or part of it) as numpy, without a copy."""
    return np.frombuffer(part, dtype=part.typecode) if len(part) else np.empty(0, dtype=dtype)


class _Strings:
    """One string field of the events: ``codes`` (-1: missing) into ``values`` (object array, in
    order of first appearance)."""

    def __init__(self, codes: np.ndarray, values: np.ndarray) -> None:
        self.codes = codes
        self.values = values

    def category(self, index: np.ndarray | None = None, extra: tuple[str, ...] = ()) -> pd.Categorical:
        """The values (at ``index``) as a categorical; its categories are the values present,
        sorted (as ``pd.Categorical(values)`` makes them), then ``extra``."""
        codes = self.codes if index is None else self.codes[index]
        used = np.zeros(len(self.values), dtype=bool)
        used[codes[codes >= 0]] = True
        present = np.flatnonzero(used)
        names = self.values[present]
        order = np.argsort(names, kind="stable") if len(names) else np.empty(0, dtype=np.intp)
        new_code = np.full(len(self.values) + 1, -1, dtype=np.int64)  # the last one: missing
        new_code[present[order]] = np.arange(len(order))
        categories = [*names[order].tolist(), *(e for e in extra if e not in set(names.tolist()))]
        return pd.Categorical.from_codes(new_code[codes], categories=pd.Index(categories, dtype="str"))

    def strings(self, index: np.ndarray | None = None) -> Any:
        """The values (at ``index``) as a ``str`` array (NaN: missing), converted once per
        distinct value."""
        codes = self.codes if index is None else self.codes[index]
        distinct = pd.array(self.values, dtype="str") if len(self.values) else pd.array([], dtype="str")
        return distinct.take(codes, allow_fill=True)


def _strings(blocks: list[tuple[Block, int, int]], field: str) -> _Strings:
    """A string field over all blocks: each block's codes mapped into one table of values, written
    block by block into one int32 array (no temporary the size of the whole log)."""
    tables: list[Any] = []
    for block, _, _ in blocks:
        tables.extend(getattr(block, field + "_values"))
    if not tables:
        return _Strings(np.empty(0, dtype=np.int32), np.empty(0, dtype=object))
    table = np.empty(len(tables), dtype=object)
    table[:] = tables
    global_code, values = pd.factorize(table)  # None: -1
    global_code = global_code.astype(np.int32)
    codes = np.empty(sum(stop - start for _, start, stop in blocks), dtype=np.int32)
    offset = at = 0
    for block, start, stop in blocks:
        local = _array(getattr(block, field), np.int8)[start:stop].astype(np.intp)
        local += offset
        codes[at : at + stop - start] = global_code[local]
        offset += len(getattr(block, field + "_values"))
        at += stop - start
    return _Strings(codes, np.asarray(values, dtype=object))


class _Columns:
    """The events as arrays (one per field), read from an EventLog's blocks when first needed:
    a frame reads only the fields it uses, and nothing is kept after it is built."""

    def __init__(self, blocks: list[tuple[Block, int, int]]) -> None:
        self.blocks = blocks
        self.n = sum(stop - start for _, start, stop in blocks)

    def _numbers(self, field: str, dtype: Any) -> np.ndarray:
        parts = [_array(getattr(b, field), dtype)[start:stop] for b, start, stop in self.blocks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)

    @cached_property
    def t(self) -> np.ndarray:
        return self._numbers("time", np.float64)

    def _sparse(self, field: str) -> np.ndarray:
        """A field a block keeps only where present (positions and values): NaN elsewhere."""
        out = np.full(self.n, np.nan)
        offset = 0
        for block, start, stop in self.blocks:
            positions = _array(getattr(block, field + "_at"), np.int8).astype(np.intp)
            values = _array(getattr(block, field), np.float64)
            keep = (positions >= start) & (positions < stop)
            out[offset + positions[keep] - start] = values[keep]
            offset += stop - start
        return out

    @cached_property
    def seq(self) -> np.ndarray:
        out = np.empty(self.n, dtype=np.int64)
        at = 0
        for block, start, stop in self.blocks:  # written in place, block by block
            part = out[at : at + stop - start]
            part[:] = _array(block.seq, np.int8)[start:stop]
            part += block.seq_base
            at += stop - start
        return out

    @cached_property
    def kind(self) -> np.ndarray:
        return self._numbers("kind", np.int8)

    @cached_property
    def attempt(self) -> np.ndarray:
        """As narrow as the blocks keep it (int64 in the frames)."""
        parts = [_array(b.attempt, np.int8)[start:stop] for b, start, stop in self.blocks]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int8)

    @cached_property
    def avail(self) -> np.ndarray:
        return self._sparse("available_at")

    @cached_property
    def duration(self) -> np.ndarray:
        return self._sparse("duration")

    @cached_property
    def job(self) -> _Strings:
        jobs = _strings(self.blocks, "job_id")
        seen = np.bincount(jobs.codes, minlength=len(jobs.values)) > 0 if self.n else np.ones(0, dtype=bool)
        if not seen.all():  # a bounded log: some jobs of its first block have no event left
            codes, kept = pd.factorize(jobs.codes)
            jobs = _Strings(codes, jobs.values[kept])
        return jobs

    @property
    def job_code(self) -> np.ndarray:
        return self.job.codes

    @property
    def n_jobs(self) -> int:
        return len(self.job.values)

    @cached_property
    def first_of_job(self) -> np.ndarray:
        """The first event of each job (job_type and queue are the same on every event of a job)."""
        if not self.n:
            return np.empty(0, dtype=np.intp)
        first = np.empty(self.n_jobs, dtype=np.intp)
        first[self.job_code[::-1]] = np.arange(self.n - 1, -1, -1, dtype=np.intp)  # the first wins
        return first

    def strings(self, field: str) -> _Strings:
        return _strings(self.blocks, field)

    def forget(self, *names: str) -> None:
        """Let cached columns go: a frame built column by column no longer needs them (a million
        events: 34 MB for each float or int64 column)."""
        for name in names:
            self.__dict__.pop(name, None)

    def is_kind(self, *codes: int) -> np.ndarray:
        return np.isin(self.kind, codes) if len(codes) > 1 else self.kind == codes[0]

    @cached_property
    def attempt_keys(self) -> np.ndarray:
        """One int per (job, delivery generation, attempt): a requeue from the dead letters starts
        the attempts of a job again from 1, as a new generation."""
        keys: np.ndarray = self.job_code.astype(np.int64)
        keys <<= 32
        requeued = self.kind == _REQUEUED
        if requeued.any():
            generation = pd.Series(requeued.astype(np.int64)).groupby(self.job_code).cumsum()
            keys |= generation.to_numpy(np.int64) << 20
        keys |= self.attempt
        return keys

    def job_first(self, mask: np.ndarray, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Per job: ``values`` at the first event selected by ``mask``."""
        out = np.full(self.n_jobs, fill, dtype=np.float64)
        idx = np.flatnonzero(mask)[::-1]  # reversed: the first occurrence is written last
        out[self.job_code[idx]] = values[idx]
        return out


def _columns(source: Source | _Columns) -> _Columns:
    """The columns of ``source`` (an EventLog, its ``events``, or any iterable of events)."""
    if isinstance(source, _Columns):
        return source
    if isinstance(source, Events):
        source = source.log
    if not isinstance(source, EventLog):
        log = EventLog()
        log.extend(source)
        source = log
    return _Columns(source.blocks())


def _in_order(c: _Columns) -> bool:
    """Whether the events are in time order (and by ``seq`` at the same instant)."""
    if c.n < 2:
        return True
    t, seq = c.t, c.seq
    ahead = t[1:] > t[:-1]
    ahead |= (t[1:] == t[:-1]) & (seq[1:] > seq[:-1])
    return bool(ahead.all())


def _tz(tz: TZ) -> Any:
    return "UTC" if tz is None else tz


_UTC_MICROS = pd.DatetimeTZDtype("us", "UTC")


def _times(seconds: np.ndarray, tz: TZ) -> pd.DatetimeIndex:
    """Float epoch seconds (NaN: missing) as aware microsecond timestamps in ``tz``. The int64
    epoch microseconds become the index without a copy (``tz_localize`` would make two)."""
    ints = np.empty(len(seconds), dtype=np.int64)
    for start in range(0, len(seconds), _SLICE):  # the float temporaries: one slice at a time
        micros = np.multiply(seconds[start : start + _SLICE], 1e6, dtype=np.float64)
        np.round(micros, out=micros)
        missing = np.isnan(micros)
        micros[missing] = 0
        part = ints[start : start + _SLICE]
        part[:] = micros
        part[missing] = _NAT
    index = pd.DatetimeIndex(ints, dtype=_UTC_MICROS, copy=False)  # ints: epoch microseconds, UTC
    return index.tz_convert(_tz(tz))


def _category(values: Any, categories: Iterable[str] | None = None) -> pd.Categorical:
    """A categorical with string categories (also when empty): the given ones, or those seen."""
    if categories is not None:
        return pd.Categorical(values, categories=pd.Index(list(categories), dtype="str"))
    found = pd.Categorical(values)
    return found.set_categories(found.categories.astype("str"))
