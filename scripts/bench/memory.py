"""How long memory retrieval adds to a turn, at 10,000 memories of one user (SQLite and PostgreSQL).

A turn's retrieval is what ``TurnPipeline._recall`` does: embed the user's message (already embedded by the
emotion stage, so a cache hit), check the user's memory matrix against the database (one indexed query; rows
added since are loaded), and one matrix-vector product with the top-k selection. This script fills a database
with N memories of one user (random unit vectors of MiniLM's 384 dimensions: the cost does not depend on the
content), then times that path for many queries, plus the first (cold) load and the load after a new memory.

    python -m scripts.bench.memory                        # SQLite in a temp folder, 10,000 memories
    python -m scripts.bench.memory --postgres             # also a throwaway PostgreSQL server (tests/postgres.py)
    python -m scripts.bench.memory --real-embedder        # time the MiniLM embedding of a new message too

Prints a JSON report (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert

from backend.mentor.memory import recall
from backend.store.memories import memory_scope
from backend.store.schema import MemoryRow, init_db, make_engine, utcnow
from backend.store.sessions import SessionStore

DIM = 384  # all-MiniLM-L6-v2
TOP_K, MIN_SIMILARITY = 3, 0.45


def _unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


def fill(store: SessionStore, engine_url: str, n: int, seed: int = 0) -> tuple[str, str]:
    """N memories of one user in one session, inserted in one transaction. Returns (scope, session id)."""
    session_id = store.create_session(owner="bench-key", user_id="bench-user").id
    scope = memory_scope("bench-key", "bench-user", session_id)
    rows = _unit_rows(n, np.random.default_rng(seed))
    now = utcnow()
    records = [
        {
            "scope": scope,
            "session_id": session_id,
            "turn_id": None,
            "kind": "event",
            "text": f"Remembered fact number {i}.",
            "embedding": rows[i].astype("<f4").tobytes(),
            "created_at": now,
            "last_seen_at": now,
        }
        for i in range(n)
    ]
    engine = make_engine(engine_url)
    try:
        with engine.begin() as connection:
            for start in range(0, n, 2000):
                connection.execute(insert(MemoryRow), records[start : start + 2000])
    finally:
        engine.dispose()
    return scope, session_id


def _ms(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


def measure(url: str, n: int, queries: int, embed: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, Any]:
    """Fill a fresh database at ``url`` and time retrieval as a turn does it."""
    engine = make_engine(url)
    init_db(engine)
    store = SessionStore(engine)
    try:
        started = time.perf_counter()
        scope, session_id = fill(store, url, n)
        fill_s = time.perf_counter() - started
        cold_start = time.perf_counter()
        vectors = store.memories.vectors(scope)
        cold = time.perf_counter() - cold_start
        assert len(vectors) == n
        rng = np.random.default_rng(1)
        query_rows = _unit_rows(queries, rng)
        turn, check, score = [], [], []
        for q in query_rows:
            t0 = time.perf_counter()
            vectors = store.memories.vectors(scope)  # the per-turn database check (cache valid)
            t1 = time.perf_counter()
            recall(q, vectors, top_k=TOP_K, min_similarity=MIN_SIMILARITY)
            t2 = time.perf_counter()
            check.append(t1 - t0)
            score.append(t2 - t1)
            turn.append(t2 - t0)
        store.memories.add(scope, session_id, None, "event", "One more fact.", query_rows[0])
        grow_start = time.perf_counter()
        grown = store.memories.vectors(scope)
        grow = time.perf_counter() - grow_start
        assert len(grown) == n + 1
        report: dict[str, Any] = {
            "backend": make_engine(url).dialect.name,
            "memories": n,
            "queries": queries,
            "fill_seconds": round(fill_s, 2),
            "turn_retrieval_ms": _ms(turn),  # what a turn waits for (the message's embedding is cached)
            "database_check_ms": _ms(check),
            "scoring_ms": _ms(score),
            "cold_load_ms": round(cold * 1000, 1),  # the first turn of a user after a restart
            "load_after_new_memory_ms": round(grow * 1000, 3),
        }
        if embed is not None:
            texts = [f"A brand new message number {i} about my week." for i in range(20)]
            embed(["warm up the model"])
            report["embed_new_message_ms"] = _ms([_timed(embed, [t]) for t in texts])
        return report
    finally:
        store.close()


def _timed(embed: Callable[[list[str]], np.ndarray], texts: list[str]) -> float:
    start = time.perf_counter()
    embed(texts)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time memory retrieval at N memories of one user.")
    p.add_argument("--memories", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--database-url", default=None, help="an empty database to use (default: a temp SQLite file)")
    p.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL server")
    p.add_argument("--real-embedder", action="store_true", help="time MiniLM on a new (uncached) message")
    args = p.parse_args(argv)
    embed = None
    if args.real_embedder:
        from backend.config import Settings
        from backend.engines.emotion.fused import load

        detector = load(Settings().emotion)
        embed = detector.embed
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        reports.append(measure(url, args.memories, args.queries, embed))
    if args.postgres:
        from tests.postgres import start_postgres

        server = start_postgres()
        try:
            reports.append(measure(server.url(server.create_database()), args.memories, args.queries))
        finally:
            server.stop()
            shutil.rmtree(server.datadir, ignore_errors=True)
    print(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
