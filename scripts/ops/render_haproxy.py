"""Render deploy/haproxy.cfg.in for a set of replicas.

    python -m scripts.ops.render_haproxy --bind 0.0.0.0:80 --replica 10.0.0.11:8000 --replica 10.0.0.12:8000 \
        > /etc/haproxy/haproxy.cfg

The tests render it the same way with their 127.0.0.1 ports (tests/deploy/cluster.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg.in"


def render(bind: str, replicas: Sequence[str], global_extra: Sequence[str] = ()) -> str:
    """The HAProxy config for ``replicas`` (``host:port`` each, named replica1, replica2, ...)."""
    if not replicas:
        raise ValueError("at least one replica is needed")
    servers = "\n".join(f"    server replica{i} {address}" for i, address in enumerate(replicas, 1))
    extra = "\n".join(f"    {line}" for line in global_extra)
    text = TEMPLATE.read_text(encoding="utf-8")
    return text.replace("@BIND@", bind).replace("@SERVERS@", servers).replace("@GLOBAL_EXTRA@", extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bind", default="0.0.0.0:80", help="address:port HAProxy listens on")
    parser.add_argument("--replica", action="append", required=True, help="host:port of a replica (repeat)")
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.bind, args.replica))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
