"""Scale benchmark: 1, 2, 4 ... replicas behind the real HAProxy, on one real PostgreSQL, with engines of fixed
latency that sleep instead of computing (``tests.deploy.replica_server``), so what is measured is what the
replicas, the balancer and the database add to a turn, not model time.

    python3 -m tests.deploy.bench_scale --replicas 1,2,4 --seconds 20 --clients-per-replica 8 --out bench_out/scale

For each replica count N: N x ``clients-per-replica`` WebSocket clients (one asyncio process) run text turns
back to back through the balancer for ``seconds``. Reported: completed turns per second; added latency (first
reply audio after sending the text, minus the fixed engine time before it: emotion + LLM first word + the
words of the first spoken chunk + one synthesis) at p50 and p99; the database's write latency under that load
(a probe commits one turn every 20 ms through the same store code and times it); commits per second in
PostgreSQL; and the CPU seconds per turn spent by the replicas, HAProxy and PostgreSQL (from /proc), which is
what sizes real hardware.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from backend.store.schema import init_db, make_engine
from backend.store.sessions import SessionStore
from tests.deploy.cluster import Balancer, Replica, free_port
from tests.postgres import PostgresServer, start_postgres

# Fixed engine latencies (seconds) of every replica. The reply is FakeLLM's 15 words; the first spoken chunk
# is its first 3 words ("That sounds hard."), so the engines take EMOTION + LLM_FIRST + 2 * LLM_WORD + TTS
# before the first audio can leave.
EMOTION_S = 0.03
LLM_FIRST_S = 0.15
LLM_WORD_S = 0.02
TTS_S = 0.02
FIRST_AUDIO_ENGINE_S = EMOTION_S + LLM_FIRST_S + 2 * LLM_WORD_S + TTS_S
PROBE_INTERVAL_S = 0.02


@dataclass
class Run:
    replicas: int
    clients: int
    seconds: float
    turns: int = 0
    errors: int = 0
    added_ms: list[float] = field(default_factory=list)
    turn_ms: list[float] = field(default_factory=list)
    db_write_ms: list[float] = field(default_factory=list)
    commits: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            if not values:
                return float("nan")
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        turns = max(self.turns, 1)
        return {
            "replicas": self.replicas,
            "clients": self.clients,
            "turns_per_s": round(self.turns / self.seconds, 1),
            "errors": self.errors,
            "added_p50_ms": round(pct(self.added_ms, 0.50), 1),
            "added_p99_ms": round(pct(self.added_ms, 0.99), 1),
            "turn_p50_ms": round(pct(self.turn_ms, 0.50), 1),
            "db_write_p50_ms": round(pct(self.db_write_ms, 0.50), 2),
            "db_write_p99_ms": round(pct(self.db_write_ms, 0.99), 2),
            "db_commits_per_s": round(self.commits / self.seconds, 1),
            "cpu_ms_per_turn": {k: round(1000 * v / turns, 2) for k, v in self.cpu_s.items()},
        }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (0 once it has exited: a PostgreSQL backend
    that ends is counted in the postmaster's reaped-children time instead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every backend it forked."""
    master = int((server.datadir / "data" / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *(int(c) for c in children)]


def _commits(server: PostgresServer, database: str) -> int:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname={database}") as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
        return int(row[0]) if row else 0


async def _client(url: str, deadline: float, run: Run) -> None:
    async with connect(url, max_size=None, compression=None, open_timeout=20) as ws:
        json.loads(await ws.recv())  # session
        n = 0
        while time.monotonic() < deadline:
            n += 1
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "text", "text": f"turn {n}: I feel a bit lost at work lately"}))
            first_audio: float | None = None
            while True:
                message = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(message, bytes):
                    if first_audio is None:
                        first_audio = time.perf_counter() - sent
                    continue
                event = json.loads(message)
                if event["type"] == "error":
                    run.errors += 1
                    break
                if event["type"] == "metrics":
                    run.turns += 1
                    run.turn_ms.append(1000 * (time.perf_counter() - sent))
                    if first_audio is not None:
                        run.added_ms.append(1000 * (first_audio - FIRST_AUDIO_ENGINE_S))
                    break


async def _load(url: str, clients: int, seconds: float, run: Run) -> None:
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, deadline, run) for _ in range(clients)))


def _probe_writes(url: str, stop: threading.Event, out: list[float]) -> None:
    """Commit one turn every PROBE_INTERVAL_S through the store and record how long each commit took."""
    store = SessionStore(make_engine(url))
    session_id = store.create_session(title="write-latency probe").id
    try:
        while not stop.wait(PROBE_INTERVAL_S):
            started = time.perf_counter()
            store.add_turn(session_id, "user", "probe")
            out.append(1000 * (time.perf_counter() - started))
    finally:
        store.close()


def run_once(server: PostgresServer, folder: Path, replicas: int, clients_per_replica: int, seconds: float) -> Run:
    database = server.create_database()
    url = server.url(database)
    init_db(make_engine(url))  # migrated once, before the replicas start
    env = {
        "CM_DATABASE__URL": url,
        "CM_SERVER__LOG_LEVEL": "WARNING",
        "CM_LLM__MAX_CONCURRENT": "64",  # engines on another server batch many generations (no local slot)
        "CM_LIMITS__MAX_ACTIVE_TURNS": "64",
        "REPLICA_EMOTION_S": str(EMOTION_S),
        "REPLICA_LLM_FIRST_S": str(LLM_FIRST_S),
        "REPLICA_LLM_WORD_S": str(LLM_WORD_S),
        "REPLICA_TTS_S": str(TTS_S),
    }
    nodes = [Replica(f"replica{i}", free_port(), env) for i in range(1, replicas + 1)]
    balancer = Balancer(folder, nodes)
    run = Run(replicas, replicas * clients_per_replica, seconds)
    try:
        for node in nodes:
            node.start()
        balancer.start()
        asyncio.run(_load(balancer.ws_url, run.clients, 2.0, Run(replicas, run.clients, 2.0)))  # warm up
        pids = {"replicas": [n.pid() for n in nodes], "haproxy": [balancer.proc.pid] if balancer.proc else []}
        pids["postgres"] = _postgres_pids(server)
        before = {k: sum(_cpu_seconds(p) for p in v) for k, v in pids.items()}
        commits_before = _commits(server, database)
        stop = threading.Event()
        probe = threading.Thread(target=_probe_writes, args=(url, stop, run.db_write_ms))
        probe.start()
        asyncio.run(_load(balancer.ws_url, run.clients, seconds, run))
        stop.set()
        probe.join()
        pids["postgres"] = _postgres_pids(server)  # backends that started during the run are counted from 0
        run.cpu_s = {k: sum(_cpu_seconds(p) for p in v) - before[k] for k, v in pids.items()}
        run.commits = _commits(server, database) - commits_before
    finally:
        balancer.stop()
        for node in nodes:
            node.stop()
        server.drop_database(database)
    return run


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| replicas | clients | turns/s | added latency p50 / p99 (ms) | DB write p50 / p99 (ms) | DB commits/s "
        "| CPU ms per turn: replicas / HAProxy / PostgreSQL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu_ms_per_turn"]
        lines.append(
            f"| {r['replicas']} | {r['clients']} | {r['turns_per_s']} | {r['added_p50_ms']} / {r['added_p99_ms']} "
            f"| {r['db_write_p50_ms']} / {r['db_write_p99_ms']} | {r['db_commits_per_s']} "
            f"| {cpu.get('replicas')} / {cpu.get('haproxy')} / {cpu.get('postgres')} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--clients-per-replica", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None, help="folder for scale.json and scale.md")
    args = parser.parse_args(argv)
    server = start_postgres()
    folder = Path(tempfile.mkdtemp(prefix="cm-scale-"))
    rows = []
    try:
        for n in (int(x) for x in args.replicas.split(",")):
            run = run_once(server, folder, n, args.clients_per_replica, args.seconds)
            rows.append(run.summary())
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
        shutil.rmtree(server.datadir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    table = markdown(rows)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps({"runs": rows, "engine_first_audio_s": FIRST_AUDIO_ENGINE_S}))
        (args.out / "scale.md").write_text(table + "\n")
    medians = [r["added_p50_ms"] for r in rows]
    print(f"median added latency over runs: {statistics.median(medians):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
