#!/usr/bin/env python3
"""Latency benchmark of /ws/voice: end of the user's speech -> first audio of the answer (TTFA).

Starts its own servers (``python -m backend.main`` on free 127.0.0.1 ports, streaming and, with --compare,
sequential) or attaches to ``--url``. Speaks seeded espeak-ng utterances at real-time pace (20 ms chunks every
20 ms, then silence until the turn completes) and times each milestone client-side from the end of speech.
Also: simultaneous talkers (--concurrency), server memory (idle connections, active, after a text soak).

What a listener hears: each turn's client plays the reply's audio as it arrives, at real-time rate, from the first
byte (bench_ws.Playback); the time the player runs dry before the reply's last frame is mid-reply silence, reported
per reply (total and longest gap) beside TTFA, per mode and per number of simultaneous talkers.

    python -m scripts.bench.latency --compare                 # full run (a few minutes on 2 CPU cores)
    python -m scripts.bench.latency --quick                   # 3 turns, no concurrency, no soak
    python -m scripts.bench.latency --quick --concurrency 1,2,4,8   # ... plus 1, 2, 4 and 8 talkers at once
    python -m scripts.bench.latency --url http://127.0.0.1:8000 --turns 5

Writes a table to stdout, a JSON report (--out) and a PNG plot next to it. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from scripts.common import bench_report
from scripts.common.bench_server import REPO_ROOT, Server, attach, start_server, stop_server, wait_ready
from scripts.common.bench_speech import SENTENCES, Utterance, make_paused_utterances, make_utterances
from scripts.common.bench_ws import ORDERED, Talker

MB = 1024 * 1024
DEFAULT_LEVELS = "1,2,4,8,16"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=None, help="utterances per mode (default 12; 3 with --quick)")
    p.add_argument("--fresh", type=int, default=None, help="turns each in a fresh session (default 12; 3 quick)")
    p.add_argument(
        "--paused", type=int, default=None, help="utterances with a 350-450 ms pause inside (default 12; 3 quick)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--compare", action="store_true", help="also run a sequential server; report the TTFA ratio")
    p.add_argument(
        "--concurrency",
        default=None,
        help="simultaneous talkers per level (default 1,2,4,8,16; none with --quick unless given); '' = none",
    )
    p.add_argument("--turns-per-talker", type=int, default=2, help="turns each talker speaks at each level")
    p.add_argument("--idle-connections", type=int, default=50)
    p.add_argument(
        "--soak-turns",
        type=int,
        default=40,
        help="text turns after which memory is measured (each runs the LLM: ~2-4 s on 2 CPU cores)",
    )
    p.add_argument("--soak-connections", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="3 turns, no concurrency (unless --concurrency), no soak")
    p.add_argument("--url", help="attach to a running streaming server (http://127.0.0.1:PORT)")
    p.add_argument("--seq-url", help="with --url and --compare: the running sequential server")
    p.add_argument("--server-pid", type=int, help="pid of the --url server for memory (default: port owner)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench_out" / "report.json")
    p.add_argument("--plot", type=Path, help="PNG path (default: next to --out, same name)")
    p.add_argument("--turn-timeout", type=float, default=90.0)
    p.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for spawned servers")
    args = p.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = "" if args.quick else DEFAULT_LEVELS
    if args.quick:
        args.soak_turns = 0
        args.idle_connections = min(args.idle_connections, 10)
    args.turns = args.turns if args.turns is not None else (3 if args.quick else 12)
    args.fresh = args.fresh if args.fresh is not None else (3 if args.quick else 12)
    args.paused = args.paused if args.paused is not None else (3 if args.quick else 12)
    args.levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    args.plot = args.plot or args.out.with_suffix(".png")
    if args.compare and args.url and not args.seq_url:
        p.error("--compare with --url needs --seq-url")
    return args


# --- runs ---------------------------------------------------------------------------------------------------


class RssSampler:
    """Peak RSS of a server while a block of work runs (sampled every 0.25 s), and the machine's 1-min load."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak = server, 0
        self.loads: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.rss() or 0)
            self.loads.append(os.getloadavg()[0])
            await asyncio.sleep(0.25)

    def load_summary(self) -> dict[str, float]:
        if not self.loads:
            return {}
        return {"mean": round(sum(self.loads) / len(self.loads), 2), "max": round(max(self.loads), 2)}

    def __enter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def warm_up(server: Server) -> None:
    talker = await Talker.open(server.ws_url)
    try:
        await talker.text_turn("Hello, I would like some advice.")
    finally:
        await talker.close()


async def run_latency(
    servers: dict[str, Server], utts: list[Utterance], timeout: float, runs: dict[str, list[Any]]
) -> None:
    """The same utterances on each server, interleaved turn by turn so background load hits both alike.

    Records are appended to ``runs`` as they complete (an interrupted run keeps what it measured)."""
    talkers = {mode: await Talker.open(s.ws_url) for mode, s in servers.items()}
    runs.update({mode: [] for mode in servers})
    try:
        for i, utt in enumerate(utts):
            for mode, talker in talkers.items():
                record = await talker.voice_turn(utt, timeout)
                record.update(mode=mode, index=i, talker=0)
                runs[mode].append(record)
                ttfa = record["client"].get("first_audio")
                log(f"  {mode:<10} turn {i + 1}/{len(utts)} {record['outcome']:<8} TTFA={ttfa}")
    finally:
        for talker in talkers.values():
            await talker.close()


async def run_fresh(
    server: Server, utts: list[Utterance], timeout: float, mode: str, runs: dict[str, list[Any]]
) -> None:
    """Each utterance as the first turn of a new connection and session (what a new user meets)."""
    records = runs.setdefault(mode, [])
    for i, utt in enumerate(utts):
        talker = await Talker.open(server.ws_url)
        try:
            record = await talker.voice_turn(utt, timeout)
        finally:
            await talker.close()
        record.update(mode=mode, index=i, talker=0)
        records.append(record)
        extra = f" split={record['split']} early_reply={record['early_reply']}" if utt.pause_ms else ""
        log(
            f"  {mode:<10} turn {i + 1}/{len(utts)} {record['outcome']:<8} TTFA={record['client'].get('first_audio')}"
            + extra
        )


async def _talk(server: Server, utts: list[Utterance], delay: float, timeout: float, level: int, k: int) -> list:
    await asyncio.sleep(delay)
    talker = await Talker.open(server.ws_url)
    records = []
    try:
        for i, utt in enumerate(utts):
            record = await talker.voice_turn(utt, timeout)
            record.update(mode="streaming", index=i, talker=k, level=level)
            records.append(record)
    finally:
        await talker.close()
    return records


async def run_concurrency(server: Server, args: argparse.Namespace, out: dict[int, list[Any]]) -> None:
    """Each level's records go into ``out`` when the level completes."""
    rng = random.Random(args.seed)
    for level in args.levels:
        utts = [
            await asyncio.to_thread(make_utterances, args.turns_per_talker, args.seed, 100 * level + k)
            for k in range(level)
        ]
        jobs = [_talk(server, utts[k], rng.uniform(0, 0.5), args.turn_timeout, level, k) for k in range(level)]
        results = await asyncio.gather(*jobs)
        out[level] = [r for recs in results for r in recs]
        ok = [r["client"]["first_audio"] for r in out[level] if "first_audio" in r["client"]]
        quiet = [r["stall_s"] for r in out[level] if "stall_s" in r]
        log(
            f"  {level} talkers: {len(ok)}/{len(out[level])} with audio, TTFA max={max(ok, default=None)}, "
            f"silent mid-reply max={max(quiet, default=None)}"
        )


async def idle_memory(server: Server, count: int) -> dict[str, Any]:
    before = server.rss()
    talkers = [await Talker.open(server.ws_url) for _ in range(count)]
    await asyncio.sleep(1.0)
    during = server.rss()
    for talker in talkers:
        await talker.close()
    per = (during - before) / count if before and during and count else None
    return {"connections": count, "rss_before": before, "rss_with_idle": during, "per_connection_bytes": per}


async def soak(server: Server, turns: int, connections: int, result: dict[str, Any]) -> None:
    """``turns`` text turns over ``connections`` sockets (a fresh socket and session every 25 turns).

    ``result`` is kept up to date, so an interrupted soak still reports its progress."""
    before = server.rss()
    start = time.perf_counter()
    done = failed = 0
    series: list[tuple[int, int | None]] = [(0, before)]
    result.update(turns=turns, ok=0, failed=0, seconds=0.0, rss_before=before, rss_series=series)

    async def worker(k: int, n: int) -> None:
        nonlocal done, failed
        talker: Talker | None = None
        try:
            for i in range(n):
                if talker is None or i % 25 == 0:
                    if talker is not None:
                        await talker.close()
                    talker = await Talker.open(server.ws_url)
                timings = await talker.text_turn(SENTENCES[(k * 7 + i) % len(SENTENCES)])
                done += timings is not None
                failed += timings is None
                result.update(ok=done, failed=failed, seconds=round(time.perf_counter() - start, 1))
                if (done + failed) % 25 == 0:
                    series.append((done + failed, server.rss()))
                    log(f"  soak: {done + failed}/{turns} turns")
        finally:
            if talker is not None:
                await talker.close()

    shares = [turns // connections + (k < turns % connections) for k in range(max(1, connections))]
    try:
        await asyncio.gather(*(worker(k, n) for k, n in enumerate(shares) if n))
        await asyncio.sleep(1.0)
    finally:
        after = server.rss()
        series.append((done + failed, after))  # (turns done, RSS) every 25 turns and at the end
        result.update(rss_after=after, growth_bytes=(after - before) if before and after else None)


# --- report -------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "packages": {n: version(n) for n in ("torch", "transformers", "faster-whisper", "fastapi", "uvicorn")},
        "loadavg": list(os.getloadavg()),
    }


def git_info() -> dict[str, Any]:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--", "backend")),
    }


def consistency(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Problems found in the records: missing milestones or milestones out of order."""
    problems = []
    for mode, records in runs.items():
        for r in records:
            where = f"{mode} turn {r['index']}"
            if r.get("outcome") != "ok":
                problems.append(f"{where}: outcome {r.get('outcome')} {r.get('error', '')}".strip())
                continue
            values = [r["client"].get(m) for m in ORDERED]
            if None in values:
                problems.append(f"{where}: missing {[m for m, v in zip(ORDERED, values, strict=True) if v is None]}")
            elif values != sorted(values):
                problems.append(f"{where}: milestones out of order {values}")
    return problems


def mb(x: float | None) -> str:
    return "-" if x is None else f"{x / MB:.1f} MB"


def kb(x: float | None) -> str:
    return "-" if x is None else f"{x / 1024:.0f} KB"


async def run_all(args: argparse.Namespace, servers: dict[str, Server], report: dict[str, Any]) -> None:
    stream = servers["streaming"]
    memory: dict[str, Any] = {"rss_start": stream.rss()}
    report["memory"] = memory
    for server in servers.values():
        await warm_up(server)
    if args.idle_connections:
        log(f"memory: {args.idle_connections} idle connections")
        memory["idle"] = await idle_memory(stream, args.idle_connections)
    utts = await asyncio.to_thread(make_utterances, args.turns, args.seed)
    report["utterances"] = [u.describe() for u in utts]
    log(f"latency: {len(utts)} turns on {', '.join(servers)}")
    sampler = RssSampler(stream)
    runs = report.setdefault("runs", {})
    try:
        with sampler:
            if args.fresh:
                fresh = await asyncio.to_thread(make_utterances, args.fresh, args.seed + 1)
                log(f"fresh sessions: {len(fresh)} first turns")
                await run_fresh(stream, fresh, args.turn_timeout, "fresh", runs)
            if args.paused:
                paused = await asyncio.to_thread(make_paused_utterances, args.paused, args.seed)
                log(f"paused utterances: {len(paused)} with a 350-450 ms pause inside")
                await run_fresh(stream, paused, args.turn_timeout, "paused", runs)
            await run_latency(servers, utts, args.turn_timeout, runs)
            if args.levels:
                log(f"concurrency: {args.levels}")
                await run_concurrency(stream, args, report.setdefault("concurrency_records", {}))
        if args.soak_turns:
            log(f"soak: {args.soak_turns} text turns")
            await soak(stream, args.soak_turns, args.soak_connections, memory.setdefault("soak", {}))
    finally:
        memory["rss_active_peak"] = sampler.peak or None
        report["machine"]["loadavg_1min_during_runs"] = sampler.load_summary()
        memory["rss_end"] = stream.rss()


def print_results(report: dict[str, Any]) -> None:
    print(bench_report.table(report["summaries"]))
    if "compare" in report:
        c = report["compare"]
        print(
            f"TTFA streaming/sequential: p50 ratio {c['ttfa_p50_ratio']}, median per-turn ratio "
            f"{c['ttfa_ratio_median']}; per turn {c['ttfa_ratio_per_turn']}"
        )
    if "paused" in report:
        ps = report["paused"]
        print(
            f"paused utterances (350-450 ms pause inside): {ps['split']}/{ps['turns']} split into two turns, "
            f"{ps['early_reply']}/{ps['turns']} with a reply before the person finished"
        )
    if "concurrency" in report:
        print(bench_report.concurrency_table(report["concurrency"]))
    m = report.get("memory", {})
    idle, soak_m = m.get("idle") or {}, m.get("soak") or {}
    print(
        f"server RSS: start {mb(m.get('rss_start'))}, with {idle.get('connections', 0)} idle connections "
        f"{mb(idle.get('rss_with_idle'))} ({kb(idle.get('per_connection_bytes'))} each), active peak "
        f"{mb(m.get('rss_active_peak'))}, end {mb(m.get('rss_end'))}"
    )
    if soak_m:
        print(
            f"soak: {soak_m['ok']}/{soak_m['turns']} text turns in {soak_m['seconds']} s, RSS "
            f"{mb(soak_m['rss_before'])} -> {mb(soak_m.get('rss_after'))} (growth {mb(soak_m.get('growth_bytes'))})"
        )
    if report.get("interrupted"):
        print("INTERRUPTED: the figures above cover only what was measured before the stop")
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    modes = ["streaming", "sequential"] if args.compare else ["streaming"]
    started = time.perf_counter()
    report: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "git": git_info(),
    }
    servers: dict[str, Server] = {}
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    with tempfile.TemporaryDirectory(prefix="cm-bench-") as tmp:
        try:
            if args.url:
                servers["streaming"] = attach(args.url, "streaming", args.server_pid)
                if args.compare:
                    servers["sequential"] = attach(args.seq_url, "sequential", None)
            else:
                for mode in modes:
                    servers[mode] = start_server(mode, Path(tmp), args.out.parent, extra_env)
                for server in servers.values():
                    log(f"waiting for the {server.mode} server at {server.base_url}")
                    wait_ready(server)
            report["servers"] = {
                m: {"url": s.base_url, "startup_s": s.startup_s, "device": s.health.get("device")}
                for m, s in servers.items()
            }
            asyncio.run(run_all(args, servers, report))
        except KeyboardInterrupt:
            report["interrupted"] = True
            log("interrupted: writing the report of what was measured")
        finally:
            for server in servers.values():
                stop_server(server)
    runs = report.get("runs", {})
    if report.get("concurrency_records"):
        report["concurrency"] = bench_report.concurrency_summary(report["concurrency_records"])
        report["concurrency_records"] = {str(k): v for k, v in report["concurrency_records"].items()}
    report["summaries"] = {mode: bench_report.summarize(recs) for mode, recs in runs.items()}
    if runs.get("paused"):
        report["paused"] = bench_report.pause_summary(runs["paused"])
    if args.compare and "sequential" in runs:
        report["compare"] = bench_report.compare(runs["streaming"], runs["sequential"])
    report["problems"] = consistency(runs)
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bench_report.plot(runs, report.get("concurrency"), args.plot)
    report["plot"] = str(args.plot)
    args.out.write_text(json.dumps(report, indent=1))
    print_results(report)
    log(f"report: {args.out}, plot: {args.plot}, {report['elapsed_s']} s")
    return 0 if all(s["ok"] for s in report["summaries"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
