"""Durable drivers side by side with persist-queue and Huey (issue 3); bench/results/durable.{json,md}.

    .venv/bin/python bench/durable_run.py            # 5 rounds, N = 10,000 jobs, ~8 minutes
    .venv/bin/python bench/durable_run.py --quick    # smoke run: 2 rounds, N = 2,000, short probe

One round = one run of every entry, each in a fresh interpreter, the order rotated every round:

  sqlite/MODE   bench/durable_throughput.py --driver sqlite --fsync MODE   MODE: dispatch, always, never
  file/MODE     bench/durable_throughput.py --driver file --fsync MODE     the modes the driver has
  pq_sqlite     <peers>/persistqueue_bench.py --kind sqlite                persist-queue SQLiteQueue
  pq_file       <peers>/persistqueue_bench.py --kind file                  persist-queue file Queue
  huey_sqlite   <peers>/huey_bench.py --storage sqlite                     SqliteHuey
  huey_file     <peers>/huey_bench.py --storage file                       FileHuey
  probe         bench/fsync_probe.py                                       this disk's flush latency

The peer scripts run unchanged (same N). The file driver is included when
``QueueFactory.driver_types()`` lists "file"; its modes are its ``FSYNC_MODES``. Ratios are
computed per round against the same round's peer figures, then the median is taken. After the
rounds, an untimed pass (``--strace-n`` jobs, skip with ``--strace-n 0``) runs every entry under
``strace -f -c -e trace=fsync,fdatasync`` to count the flushes each one really does per job.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import run_json, run_meta, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("KHADEM_PEERS", "/work/shared/bench/peers"))
RESULTS = HERE / "results"
OUR_MODES = ("dispatch", "always", "never")
TARGET_PUT_GET = 3.0  # ours enqueue+process / persist-queue SQLite put+get
TARGET_PROCESS = 1.0  # ours process / Huey SQLite process (strictly above)

# -- durability settings (read from the installed sources; see bench/README.md) ------------------
PEER_INFO: dict[str, dict[str, str]] = {
    "pq_sqlite": {
        "name": "persist-queue `SQLiteQueue(path, auto_commit=True)`",
        "journal": "WAL (`PRAGMA journal_mode=WAL` in `sqlbase.py`)",
        "flush": "synchronous not set, so SQLite's default FULL (2): the WAL is flushed at every "
        "commit; put = 1 commit, get = SELECT + DELETE in 1 commit",
        "delivery": "at most once: `get()` deletes the row before the caller handles the item",
        "equal_ref": "reference",
    },
    "pq_file": {
        "name": "persist-queue file `Queue(path)` (chunksize 100, autosave=False)",
        "journal": "append-only chunk files; an `info` file (head/tail) replaced by rename",
        "flush": "put: `write` + `flush()` to the OS; `os.fsync` only when a 100-item chunk is full; "
        "the info file (rewritten at every put and task_done) is never fsynced",
        "delivery": "at least once if `task_done()` follows the handling (the read position is saved "
        "at task_done; the script calls it right after `get`)",
        "equal_ref": "weaker: a power loss can lose up to a chunk of puts",
    },
    "huey_sqlite": {
        "name": "Huey `SqliteHuey('bench', filename=...)` (defaults: journal_mode='wal', fsync=None)",
        "journal": "WAL",
        "flush": "`fsync=None` leaves synchronous unset, so SQLite's default FULL (2): enqueue = 1 "
        "flushed commit, dequeue (BEGIN EXCLUSIVE; SELECT; DELETE; COMMIT) = 1 flushed commit",
        "delivery": "at most once: `dequeue()` deletes the row before the consumer runs the task",
        "equal_ref": "reference",
    },
    "huey_file": {
        "name": "Huey `FileHuey('bench', path=...)` (levels=2, flock)",
        "journal": "one file per message, written in place",
        "flush": "no fsync anywhere (enqueue: open/write/close; dequeue: rename, read, unlink)",
        "delivery": "at most once: the file is unlinked before the task runs",
        "equal_ref": "weaker: nothing is flushed",
    },
}
OUR_INFO: dict[tuple[str, str], dict[str, str]] = {
    ("sqlite", "dispatch"): {
        "flush": "dispatch commit with synchronous=FULL (flushed before `dispatch` returns); reserve "
        "and ack commits with NORMAL (not flushed: a process crash loses none of them, a power loss "
        "may undo the last few, which delivers a job again, never loses one)",
        "equal": "yes: every accepted job flushed before the call returns, as the peers do; no job is "
        "ever lost (the peers' at-most-once get/dequeue loses a job taken when a crash comes); "
        "weaker on one point: after a power loss a job finished just before may run again",
        "ge": "yes",
    },
    ("sqlite", "always"): {
        "flush": "every commit synchronous=FULL: dispatch, reserve and ack each flushed before returning",
        "equal": "stronger on every count (the peers flush 2 commits per job, this mode 3)",
        "ge": "yes",
    },
    ("sqlite", "never"): {
        "flush": "synchronous=NORMAL for every commit: nothing flushed by us (WAL checkpoints only); "
        "safe against a process crash, not against a power loss",
        "equal": "no: weaker than the SQLite peers (no flush per enqueue); like FileHuey / pq file",
        "ge": "no",
    },
    ("file", "dispatch"): {
        "flush": "the dispatch's journal line `os.fsync`ed before `dispatch` returns; reserve, ack and "
        "retry lines not flushed one by one (a later flush takes them along): a process crash loses "
        "nothing, a power loss may undo the last few, which runs a job again, never loses one",
        "equal": "yes, as sqlite/dispatch: every accepted job flushed before the call returns; no job "
        "is ever lost; after a power loss a job finished just before may run again",
        "ge": "yes",
    },
    ("file", "always"): {
        "flush": "each operation (push, reserve, ack) is one journal line, `os.fsync`ed before the "
        "call returns; snapshots written to a temp file, fsynced, renamed",
        "equal": "stronger on every count (3 flushes per job, at least once)",
        "ge": "yes",
    },
    ("file", "never"): {
        "flush": "journal lines left to the OS (no fsync); snapshots still fsynced: safe against a "
        "process crash, a power loss can lose the last few seconds of operations",
        "equal": "no: weaker than the SQLite peers; like FileHuey / pq file",
        "ge": "no",
    },
}
OUR_DELIVERY = (
    "at least once: a reserved job has a lease; if its worker dies it runs again after `lease_time`"
)


def file_modes() -> tuple[list[str], str]:
    """The file driver's modes, or none with the reason it is skipped."""
    sys.path.insert(0, str(ROOT))
    from khadem_lab.drivers.factory import QueueFactory

    if "file" not in QueueFactory.driver_types():
        return [], "`QueueFactory.driver_types()` has no 'file': file driver skipped"
    from khadem_lab.drivers import file as file_driver

    modes = list(getattr(file_driver, "FSYNC_MODES", ("always", "never")))
    missing = [m for m in OUR_MODES if m not in modes]
    note = f"The file driver has fsync modes {modes}"
    if missing:
        note += f"; {', '.join(repr(m) for m in missing)} not offered by it, so not run"
    return [m for m in OUR_MODES if m in modes] + [m for m in modes if m not in OUR_MODES], note


def entry_cmd(entry: str, n: int, probe_k: int, *, batch: int = 100) -> list[str]:
    py = sys.executable
    if "/" in entry:
        driver, mode = entry.split("/")
        return [
            py,
            str(HERE / "durable_throughput.py"),
            *("--driver", driver, "--fsync", mode, "--n", str(n), "--batch", str(batch)),
        ]
    if entry == "probe":
        return [py, str(HERE / "fsync_probe.py"), "--k", str(probe_k)]
    peer, kind = entry.split("_")
    if peer == "pq":
        return [py, str(PEERS / "persistqueue_bench.py"), "--n", str(n), "--kind", kind]
    return [py, str(PEERS / "huey_bench.py"), "--n", str(n), "--storage", kind]


def brief(rec: dict[str, Any]) -> str:
    if rec["bench"] == "fsync_probe":
        return (
            f"fsync {rec['fsync']['median_us']:.0f} us  WAL FULL commit {rec['wal_full']['median_us']:.0f} us"
            f"  NORMAL {rec['wal_normal']['median_us']:.0f} us"
        )
    if rec["bench"] == "persistqueue":
        return (
            f"put {rec['put_rps']:,.0f}/s  get {rec['get_rps']:,.0f}/s  put+get {rec['put_get_rps']:,.0f}/s"
        )
    if rec["bench"] == "huey":
        return f"enqueue {rec['enqueue_rps']:,.0f}/s  process {rec['process_rps']:,.0f}/s"
    return (
        f"enqueue {rec['enqueue_rps']:,.0f}/s  process {rec['process_rps']:,.0f}/s  "
        f"enqueue+process {rec['enqueue_process_rps']:,.0f}/s  batch {rec['batch_enqueue_rps']:,.0f}/s"
    )


def count_flushes(entry: str, n: int, scratch: Path) -> dict[str, Any]:
    """Run one entry under strace (untimed); flush system calls per job. Ours: phase A only."""
    out = scratch / f"strace-{entry.replace('/', '-')}.txt"
    cmd = entry_cmd(entry, n, 0, batch=0)
    strace = ["strace", "-f", "-c", "-o", str(out), "-e", "trace=fsync,fdatasync,sync_file_range"]
    run_json(strace + cmd, PEERS if entry.startswith(("pq_", "huey_")) else ROOT)
    calls = {}
    for line in out.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return {"n": n, "calls": calls, "per_job": round(sum(calls.values()) / n, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=10_000, help="jobs per run (ours and the peers)")
    p.add_argument("--probe-k", type=int, default=2000, help="flushes per fsync probe")
    p.add_argument("--strace-n", type=int, default=1000, help="jobs in the strace pass (0: skip)")
    p.add_argument("--no-file", action="store_true", help="skip our file driver")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, N = 2,000")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--render", type=Path, help="only rewrite the tables from this durable.json")
    a = p.parse_args()
    if a.render:
        result = json.loads(a.render.read_text())
        write(result, list(result["ours"]), a.out)
        return
    if a.quick:
        a.rounds, a.n, a.probe_k, a.strace_n = 2, 2000, 500, 300
    for script in ("persistqueue_bench.py", "huey_bench.py"):
        if not (PEERS / script).exists():
            raise SystemExit(f"peer script {PEERS / script} not found (set KHADEM_PEERS)")
    modes, file_note = file_modes() if not a.no_file else ([], "file driver skipped (--no-file)")
    ours = [f"sqlite/{m}" for m in OUR_MODES] + [f"file/{m}" for m in modes]
    peers = ["pq_sqlite", "pq_file", "huey_sqlite", "huey_file"]
    entries = ours + peers + ["probe"]
    print(file_note, file=sys.stderr, flush=True)

    started = time.time()
    hashes = source_hashes()
    raw: list[dict[str, Any]] = []
    for r in range(a.rounds):
        k = (r * 3) % len(entries)  # rotate by 3: each round a different first entry and neighbours
        for entry in entries[k:] + entries[:k]:
            cwd = PEERS if entry in peers else ROOT
            rec = run_json(entry_cmd(entry, a.n, a.probe_k), cwd)
            rec.update(entry=entry, round=r)
            raw.append(rec)
            print(f"round {r} {entry:16s} {brief(rec)}", file=sys.stderr, flush=True)

    flushes: dict[str, Any] = {}
    if a.strace_n and shutil.which("strace"):
        scratch = Path(tempfile.mkdtemp(prefix="khadem-strace-"))
        try:
            for entry in ours + peers:
                flushes[entry] = count_flushes(entry, a.strace_n, scratch)
                print(f"strace {entry:16s} {flushes[entry]}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    result = analyse(raw, ours, peers)
    result["flushes"] = flushes
    changed = sorted(k for k, v in source_hashes().items() if hashes.get(k) != v)
    result["meta"] = {
        **run_meta("durable_run.py", started),
        "rounds": a.rounds,
        "n": a.n,
        "probe_k": a.probe_k,
        "file_note": file_note,
        "driver_sources": hashes,
        "driver_sources_changed_during_run": changed,
        "versions": {
            "persist-queue": next(
                (r["versions"]["persist-queue"] for r in raw if r["entry"] == "pq_sqlite"), None
            ),
            "huey": next((r["versions"]["huey"] for r in raw if r["entry"] == "huey_sqlite"), None),
            "sqlite": next((r["sqlite_version"] for r in raw if r["entry"] == "probe"), None),
        },
    }
    result["raw"] = raw
    write(result, ours, a.out)


def write(result: dict[str, Any], ours: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "durable.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result, ours)
    (out / "durable.md").write_text(table)
    print(table)


def source_hashes() -> dict[str, str]:
    """sha256 (first 12 hex digits) of the driver sources: a change during the run is reported."""
    drivers = ROOT / "khadem_lab" / "drivers"
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in sorted(drivers.glob("*.py"))}


OUR_FIGURES = [
    "enqueue_rps",
    "process_rps",
    "enqueue_process_rps",
    "batch_enqueue_rps",
    "batch_enqueue_process_rps",
]
# (name, our figure, peer entry, peer figure)
RATIOS = [
    ("ep_over_pq_sqlite", "enqueue_process_rps", "pq_sqlite", "put_get_rps"),
    ("process_over_huey_sqlite", "process_rps", "huey_sqlite", "process_rps"),
    ("batch_ep_over_pq_sqlite", "batch_enqueue_process_rps", "pq_sqlite", "put_get_rps"),
    ("enqueue_over_huey_sqlite", "enqueue_rps", "huey_sqlite", "enqueue_rps"),
    ("ep_over_pq_file", "enqueue_process_rps", "pq_file", "put_get_rps"),
    ("process_over_huey_file", "process_rps", "huey_file", "process_rps"),
]
PROBES = ["fsync", "fdatasync", "wal_full", "wal_normal", "wal_default"]


def analyse(raw: list[dict[str, Any]], ours: list[str], peers: list[str]) -> dict[str, Any]:
    by = {(r["entry"], r["round"]): r for r in raw}
    rounds = sorted({r["round"] for r in raw})
    out: dict[str, Any] = {"ours": {}, "peers": {}, "ratios": {}, "probe": {}}
    for entry in ours:
        runs = [r for r in raw if r["entry"] == entry]
        out["ours"][entry] = {f: summary([r[f] for r in runs]) for f in OUR_FIGURES}
    for entry in peers:
        runs = [r for r in raw if r["entry"] == entry]
        figs = (
            ["put_rps", "get_rps", "put_get_rps"]
            if entry.startswith("pq")
            else ["enqueue_rps", "process_rps"]
        )
        out["peers"][entry] = {f: summary([r[f] for r in runs]) for f in figs}
    for entry in ours:
        ratios: dict[str, Any] = {}
        for name, ours_fig, peer, peer_fig in RATIOS:
            per_round = [
                by[(entry, r)][ours_fig] / by[(peer, r)][peer_fig]
                for r in rounds
                if (entry, r) in by and (peer, r) in by
            ]
            ratios[name] = {**summary(per_round), "per_round": [round(x, 3) for x in per_round]}
        out["ratios"][entry] = ratios
    probes = [r for r in raw if r["entry"] == "probe"]
    for name in PROBES:
        out["probe"][name] = {
            key: summary([r[name][key] for r in probes]) for key in ("median_us", "p90_us", "rate_per_s")
        }
    out["probe"]["default_synchronous"] = probes[0]["default_synchronous"] if probes else None
    targets = {}
    for entry in ours:
        driver, mode = entry.split("/")
        ratio = out["ratios"][entry]
        targets[entry] = {
            "put_get_3x": ratio["ep_over_pq_sqlite"]["median"] >= TARGET_PUT_GET,
            "process_above_huey": ratio["process_over_huey_sqlite"]["median"] > TARGET_PROCESS,
            "batch_put_get_3x": ratio["batch_ep_over_pq_sqlite"]["median"] >= TARGET_PUT_GET,
            "durability_ge_peers": OUR_INFO.get((driver, mode), {}).get("ge", "see the driver"),
        }
    out["targets"] = targets
    return out


def num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def cell(s: dict[str, float], form: Any = num, bold: bool = False) -> str:
    med = form(s["median"])
    return f"{'**' + med + '**' if bold else med} ({form(s['min'])}-{form(s['max'])})"


def ratio_cell(s: dict[str, float], target: float | None = None, strict: bool = False) -> str:
    def form(x: float) -> str:
        return f"{x:.2f}"

    if target is None:
        return cell(s, form)
    ok = s["median"] > target if strict else s["median"] >= target
    return cell(s, form, bold=True) + (" met" if ok else " missed")


def markdown(res: dict[str, Any], ours: list[str]) -> str:
    meta, probe = res["meta"], res["probe"]
    pq, hs = res["peers"]["pq_sqlite"], res["peers"]["huey_sqlite"]
    lines = [
        f"# Durable drivers against persist-queue and Huey ({meta['started']}, git {meta['git']})",
        "",
        f"`{meta['command']}`: {meta['rounds']} rounds, N = {meta['n']:,} no-op jobs per run, order "
        f"rotated, each run a fresh interpreter and a fresh temp directory (ext4); Python "
        f"{meta['python']}, SQLite {meta['versions']['sqlite']}, persist-queue "
        f"{meta['versions']['persist-queue']}, huey {meta['versions']['huey']}; {meta['machine']}, "
        f"load average at the end {meta['loadavg_end']}; {meta['duration_s']:.0f} s. "
        f"Medians over the rounds (min-max). {meta['file_note']}.",
        "",
        "Driver sources changed during the run: "
        + (", ".join(meta.get("driver_sources_changed_during_run", [])) or "none")
        + ".",
        "",
        "## This disk's flush latency (bench/fsync_probe.py, same rounds)",
        "",
        "| probe | latency median, us | p90, us | rate, per s |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "fsync": "append 64 B + `os.fsync`",
        "fdatasync": "append 64 B + `os.fdatasync`",
        "wal_full": "SQLite WAL commit (1 INSERT), synchronous=FULL",
        "wal_normal": "SQLite WAL commit (1 INSERT), synchronous=NORMAL",
        "wal_default": "SQLite WAL commit, synchronous not set (what the peers use)",
    }
    for name in PROBES:
        s = probe[name]
        lines.append(
            f"| {labels[name]} | {cell(s['median_us'])} | {cell(s['p90_us'])} | {cell(s['rate_per_s'])} |"
        )
    ds = probe["default_synchronous"]
    ceiling = probe["wal_full"]["rate_per_s"]["median"]
    lines += [
        "",
        f"`PRAGMA synchronous` of a fresh connection: {ds['rollback_journal']} without WAL, {ds['wal']} "
        "with WAL (2 = FULL). A queue that flushes every enqueue cannot enqueue one by one faster than "
        f"the flush rate: about {ceiling:,.0f} SQLite WAL commits/s and "
        f"{probe['fsync']['rate_per_s']['median']:,.0f} `os.fsync`/s here. 3 x persist-queue's "
        f"put+get is {3 * pq['put_get_rps']['median']:,.0f} jobs/s: a budget of "
        f"{1e6 / (3 * pq['put_get_rps']['median']):.0f} us per job for its enqueue *and* its "
        f"processing, against a median {probe['wal_full']['median_us']['median']:.0f} us "
        f"(p90 {probe['wal_full']['p90_us']['median']:.0f} us) for the one flushed commit of the "
        "enqueue alone.",
        "",
        "## Throughput, jobs/s",
        "",
        "| entry | enqueue (put) | process (get) | enqueue + process (put + get) | dispatch_batch x100 "
        "| dispatch_batch + process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for entry in ours:
        s = res["ours"][entry]
        lines.append(
            f"| khadem_lab {entry} | {cell(s['enqueue_rps'])} | {cell(s['process_rps'])} | "
            f"{cell(s['enqueue_process_rps'])} | {cell(s['batch_enqueue_rps'])} | "
            f"{cell(s['batch_enqueue_process_rps'])} |"
        )
    for entry in ("pq_sqlite", "pq_file"):
        s = res["peers"][entry]
        lines.append(
            f"| {entry} | {cell(s['put_rps'])} | {cell(s['get_rps'])} | {cell(s['put_get_rps'])} | | |"
        )
    for entry in ("huey_sqlite", "huey_file"):
        s = res["peers"][entry]
        lines.append(f"| {entry} | {cell(s['enqueue_rps'])} | {cell(s['process_rps'])} | | | |")
    lines += [
        "",
        "## Ratios (per round against the same round's peer, median (min-max))",
        "",
        f"Targets: enqueue+process >= {TARGET_PUT_GET:g} x persist-queue SQLite put+get "
        f"(median {pq['put_get_rps']['median']:,.0f}/s), and process > Huey SQLite process "
        f"(median {hs['process_rps']['median']:,.0f}/s), at equal or stronger durability.",
        "",
        "| entry | enqueue+process / pq_sqlite put+get (>= 3) | process / huey_sqlite process (> 1) "
        "| batch+process / pq_sqlite put+get | enqueue / huey_sqlite enqueue "
        "| enqueue+process / pq_file put+get | process / huey_file process | durability >= SQLite peers |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in ours:
        r = res["ratios"][entry]
        t = res["targets"][entry]
        lines.append(
            f"| {entry} | {ratio_cell(r['ep_over_pq_sqlite'], TARGET_PUT_GET)} | "
            f"{ratio_cell(r['process_over_huey_sqlite'], TARGET_PROCESS, strict=True)} | "
            f"{ratio_cell(r['batch_ep_over_pq_sqlite'])} | {ratio_cell(r['enqueue_over_huey_sqlite'])} | "
            f"{ratio_cell(r['ep_over_pq_file'])} | {ratio_cell(r['process_over_huey_file'])} | "
            f"{t['durability_ge_peers']} |"
        )
    lines += [
        "",
        "## Durability of each entry",
        "",
        "| entry | journal | flushes (fsync / fdatasync) | flush calls per job, strace | delivery |",
        "|---|---|---|---:|---|",
    ]
    flushes = res.get("flushes", {})

    def per_job(entry: str) -> str:
        f = flushes.get(entry)
        return f"{f['per_job']:.2f}" if f else "n/a"

    for entry in ours:
        driver, mode = entry.split("/")
        info = OUR_INFO.get((driver, mode), {"flush": "see the driver's docstring"})
        journal = "WAL" if driver == "sqlite" else "append-only journal + snapshot"
        lines.append(f"| {entry} | {journal} | {info['flush']} | {per_job(entry)} | {OUR_DELIVERY} |")
    for entry, info in PEER_INFO.items():
        lines.append(
            f"| {entry}: {info['name']} | {info['journal']} | {info['flush']} | {per_job(entry)} | "
            f"{info['delivery']} |"
        )
    if flushes:
        n = next(iter(flushes.values()))["n"]
        lines += [
            "",
            f"Flush calls per job: `strace -f -c -e trace=fsync,fdatasync,sync_file_range` over a whole "
            f"untimed run of N = {n:,} (ours: dispatch one by one + worker, no batch phase; peers: their "
            "script as is), divided by N; includes set-up.",
        ]
    lines += ["", "## Targets", ""]
    for entry in ours:
        t = res["targets"][entry]
        driver, mode = entry.split("/")
        equal = OUR_INFO.get((driver, mode), {}).get("equal", "see the driver's docstring")
        lines.append(
            f"* {entry}: 3 x put+get **{'met' if t['put_get_3x'] else 'missed'}**, process > Huey "
            f"**{'met' if t['process_above_huey'] else 'missed'}** (with dispatch_batch: 3 x put+get "
            f"{'met' if t['batch_put_get_3x'] else 'missed'}); durability vs the SQLite peers: {equal}."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
