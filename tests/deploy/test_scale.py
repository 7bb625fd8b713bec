"""The scale benchmark (tests/deploy/bench_scale.py) in miniature: 1 and 2 replicas of fixed-latency engines
behind HAProxy on one PostgreSQL carry turns without errors, and every figure docs/DEPLOYMENT.md's scale table needs is
measured (turns per second, added latency, the database's write latency and commit rate, CPU per turn).

``slow``: it starts PostgreSQL, HAProxy and up to two server processes per run."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.bench_scale import run_once
from tests.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cm-scale-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("replicas", [1, 2])
def test_replicas_carry_load_through_the_balancer(postgres: PostgresServer, folder: Path, replicas: int) -> None:
    """4 clients per replica for 4 s: turns complete with no error event, the latency added on top of the
    engines' fixed time stays under a second at the median, and the write probe, commit count and CPU
    accounting all produce numbers."""
    summary = run_once(postgres, folder, replicas, clients_per_replica=4, seconds=4.0).summary()
    print(summary)
    assert summary["errors"] == 0
    assert summary["turns_per_s"] >= replicas  # a turn takes about 0.6 s of engine time per client
    assert 0 <= summary["added_p50_ms"] < 1000
    assert summary["db_write_p50_ms"] > 0 and summary["db_commits_per_s"] > 0
    assert all(math.isfinite(v) and v >= 0 for v in summary["cpu_ms_per_turn"].values())
