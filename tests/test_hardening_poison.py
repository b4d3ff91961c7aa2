"""Issue 10, fault 1: one poison entry must not stop a queue.

A payload nested far too deep used to be accepted by dispatch and then broke decoding with
RecursionError: on SQLite every reserve failed once its lease ended, on the file driver no new
process could open the queue. Dispatch now refuses it; and a poison record written straight into
storage (as another program or an older version could) is dead-lettered or quarantined with the
reason, and the jobs behind it run."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from khadem_lab import (
    DriverConfig,
    FileStorageDriver,
    JobRegistry,
    QueueJob,
    SerializationError,
    Simulation,
    SQLiteDriver,
)
from khadem_lab.serialization import MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH


@dataclass
class Deep(QueueJob):
    data: Any = None
    runs: ClassVar[list[int]] = []

    async def handle(self) -> None:
        Deep.runs.append(0)


@dataclass
class Good(QueueJob):
    n: int
    runs: ClassVar[list[int]] = []

    async def handle(self) -> None:
        Good.runs.append(self.n)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


@pytest.fixture
def registry() -> JobRegistry:
    jobs = JobRegistry()
    jobs.register(Deep)
    jobs.register(Good)
    Deep.runs.clear()
    Good.runs.clear()
    return jobs


def sqlite_driver(sim: Simulation, path: Path, registry: JobRegistry) -> SQLiteDriver:
    return SQLiteDriver(
        DriverConfig(name="q", lease_time=timedelta(seconds=5)), path=path, clock=sim.clock, registry=registry
    )


def file_driver(sim: Simulation, path: Path, registry: JobRegistry) -> FileStorageDriver:
    return FileStorageDriver(
        DriverConfig(name="q", lease_time=timedelta(seconds=5)),
        storage_path=path,
        clock=sim.clock,
        registry=registry,
    )


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_dispatch_refuses_a_payload_nested_too_deep_or_too_large(
    kind: str, tmp_path: Path, registry: JobRegistry
) -> None:
    with Simulation() as sim:
        driver: Any = (
            sqlite_driver(sim, tmp_path / "q.sqlite3", registry)
            if kind == "sqlite"
            else file_driver(sim, tmp_path / "q", registry)
        )
        with pytest.raises(SerializationError) as deep:
            sim.run(driver.push(Deep(nested(980))))
        assert f"{MAX_PAYLOAD_DEPTH}" in str(deep.value) and "Deep" in str(deep.value)
        with pytest.raises(SerializationError) as deep101:
            sim.run(driver.push(Deep(nested(MAX_PAYLOAD_DEPTH + 1))))
        assert "deeper" in str(deep101.value)
        sim.run(driver.push(Deep(nested(MAX_PAYLOAD_DEPTH - 2))))  # within the limit: fine
        with pytest.raises(SerializationError) as big:
            sim.run(driver.push(Deep("x" * MAX_PAYLOAD_BYTES)))
        message = str(big.value)
        assert str(MAX_PAYLOAD_BYTES) in message or "1 MiB" in message
        assert str(MAX_PAYLOAD_BYTES + len('{"data":""}')) in message  # the size it was given
        assert sim.run(driver.size()) == 1
        sim.run(driver.dispose())


def test_a_poison_row_in_sqlite_is_dead_lettered_and_100_good_jobs_run(
    tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "q.sqlite3"
    with Simulation() as sim:
        first = sqlite_driver(sim, path, registry)
        sim.run(first.push(Good(-1)))
        sim.run(first.dispose())
        conn = sqlite3.connect(path)  # another program (or an older version) stored a poison row
        conn.execute(
            "UPDATE jobs SET type = 'Deep', payload = ? WHERE id = '1'",
            (json.dumps({"data": None})[:-5] + deep_text(990) + "}",),
        )
        conn.commit()
        conn.close()
        driver = sqlite_driver(sim, path, registry)
        sim.run(driver.push_many([Good(n) for n in range(100)]))
        for _ in range(110):
            sim.run(driver.process())
        sim.advance(seconds=60)  # past every lease: reclaim reads every reserved row
        while sim.run(driver.process()):
            pass
        assert sorted(Good.runs) == list(range(100))
        dead = sim.run(driver.dead_letters.list())
        assert [d.id for d in dead] == ["1"]
        assert "too deep" in (dead[0].error or "") or "nested" in (dead[0].error or "")
        assert sim.run(driver.size()) == 0
        sim.run(driver.dispose())


def test_a_poison_line_in_the_file_journal_is_quarantined_and_100_good_jobs_run(
    tmp_path: Path, registry: JobRegistry
) -> None:
    path = tmp_path / "q"
    with Simulation() as sim:
        first = file_driver(sim, path, registry)
        sim.run(first.push(Good(-1)))
        sim.run(first.dispose())
        journal = next(path.glob("journal-*.log"))
        row = {
            "id": "900", "type": "Deep", "queue": "default", "payload": None, "display_name": "Deep",
            "max_retries": 0, "timeout": None, "available_at": 0, "created_at": 0, "seq": 900,
            "attempts": 0, "status": "pending",
        }  # fmt: skip
        line = json.dumps({"op": "push", "jobs": [row]}).replace(
            '"payload": null', '"payload": ' + deep_text(990)
        )
        with journal.open("a") as f:
            f.write(line + "\n")
        driver = file_driver(sim, path, registry)  # used to raise RecursionError here
        sim.run(driver.push_many([Good(n) for n in range(100)]))
        while sim.run(driver.process()):
            pass
        assert sorted(Good.runs) == list(range(-1, 100))
        corrupt = list(path.glob("journal-*.log.corrupt-*"))
        assert len(corrupt) == 1 and corrupt[0].read_text().startswith('{"op": "push"')
        sim.run(driver.dispose())


def test_a_poison_job_in_the_file_snapshot_is_quarantined(tmp_path: Path, registry: JobRegistry) -> None:
    path = tmp_path / "q"
    with Simulation() as sim:
        first = file_driver(sim, path, registry)
        sim.run(first.push_many([Good(1), Good(2)]))
        sim.run(first.compact())
        sim.run(first.dispose())
        snapshot = path / "main.json"
        text = snapshot.read_text().replace('"payload":{"n":1}', '"payload":' + deep_text(990), 1)
        snapshot.write_text(text)
        driver = file_driver(sim, path, registry)
        while sim.run(driver.process()):
            pass
        assert Good.runs == [2]
        assert list(path.glob("main.json.corrupt-*"))
        sim.run(driver.dispose())
