"""Redis driver beside RQ, arq, Huey, Dramatiq and Celery (issues 4, 11); bench/results/redis.{json,md}.

    .venv/bin/python bench/redis_run.py            # 5 rounds, N = 10,000 jobs, both network modes
    .venv/bin/python bench/redis_run.py --quick    # smoke run: 2 rounds, N = 2,000

Two network modes, every entry in both, every round: ``loopback`` (straight to the server) and
``rtt`` (through ``bench/redis_proxy.py``, which adds ``--delay-ms``, default 0.5 ms, each way:
about 1 ms more per round trip, measured by PING through it and reported).

One round = one run of every entry, each in a fresh interpreter pinned to CPU 1 (``taskset -c 1``),
against one private redis-server pinned to CPU 0, the order rotated every round:

  khadem        bench/redis_throughput.py (our venv)          dispatch, dispatch_batch, worker c1/c8
  rq_simple     <peers>/rq_bench.py --many                     RQ SimpleWorker, burst
  arq_poll10ms  <peers>/arq_bench.py --poll-delay 0.01         arq Worker, burst
  huey_redis    <peers>/huey_bench.py --storage redis          RedisHuey, 1 thread worker
  dramatiq_t8   <peers>/dramatiq_bench.py --threads 8          Dramatiq RedisBroker, 8 threads
  celery_solo   <peers>/celery_bench.py                        Celery solo pool
  redis_py      <peers>/redis_py_loop.py                       N LPUSH / RPOP, plain and pipelined
  ceiling_c8    bench/redis_ceiling.py (our venv)              8 coroutines of bare round trips

``ceiling_c8`` is no queue: 8 coroutines on one ``redis.asyncio`` client built by the driver's own
connection code, each making bare round trips (EVALSHA of a script that returns a job-sized reply,
then PING), and one coroutine whose call returns 8 such replies (our worker's gathered reserve
without the queue): the most a worker with 8 slots and one round trip per job per slot (no
prefetch) can reach at that round trip time. Ratios against it: ours at concurrency 8, and 3 x the
best peer (what the issue 11 target asks of it).

The peer scripts run unchanged (same N) with the peers' venv (``--peers-python``, default
/work/.venv-peers/bin/python) and ``PEERS_REDIS_URL`` set to the private server; they FLUSHDB their
own db numbers (1-6), ours uses db 0 and a fresh queue_name per phase. The server: if nothing
answers at ``--port`` (default 6390), ``taskset -c 0 redis-server --port P --bind 127.0.0.1 --save ''
--appendonly no`` is started and stopped at the end; port 6379 is refused. Ratios are per round
against the same round's figures, then the median. After the rounds an untimed pass (``--rt-n``
jobs, 0: skip) runs every entry under ``bench/redis_roundtrips.py`` to count its Redis round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import json_records, run_json, run_meta, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("KHADEM_PEERS", "/work/shared/bench/peers"))
RESULTS = HERE / "results"
TARGET_PROCESS = 3.0  # ours process / best peer process, same round
TARGET_PREFETCH = 5.0  # ours process with prefetch=100 / best peer process (issue 11)
TARGET_CONCURRENT_DISPATCH = 5.0  # 100 coroutines dispatching / one by one, at 1 ms round trip
TARGET_BATCH = 0.5  # ours dispatch_batch / redis-py pipelined LPUSH, same round
PEER_ENTRIES = ("rq_simple", "arq_poll10ms", "huey_redis", "dramatiq_t8", "celery_solo")
CEILING = "ceiling_c8"
ENTRIES = ("khadem", *PEER_ENTRIES, "redis_py", CEILING)
PEER_ARGS = {
    "rq_simple": ["rq_bench.py", "--many"],
    "arq_poll10ms": ["arq_bench.py", "--poll-delay", "0.01"],
    "huey_redis": ["huey_bench.py", "--storage", "redis"],
    "dramatiq_t8": ["dramatiq_bench.py", "--threads", "8"],
    "celery_solo": ["celery_bench.py"],
    "redis_py": ["redis_py_loop.py"],
}

# -- delivery semantics (read in the installed sources; see bench/README.md) -----------------------
DELIVERY: dict[str, str] = {
    "khadem": "at least once: one Lua script (`take`) acks the slots' finished jobs and moves the "
    "next jobs to `reserved` under a lease (`lease_time`), a job at a time per waiting slot; a job "
    "whose worker dies runs again when the lease ends; an ack from a delivery whose lease ran out "
    "changes nothing",
    "rq_simple": "at most once by default: the worker LPOPs the job id and records it in the "
    "StartedJobRegistry; a job whose worker died is found abandoned and moved to the "
    "FailedJobRegistry, re-run only if it was enqueued with a `Retry`",
    "arq_poll10ms": 'at least once ("pessimistic execution"): the job stays in the queue\'s sorted set '
    "while it runs, guarded by an in-progress key (WATCH/MULTI, PSETEX with a timeout); if the "
    "worker dies, it runs again once that key expires",
    "huey_redis": "at most once: dequeue is RPOP/BRPOP, the message is gone from Redis before the task runs",
    "dramatiq_t8": "at least once: a Lua `fetch` moves messages into a per-consumer ack set, ack "
    "removes them; the messages of a consumer whose heartbeat stops are requeued",
    "celery_solo": "at most once with the default `acks_late=False`: the message is acked (removed "
    "from kombu's `unacked` hash) before the task runs; with `acks_late=True` at least once "
    "(visibility timeout 1 h)",
    "redis_py": "no queue semantics: LPUSH / RPOP of a 64-byte value, the ceiling",
    CEILING: "no queue: bare round trips, the ceiling of 8 slots without prefetch",
}


def entry_cmd(entry: str, n: int, peers_python: str) -> tuple[list[str], Path]:
    pin = ["taskset", "-c", "1"]
    if entry == "khadem":
        return [*pin, sys.executable, str(HERE / "redis_throughput.py"), "--n", str(n)], ROOT
    if entry == CEILING:
        return [*pin, sys.executable, str(HERE / "redis_ceiling.py"), "--n", str(n)], ROOT
    script, *args = PEER_ARGS[entry]
    return [*pin, peers_python, str(PEERS / script), "--n", str(n), *args], PEERS


def brief(rec: dict[str, Any]) -> str:
    if rec["bench"] == "khadem_redis":
        return (
            f"enqueue {rec['enqueue_rps']:,.0f}/s  process {rec['process_rps']:,.0f}/s  c8 "
            f"{rec['process_c8_rps']:,.0f}/s  batch {rec['batch_rps']:,.0f}/s  "
            f"all {rec['batch_all_rps']:,.0f}/s"
        )
    if rec["bench"] == "ceiling":
        return (
            f"8 coroutines: evalsha {rec['evalsha_rps']:,.0f}/s  ping {rec['ping_rps']:,.0f}/s  "
            f"one call of 8: {rec['gathered_rps']:,.0f} jobs/s"
        )
    if rec["bench"] == "redis_py":
        return (
            f"lpush {rec['lpush_rps']:,.0f}/s  rpop {rec['rpop_rps']:,.0f}/s  pipelined lpush "
            f"{rec['lpush_rps_pipe']:,.0f}/s  rpop {rec['rpop_rps_pipe']:,.0f}/s"
        )
    return f"enqueue {rec['enqueue_rps']:,.0f}/s  process {rec['process_rps']:,.0f}/s"


# -- the private server ------------------------------------------------------------------------
class Server:
    def __init__(self, port: int) -> None:
        if port == 6379:
            raise SystemExit("port 6379 is the shared server; the peers FLUSHDB: use a private port")
        self.port, self.pidfile, self.started = port, Path(f"/tmp/khadem-bench-redis-{port}.pid"), False

    def cli(self, *args: str) -> str:
        cmd = ["redis-cli", "-p", str(self.port), *args]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    def __enter__(self) -> Server:
        if self.cli("ping") != "PONG":
            cmd = ["taskset", "-c", "0", "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            cmd += ["--save", "", "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(self.pidfile)]
            subprocess.run(cmd, check=True, capture_output=True)
            self.started = True
            for _ in range(50):
                if self.cli("ping") == "PONG":
                    break
                time.sleep(0.1)
        return self

    def info(self) -> dict[str, Any]:
        text = self.cli("info", "server")
        fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
        pid = fields.get("process_id", "")
        affinity = subprocess.run(["taskset", "-pc", pid], capture_output=True, text=True).stdout
        return {
            "version": fields.get("redis_version"),
            "pid": pid,
            "cpus": affinity.strip().rsplit(":", 1)[-1].strip(),
            "started_by_harness": self.started,
            "config": "--save '' --appendonly no (no persistence)",
        }

    def __exit__(self, *exc: object) -> None:
        if self.started and self.pidfile.exists():
            self.cli("shutdown", "nosave")
            time.sleep(0.3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=10_000, help="jobs per run (ours and the peers)")
    p.add_argument("--rt-n", type=int, default=1000, help="jobs in the round-trip pass (0: skip)")
    p.add_argument("--port", type=int, default=6390, help="the private redis-server")
    p.add_argument("--peers-python", default="/work/.venv-peers/bin/python")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, N = 2,000")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--modes", default="loopback,rtt", help="network modes, comma-separated")
    p.add_argument("--delay-ms", type=float, default=0.5, help="added each way in the rtt mode")
    p.add_argument("--render", type=Path, help="only rewrite the tables from this redis.json")
    a = p.parse_args()
    if a.render:
        write(json.loads(a.render.read_text()), a.out)
        return
    if a.quick:
        a.rounds, a.n, a.rt_n = 2, 2000, 300
    for script, *_ in PEER_ARGS.values():
        if not (PEERS / script).exists():
            raise SystemExit(f"peer script {PEERS / script} not found (set KHADEM_PEERS)")
    if not shutil.which("taskset") or not shutil.which("redis-server"):
        raise SystemExit("needs taskset and redis-server")
    env = {**os.environ, "PEERS_REDIS_URL": f"redis://127.0.0.1:{a.port}"}
    modes = a.modes.split(",")
    urls = {"loopback": f"redis://127.0.0.1:{a.port}", "rtt": f"redis://127.0.0.1:{a.port + 1}"}

    started = time.time()
    raw: list[dict[str, Any]] = []
    round_trips: dict[str, Any] = {}
    proxy: subprocess.Popen[bytes] | None = None
    rtt: dict[str, float] = {}
    with Server(a.port) as server:
        server_info = server.info()
        print(f"redis-server {server_info}", file=sys.stderr, flush=True)
        if "rtt" in modes:
            proxy_cmd = [sys.executable, str(HERE / "redis_proxy.py"), "--listen", str(a.port + 1)]
            proxy_cmd += ["--target", f"127.0.0.1:{a.port}", "--delay-ms", str(a.delay_ms)]
            proxy = subprocess.Popen(["taskset", "-c", "0", *proxy_cmd])
            time.sleep(1)
            probe = [sys.executable, str(HERE / "redis_proxy.py"), "--probe", "500", "--listen"]
            rtt = run_json([*probe, str(a.port + 1)], HERE, env)
            rtt["loopback_rtt_ms_median"] = run_json([*probe, str(a.port)], HERE, env)["rtt_ms_median"]
            print(f"round trip through the proxy: {rtt}", file=sys.stderr, flush=True)
        try:
            for r in range(a.rounds):
                k = (r * 3) % len(ENTRIES)
                for mode in modes:
                    mode_env = {**env, "PEERS_REDIS_URL": urls[mode]}
                    for entry in ENTRIES[k:] + ENTRIES[:k]:
                        cmd, cwd = entry_cmd(entry, a.n, a.peers_python)
                        rec = run_json(cmd, cwd, mode_env)
                        rec.update(entry=entry, round=r, mode=mode)
                        raw.append(rec)
                        print(f"round {r} {mode:8s} {entry:13s} {brief(rec)}", file=sys.stderr, flush=True)
        finally:
            if proxy is not None:
                proxy.kill()
                proxy.wait()
        if a.rt_n:
            for entry in ENTRIES:
                if entry == CEILING:
                    continue  # no queue: nothing to count
                cmd, cwd = entry_cmd(entry, a.rt_n, a.peers_python)
                counter = [str(HERE / "redis_roundtrips.py"), "--n", str(a.rt_n), "--"]
                if entry == "khadem":
                    recs = json_records([*cmd, "--count-commands"], cwd, env)
                    round_trips[entry] = {"phases": recs[-1]["commands"]}
                else:
                    recs = json_records([*cmd[:4], *counter, *cmd[4:]], cwd, env)
                    round_trips[entry] = recs[-1]
                print(f"round trips {entry:13s} {json.dumps(round_trips[entry])[:200]}", file=sys.stderr)
        for db in range(7):  # leave the private server empty
            server.cli("-n", str(db), "flushdb")

    result = analyse([rec for rec in raw if rec["mode"] == modes[0]])
    result["modes"] = {mode: analyse([rec for rec in raw if rec["mode"] == mode]) for mode in modes}
    result["round_trips"] = round_trips
    result["meta"] = {
        **run_meta("redis_run.py", started),
        "rounds": a.rounds,
        "n": a.n,
        "rt_n": a.rt_n,
        "modes": modes,
        "delay_ms_each_way": a.delay_ms,
        "rtt_measured": rtt,
        "server": server_info,
        "pinning": "redis-server on CPU 0 (taskset -c 0), every client process on CPU 1 (taskset -c 1)",
        "versions": versions(raw),
    }
    result["raw"] = raw
    write(result, a.out)


def versions(raw: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in raw:
        out.update({k: v for k, v in rec.get("versions", {}).items() if k not in ("redis", "hiredis_parser")})
        key = "redis-py (ours)" if rec["entry"] == "khadem" else "redis-py (peers)"
        if rec.get("versions", {}).get("redis"):
            out[key] = rec["versions"]["redis"]
        parser = rec.get("hiredis_parser", rec.get("versions", {}).get("hiredis_parser"))
        if parser is not None:
            out["hiredis parser (ours)" if rec["entry"] == "khadem" else "hiredis parser (peers)"] = parser
    return out


OURS_FIGS = (
    "enqueue_rps",
    "process_rps",
    "process_c8_rps",
    "process_prefetch_rps",
    "enqueue_c100_rps",
    "batch_rps",
    "batch_all_rps",
)
PEER_FIGS = ("enqueue_rps", "process_rps", "process_rps_steady")
PY_FIGS = ("lpush_rps", "rpop_rps", "lpush_rps_pipe", "rpop_rps_pipe")
CEILING_FIGS = ("evalsha_rps", "ping_rps", "gathered_rps")


def analyse(raw: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["entry"], r["round"]): r for r in raw}
    rounds = sorted({r["round"] for r in raw})
    out: dict[str, Any] = {"figures": {}, "ratios": {}, "best_peer": []}
    for entry in ENTRIES:
        runs = [r for r in raw if r["entry"] == entry]
        if not runs:
            continue  # (a run made before the entry existed)
        figs = OURS_FIGS if entry == "khadem" else PY_FIGS if entry == "redis_py" else PEER_FIGS
        figs = CEILING_FIGS if entry == CEILING else figs
        out["figures"][entry] = {f: summary([r[f] for r in runs if r.get(f)]) for f in figs}
    per_round: dict[str, list[float]] = {k: [] for k in RATIO_LABELS}
    for r in rounds:
        ours, ceiling = by[("khadem", r)], by[("redis_py", r)]
        best = max(PEER_ENTRIES, key=lambda e: by[(e, r)]["process_rps"])
        best_rps = by[(best, r)]["process_rps"]
        best_enq = max(by[(e, r)]["enqueue_rps"] for e in PEER_ENTRIES)
        out["best_peer"].append({"round": r, "entry": best, "process_rps": best_rps})
        per_round["process_over_best"].append(ours["process_rps"] / best_rps)
        per_round["process_c8_over_best"].append(ours["process_c8_rps"] / best_rps)
        per_round["process_prefetch_over_best"].append(ours["process_prefetch_rps"] / best_rps)
        per_round["batch_over_pipe"].append(ours["batch_rps"] / ceiling["lpush_rps_pipe"])
        per_round["batch_all_over_pipe"].append(ours["batch_all_rps"] / ceiling["lpush_rps_pipe"])
        per_round["enqueue_over_best"].append(ours["enqueue_rps"] / best_enq)
        per_round["enqueue_over_lpush"].append(ours["enqueue_rps"] / ceiling["lpush_rps"])
        per_round["process_over_rpop"].append(ours["process_rps"] / ceiling["rpop_rps"])
        per_round["enqueue_c100_over_enqueue"].append(ours["enqueue_c100_rps"] / ours["enqueue_rps"])
        bare = by.get((CEILING, r))
        if bare is not None:
            per_round["process_c8_over_ceiling"].append(ours["process_c8_rps"] / bare["evalsha_rps"])
            per_round["best3x_over_ceiling"].append(3 * best_rps / bare["evalsha_rps"])
            per_round["process_c8_over_gathered"].append(ours["process_c8_rps"] / bare["gathered_rps"])
            per_round["best3x_over_gathered"].append(3 * best_rps / bare["gathered_rps"])
    for name, values in per_round.items():
        if not values:
            continue
        out["ratios"][name] = {**summary(values), "per_round": [round(x, 3) for x in values]}
    out["targets"] = {
        "process_3x_best_peer": out["ratios"]["process_over_best"]["median"] >= TARGET_PROCESS,
        "process_prefetch_3x_best_peer": out["ratios"]["process_prefetch_over_best"]["median"]
        >= TARGET_PROCESS,
        "batch_half_pipelined_lpush": out["ratios"]["batch_over_pipe"]["median"] >= TARGET_BATCH,
        "batch_all_half_pipelined_lpush": out["ratios"]["batch_all_over_pipe"]["median"] >= TARGET_BATCH,
        "process_c8_3x_best_peer": out["ratios"]["process_c8_over_best"]["median"] >= TARGET_PROCESS,
        "process_prefetch_5x_best_peer": out["ratios"]["process_prefetch_over_best"]["median"]
        >= TARGET_PREFETCH,
        "enqueue_c100_5x_one_by_one": out["ratios"]["enqueue_c100_over_enqueue"]["median"]
        >= TARGET_CONCURRENT_DISPATCH,
    }
    return out


RATIO_LABELS = {
    "process_over_best": "**ours process (worker, concurrency 1) / best peer process** (target >= 3)",
    "process_c8_over_best": "**ours process, concurrency 8 (no prefetch) / best peer process** (target >= 3)",
    "process_prefetch_over_best": (
        "**ours process, one worker with prefetch=100 / best peer process** (target >= 5)"
    ),
    "enqueue_c100_over_enqueue": (
        "**ours enqueue from 100 coroutines at once / one by one** (target >= 5 at 1 ms round trip)"
    ),
    "batch_over_pipe": "**ours dispatch_batch of 1,000 / redis-py pipelined LPUSH** (target >= 0.5)",
    "batch_all_over_pipe": "**ours one dispatch_batch of all N / redis-py pipelined LPUSH** (target >= 0.5)",
    "enqueue_over_best": "ours enqueue (one by one) / best peer enqueue",
    "enqueue_over_lpush": "ours enqueue / redis-py unpipelined LPUSH (1 round trip each)",
    "process_over_rpop": "ours process / redis-py unpipelined RPOP (1 round trip each)",
    "process_c8_over_ceiling": "ours process, concurrency 8 / ceiling: 8 coroutines of bare EVALSHA",
    "best3x_over_ceiling": "3 x the best peer process (the target) / ceiling: 8 coroutines of bare EVALSHA",
    "process_c8_over_gathered": "ours process, concurrency 8 / ceiling: one bare call for 8 slots",
    "best3x_over_gathered": "3 x the best peer process (the target) / ceiling: one bare call for 8 slots",
}
NAMES = {
    "khadem": "khadem_lab `RedisStorageDriver`",
    "rq_simple": "RQ `SimpleWorker` (burst)",
    "arq_poll10ms": "arq, `poll_delay=0.01`",
    "huey_redis": "Huey `RedisHuey`, 1 thread worker",
    "dramatiq_t8": "Dramatiq `RedisBroker`, 8 worker threads",
    "celery_solo": "Celery, solo pool",
    "redis_py": "redis-py LPUSH / RPOP (the ceiling)",
    CEILING: "ceiling of 8 slots: bare round trips, no queue",
}


def num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def cell(s: dict[str, float] | None, form: Any = num, bold: bool = False) -> str:
    if not s:
        return ""
    med = form(s["median"])
    return f"{'**' + med + '**' if bold else med} ({form(s['min'])}-{form(s['max'])})"


def cmd_text(entry: str, n: int) -> str:
    if entry == "khadem":
        return f"`.venv/bin/python bench/redis_throughput.py --n {n}`"
    if entry == CEILING:
        return f"`.venv/bin/python bench/redis_ceiling.py --n {n}`"
    script, *args = PEER_ARGS[entry]
    return f"`<peers>/{script} --n {n}{' ' + ' '.join(args) if args else ''}`"


def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    v, srv = meta["versions"], meta["server"]
    lines = [
        f"# Redis driver against RQ, arq, Huey, Dramatiq and Celery ({meta['started']}, git {meta['git']})",
        "",
        f"`{meta['command']}`: {meta['rounds']} rounds, N = {meta['n']:,} no-op jobs per run, order "
        f"rotated, each run a fresh interpreter; one private redis-server {srv['version']} "
        f"({srv['config']}, on CPUs {srv['cpus']}); {meta['pinning']}. Python {meta['python']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; {meta['machine']}, load average at the end {meta['loadavg_end']}; "
        f"{meta['duration_s']:.0f} s. Medians over the rounds (min-max).",
    ]
    modes = res.get("modes") or {"loopback": res}
    rtt = meta.get("rtt_measured") or {}
    for mode, m in modes.items():
        if mode == "rtt":
            title = (
                f"network round trip: {meta.get('delay_ms_each_way')} ms added each way by "
                f"bench/redis_proxy.py (PING through it: median {rtt.get('rtt_ms_median')} ms, p90 "
                f"{rtt.get('rtt_ms_p90')} ms; straight to the server {rtt.get('loopback_rtt_ms_median')} ms)"
            )
        else:
            title = "loopback (straight to the server)"
        lines += ["", f"# Mode {mode}: {title}", *section(m)]
    rt = res.get("round_trips") or {}
    if rt:
        n = meta["rt_n"]
        lines += [
            "",
            f"## Redis round trips per job (untimed pass, N = {n:,}, `bench/redis_roundtrips.py`)",
            "",
            "Client side: every write to the server (a command, a script call, a pipeline) is one "
            "round trip. Ours per phase; the server side (`INFO commandstats` deltas) also counts the "
            "commands run inside our Lua scripts.",
            "",
            "| ours, phase | round trips per job | by command | server commands per job |",
            "|---|---:|---|---:|",
        ]
        for phase, c in rt["khadem"]["phases"].items():
            by_cmd = ", ".join(f"{k} {val}" for k, val in c["round_trips"].items())
            lines.append(
                f"| {phase} | {c['round_trips_per_job']:.2f} | {by_cmd} | "
                f"{c['server_commands_per_job']:.2f} |"
            )
        lines += [
            "",
            "| peer, whole script (enqueue one by one + drain; set-up and FLUSHDB included) "
            "| round trips per job | top commands |",
            "|---|---:|---|",
        ]
        for entry in (*PEER_ENTRIES, "redis_py"):
            c = rt[entry]
            top = ", ".join(f"{k} {val}" for k, val in list(c["by_command"].items())[:5])
            lines.append(f"| {entry} | {c['per_job']:.2f} | {top} |")
        ours = rt["khadem"]["phases"]
        lines += [
            "",
            f"Ours, the comparable whole: enqueue + process = "
            f"{ours['enqueue']['round_trips_per_job'] + ours['process']['round_trips_per_job']:.2f} per job. "
            "(rq_simple's script also runs its `enqueue_many` phase, redis_py's both its plain and its "
            "pipelined loops.)",
        ]
    lines += [
        "",
        "## Delivery semantics",
        "",
        "| entry | command | delivery |",
        "|---|---|---|",
    ]
    for entry in ENTRIES:
        if entry in res["figures"]:
            lines.append(f"| {NAMES[entry]} | {cmd_text(entry, meta['n'])} | {DELIVERY[entry]} |")
    return "\n".join(lines) + "\n"


def section(res: dict[str, Any]) -> list[str]:
    """One network mode: the throughput table, the ratios and the targets."""
    figs, ratios = res["figures"], res["ratios"]
    lines = [
        "",
        "## Throughput, jobs/s (redis-py: operations/s)",
        "",
        "| entry | enqueue, one by one | process: one worker drains N | process, steady | "
        "dispatch_batch x1,000 | dispatch_batch x N | process, concurrency 8 | process, prefetch 100 "
        "| enqueue, 100 coroutines at once |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    k = figs["khadem"]
    lines.append(
        f"| {NAMES['khadem']} | {cell(k['enqueue_rps'])} | {cell(k['process_rps'], bold=True)} | | "
        f"{cell(k['batch_rps'], bold=True)} | {cell(k['batch_all_rps'])} | {cell(k['process_c8_rps'])} | "
        f"{cell(k['process_prefetch_rps'], bold=True)} | {cell(k.get('enqueue_c100_rps'), bold=True)} |"
    )
    for entry in PEER_ENTRIES:
        s = figs[entry]
        lines.append(
            f"| {NAMES[entry]} | {cell(s['enqueue_rps'])} | {cell(s['process_rps'])} | "
            f"{cell(s.get('process_rps_steady'))} | | | | | |"
        )
    py = figs["redis_py"]
    lines += [
        f"| redis-py, one LPUSH / RPOP per round trip | {cell(py['lpush_rps'])} | {cell(py['rpop_rps'])} "
        "(RPOP) | | | | | | |",
        f"| redis-py, pipelines of 100 (`transaction=False`) | {cell(py['lpush_rps_pipe'], bold=True)} "
        f"| {cell(py['rpop_rps_pipe'])} (RPOP) | | | | | | |",
    ]
    c = figs.get(CEILING)
    if c:
        lines += [
            "",
            "Ceiling of a worker with 8 slots and one round trip per job per slot, no queue "
            "(`bench/redis_ceiling.py`, round trips/s; the last column jobs/s):",
            "",
            "| 8 coroutines, bare EVALSHA (job-sized reply) | 8 coroutines, PING | one coroutine, one "
            "bare EVALSHA for 8 slots (8 replies) |",
            "|---:|---:|---:|",
            f"| {cell(c['evalsha_rps'], bold=True)} | {cell(c['ping_rps'])} | {cell(c['gathered_rps'])} |",
        ]
    lines += [
        "",
        "Best peer per round (process): "
        + ", ".join(f"{b['entry']} {b['process_rps']:,.0f}/s" for b in res["best_peer"])
        + ".",
        "",
        "## Ratios (per round, same round's figures; median (min-max))",
        "",
        "| ratio | median (min-max) | per round |",
        "|---|---:|---|",
    ]
    for name, label in RATIO_LABELS.items():
        if name not in ratios:
            continue
        r = ratios[name]
        lines.append(
            f"| {label} | {cell(r, lambda x: f'{x:.2f}')} | {', '.join(f'{x:.2f}' for x in r['per_round'])} |"
        )
    t = res["targets"]
    lines += [
        "",
        "## Targets",
        "",
        "* process >= 3 x the best peer's process, same run: one worker taking jobs one by one "
        f"**{'met' if t['process_3x_best_peer'] else 'missed'}** "
        f"(median {ratios['process_over_best']['median']:.2f} x); one worker with prefetch=100 "
        f"**{'met' if t['process_prefetch_3x_best_peer'] else 'missed'}** "
        f"(median {ratios['process_prefetch_over_best']['median']:.2f} x).",
        f"* batch dispatch >= half the pipelined redis-py LPUSH rate: dispatch_batch of 1,000 "
        f"**{'met' if t['batch_half_pipelined_lpush'] else 'missed'}** "
        f"({ratios['batch_over_pipe']['median']:.2f} x); one dispatch_batch of all N "
        f"**{'met' if t['batch_all_half_pipelined_lpush'] else 'missed'}** "
        f"({ratios['batch_all_over_pipe']['median']:.2f} x).",
        "* issue 11: the default worker (no prefetch) at concurrency 8 >= 3 x the best peer "
        f"**{'met' if t.get('process_c8_3x_best_peer') else 'missed'}** "
        f"({ratios['process_c8_over_best']['median']:.2f} x); prefetch=100 >= 5 x the best peer "
        f"**{'met' if t.get('process_prefetch_5x_best_peer') else 'missed'}** "
        f"({ratios['process_prefetch_over_best']['median']:.2f} x); 100 coroutines dispatching >= 5 x "
        f"one by one **{'met' if t.get('enqueue_c100_5x_one_by_one') else 'missed'}** "
        f"({ratios['enqueue_c100_over_enqueue']['median']:.2f} x; the target is for the rtt mode).",
    ]
    if "best3x_over_ceiling" in ratios:
        lines.append(
            "* the ceiling of concurrency 8 without prefetch (bare round trips, no queue): 3 x the best "
            f"peer is {ratios['best3x_over_ceiling']['median']:.2f} x what 8 coroutines of bare EVALSHA "
            f"reach and {ratios['best3x_over_gathered']['median']:.2f} x what one bare call for the 8 "
            f"slots reaches; ours at concurrency 8 reaches "
            f"{ratios['process_c8_over_ceiling']['median']:.2f} x "
            f"and {ratios['process_c8_over_gathered']['median']:.2f} x of them."
        )
    return lines


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "redis.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (out / "redis.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
