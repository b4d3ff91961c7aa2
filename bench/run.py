"""Run every benchmark in rounds, side by side with SimPy; write bench/results/latest.{json,md}.

    .venv/bin/python bench/run.py                 # 5 rounds of 100k + the long M/M/c runs
    .venv/bin/python bench/run.py --quick         # smoke run: 2 rounds of 10k, short long-run
    .venv/bin/python bench/run.py --rounds 3 --long-n 0     # skip the long runs

One round = one run of each entry, each in a fresh interpreter (imports and start-up are never
timed; every script times itself with ``time.perf_counter()`` and prints one JSON line). The order
of the entries is rotated every round, so no entry always runs first or right after another.
Entries:

  memory   bench/memory_throughput.py --n N            real clock, no-op jobs
  mmc      bench/mmc.py --n N --seed R                 M/M/c through the queue on virtual time
  simpy    <peers>/simpy_mmc.py --n N --seed R         the same model in SimPy (same seed R)
  floor    bench/asyncio_floor.py --n N --seed R       the same model in bare asyncio on our loop

R = round number + 1, so round r of ``mmc`` and ``simpy`` use the same seed. After the rounds, the
long M/M/c runs (``--long-n`` customers for each of ``--long-seeds``, ours then SimPy's) check that
our Wq converges to Erlang C. Figures are medians over the rounds; "ours / SimPy" is the median of
the per-round ratios of wall times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from erlang import mean_ci95, mmc_wq
from harness import run_json, run_meta, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = Path(os.environ.get("KHADEM_PEERS", "/work/shared/bench/peers"))
RESULTS = HERE / "results"

C, RHO, MU = 4, 0.9, 1.0
LAMBDA = RHO * C * MU
WQ_ERLANG = mmc_wq(LAMBDA, MU, C)
TARGET_RPS = 50_000
TARGET_RATIO = 1.5  # issue 13 (it was 3 before the loop's hot path was streamlined)
TARGET_WQ = 0.05


def entry_cmd(entry: str, n: int, seed: int) -> list[str]:
    py = sys.executable
    if entry == "memory":
        return [py, str(HERE / "memory_throughput.py"), "--n", str(n)]
    if entry == "mmc":
        return [py, str(HERE / "mmc.py"), "--n", str(n), "--seed", str(seed)]
    if entry == "simpy":
        return [py, str(PEERS / "simpy_mmc.py"), "--n", str(n), "--seed", str(seed)]
    if entry == "floor":
        return [py, str(HERE / "asyncio_floor.py"), "--n", str(n), "--seed", str(seed)]
    raise ValueError(entry)


def row(label: str, stats: dict[str, float], form: Any, *, bold: bool = False) -> str:
    """One markdown table row: label | median | min - max, each value formatted by ``form``
    (a format string or a function)."""
    show = form if callable(form) else form.format
    median = f"**{show(stats['median'])}**" if bold else show(stats["median"])
    return f"| {label} | {median} | {show(stats['min'])} - {show(stats['max'])} |"


def fmt(x: float, digits: int = 3) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=100_000, help="jobs for the throughput run")
    p.add_argument("--mmc-n", type=int, default=100_000, help="customers per M/M/c round")
    p.add_argument("--long-n", type=int, default=1_000_000, help="customers per long M/M/c run (0: skip)")
    p.add_argument("--long-seeds", default="11,12", help="seeds of the long runs")
    p.add_argument("--no-simpy", action="store_true", help="skip the SimPy peer")
    p.add_argument("--no-floor", action="store_true", help="skip the bare-asyncio floor")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 10k jobs, 100k long run")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    if a.quick:
        a.rounds, a.n, a.mmc_n, a.long_n, a.long_seeds = 2, 10_000, 10_000, 100_000, "11"
    entries = ["memory", "mmc"] + ([] if a.no_simpy else ["simpy"]) + ([] if a.no_floor else ["floor"])
    if not a.no_simpy and not (PEERS / "simpy_mmc.py").exists():
        raise SystemExit(f"SimPy peer not found at {PEERS} (set KHADEM_PEERS or pass --no-simpy)")

    started = time.time()
    raw: list[dict[str, Any]] = []
    for r in range(a.rounds):
        k = r % len(entries)
        for entry in entries[k:] + entries[:k]:
            n = a.n if entry == "memory" else a.mmc_n
            rec = run_json(entry_cmd(entry, n, seed=r + 1))
            rec.update(entry=entry, round=r, stage="rounds")
            raw.append(rec)
            print(f"round {r} {entry:7s} {brief(rec)}", file=sys.stderr, flush=True)
    long_seeds = [int(s) for s in a.long_seeds.split(",") if s] if a.long_n else []
    for seed in long_seeds:
        for entry in ["mmc"] + ([] if a.no_simpy else ["simpy"]):
            rec = run_json(entry_cmd(entry, a.long_n, seed))
            rec.update(entry=entry, round=None, stage="long")
            raw.append(rec)
            print(f"long   {entry:7s} {brief(rec)}", file=sys.stderr, flush=True)

    result = analyse(raw, a, entries)
    result["meta"] = {
        **run_meta("run.py", started),
        "rounds": a.rounds,
        "n": a.n,
        "mmc_n": a.mmc_n,
        "long_n": a.long_n,
        "long_seeds": long_seeds,
    }
    result["raw"] = raw
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (a.out / "latest.md").write_text(table)
    print(table)


def brief(rec: dict[str, Any]) -> str:
    if rec["bench"] == "asyncio_floor":
        return f"seed {rec['seed']} n {rec['n']:,}  wall {rec['wall_s']:.3f} s"
    if rec["bench"] == "khadem_memory":
        return (
            f"dispatch {rec['dispatch_rps']:,.0f}/s  worker {rec['worker_rps']:,.0f}/s  "
            f"dispatch+worker {rec['dispatch_plus_worker_rps']:,.0f}/s"
        )
    return (
        f"seed {rec['seed']} n {rec['n']:,}  wall {rec['wall_s']:.3f} s  "
        f"Wq {rec['wq_bm']:.3f} ± {rec['wq_bm_ci95']:.3f}"
    )


MEMORY_FIGURES = [
    ("dispatch_rps", "dispatch, one `await qm.dispatch(job)` per job"),
    ("dispatch_batch_rps", "dispatch, one `await qm.dispatch_batch(jobs)`"),
    ("worker_rps", "process: `await qm.start_worker(max_jobs=N)` drains N"),
    ("process_rps", "process: `await qm.process()` N times"),
    ("dispatch_plus_worker_rps", "**dispatch + process** (one by one + worker): N / (t_dispatch + t_worker)"),
    ("batch_plus_process_rps", "dispatch_batch + process() loop: N / (t_batch + t_process)"),
]


def analyse(raw: list[dict[str, Any]], a: argparse.Namespace, entries: list[str]) -> dict[str, Any]:
    rounds = [r for r in raw if r["stage"] == "rounds"]
    mem = [r for r in rounds if r["entry"] == "memory"]
    ours = [r for r in rounds if r["entry"] == "mmc"]
    peer = [r for r in rounds if r["entry"] == "simpy"]
    floor = {r["round"]: r for r in rounds if r["entry"] == "floor"}
    out: dict[str, Any] = {"memory": {f: summary([r[f] for r in mem]) for f, _ in MEMORY_FIGURES}}
    mmc: dict[str, Any] = {
        "wq_erlang": WQ_ERLANG,
        "wall_s": summary([r["wall_s"] for r in ours]),
        "customer_events_per_s": summary([r["customer_events_per_s"] for r in ours]),
        "fifo_violations": sum(r["fifo_violations"] for r in raw if r["entry"] == "mmc"),
        "path_max_abs_diff": max(r["path_max_abs_diff"] for r in raw if r["entry"] == "mmc"),
    }
    if peer:
        by_round = {r["round"]: r for r in peer}
        ratios = [r["wall_s"] / by_round[r["round"]]["wall_s"] for r in ours if r["round"] in by_round]
        mmc["simpy_wall_s"] = summary([r["wall_s"] for r in peer])
        mmc["ratio_ours_over_simpy"] = summary(ratios)
        mmc["ratios"] = ratios
    if floor:
        mmc["floor_wall_s"] = summary([r["wall_s"] for r in floor.values()])
        mmc["ratio_ours_over_floor"] = summary(
            [r["wall_s"] / floor[r["round"]]["wall_s"] for r in ours if r["round"] in floor]
        )
        if peer:
            mmc["ratio_floor_over_simpy"] = summary(
                [floor[r["round"]]["wall_s"] / r["wall_s"] for r in peer if r["round"] in floor]
            )
    # Wq: each 100k seed with its batch-means interval; the mean over seeds with a t interval;
    # the long runs; and all customers together (estimates weighted by customers, variances added).
    runs = [r for r in raw if r["entry"] == "mmc"]
    seed_means = [r["wq_bm"] for r in ours]
    m, h = mean_ci95(seed_means)
    mmc["rounds_mean_of_seeds"] = {
        "wq": m,
        "ci95": h,
        "seeds": [r["seed"] for r in ours],
        "erlang_in_ci": abs(m - WQ_ERLANG) <= h,
    }
    weights = [r["n"] for r in runs]
    total = sum(weights)
    pooled = sum(w * r["wq_bm"] for w, r in zip(weights, runs, strict=True)) / total
    se = math.sqrt(
        sum((w / total * r["wq_bm_ci95"] / 2.093) ** 2 for w, r in zip(weights, runs, strict=True))
    )
    mmc["pooled_all_runs"] = {
        "wq": pooled,
        "ci95": 1.96 * se,
        "customers": total,
        "erlang_in_ci": abs(pooled - WQ_ERLANG) <= 1.96 * se,
        "rel_err": pooled / WQ_ERLANG - 1,
    }
    mmc["runs_inside_ci"] = sum(bool(r["erlang_in_ci"]) for r in runs)
    mmc["runs"] = len(runs)
    out["mmc"] = mmc
    dpw = out["memory"]["dispatch_plus_worker_rps"]["median"] if mem else math.nan
    out["targets"] = {
        "dispatch_plus_process_rps >= 50,000": dpw >= TARGET_RPS,
        f"ours / SimPy wall time <= {TARGET_RATIO:g}": bool(peer)
        and mmc["ratio_ours_over_simpy"]["median"] <= TARGET_RATIO,
        "pooled Wq within 5 % of Erlang C": abs(mmc["pooled_all_runs"]["rel_err"]) <= TARGET_WQ,
    }
    return out


def markdown(res: dict[str, Any]) -> str:
    meta, mem, mmc = res["meta"], res["memory"], res["mmc"]
    lines = [
        f"# khadem_lab benchmarks ({meta['started']}, git {meta['git']})",
        "",
        f"`{meta['command']}`: {meta['rounds']} rounds, order rotated, each run a fresh interpreter; "
        f"Python {meta['python']}, {meta['machine']}, load average at the end {meta['loadavg_end']}. "
        "Medians over the rounds (min - max).",
        "",
        f"## Memory driver, real clock, no-op jobs (N = {meta['n']:,})",
        "",
        "| figure | jobs/s median | min - max |",
        "|---|---:|---:|",
    ]
    for key, label in MEMORY_FIGURES:
        lines.append(row(label, mem[key], "{:,.0f}"))
    lines += [
        "",
        f"## M/M/c on virtual time (c = {C}, lambda = {LAMBDA:g}, mu = {MU:g}, rho = {RHO:g}; "
        f"N = {meta['mmc_n']:,} per round, seed = round + 1)",
        "",
        "| figure | median | min - max |",
        "|---|---:|---:|",
        row("khadem_lab wall time, s (`sim.run_until_idle()`)", mmc["wall_s"], fmt),
        row("khadem_lab customer events/s (2N / wall)", mmc["customer_events_per_s"], "{:,.0f}"),
    ]
    if "simpy_wall_s" in mmc:
        lines.append(row("SimPy wall time, s (`env.run()`), same seeds", mmc["simpy_wall_s"], fmt))
        lines.append(
            row(
                "**ours / SimPy wall time** (per-round ratio)",
                mmc["ratio_ours_over_simpy"],
                "{:.2f}",
                bold=True,
            )
        )
    if "floor_wall_s" in mmc:
        lines.append(
            row(
                "bare asyncio on the same VirtualTimeLoop (bench/asyncio_floor.py), s",
                mmc["floor_wall_s"],
                fmt,
            )
        )
        lines.append(row("ours / bare asyncio (what the queue adds)", mmc["ratio_ours_over_floor"], "{:.2f}"))
        if "ratio_floor_over_simpy" in mmc:
            lines.append(
                row(
                    "bare asyncio / SimPy (what asyncio itself costs)",
                    mmc["ratio_floor_over_simpy"],
                    "{:.2f}",
                )
            )
    lines += [
        "",
        f"Mean wait in queue Wq vs Erlang C = **{WQ_ERLANG:.4f}** (batch means: 10 % warm-up dropped, "
        "20 batches, 95 % interval):",
        "",
        "| run | seed | N | Wq (batch means) ± 95 % | rel. error | Erlang C inside? "
        "| SimPy Wq ± 95 %, same seed |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    peer = {(r["seed"], r["n"]): r for r in res["raw"] if r["entry"] == "simpy"}
    for r in res["raw"]:
        if r["entry"] != "mmc":
            continue
        sp = peer.get((r["seed"], r["n"]))
        sp_txt = f"{sp['wq_bm']:.3f} ± {sp['wq_bm_ci95']:.3f}" if sp else ""
        lines.append(
            f"| {'round ' + str(r['round']) if r['stage'] == 'rounds' else 'long'} | {r['seed']} "
            f"| {r['n']:,} | "
            f"{r['wq_bm']:.3f} ± {r['wq_bm_ci95']:.3f} | {r['wq_bm'] / WQ_ERLANG - 1:+.1%} | "
            f"{'yes' if r['erlang_in_ci'] else 'no'} | {sp_txt} |"
        )
    rm, pooled = mmc["rounds_mean_of_seeds"], mmc["pooled_all_runs"]
    lines += [
        f"| mean of the {len(rm['seeds'])} round seeds (t interval) | | | "
        f"{rm['wq']:.3f} ± {fmt(rm['ci95'])} | "
        f"{rm['wq'] / WQ_ERLANG - 1:+.1%} | {'yes' if rm['erlang_in_ci'] else 'no'} | |",
        f"| **all runs pooled** (weighted by customers) | | {pooled['customers']:,} | "
        f"**{pooled['wq']:.3f} ± {pooled['ci95']:.3f}** | **{pooled['rel_err']:+.1%}** | "
        f"{'yes' if pooled['erlang_in_ci'] else 'no'} | |",
        "",
        f"Erlang C inside the run's own interval in {mmc['runs_inside_ci']} of {mmc['runs']} runs. "
        f"FIFO violations: {mmc['fifo_violations']}. Largest |wait - exact FIFO M/M/c wait| for the same "
        f"arrival and service times (Kiefer-Wolfowitz recursion): {mmc['path_max_abs_diff']:.2g} s.",
        "",
        "## Targets",
        "",
    ]
    for name, ok in res["targets"].items():
        lines.append(f"* {name}: **{'met' if ok else 'missed'}**")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
