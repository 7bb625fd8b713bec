"""Commands around the server, grouped by purpose; run each from the repository root with ``python -m``:

- ``scripts.bench``: latency, load and memory benchmarks against real or spawned servers.
- ``scripts.evals``: evaluations of the mentor, its adapter, the voices, memory and safety.
- ``scripts.training``: the mentor dataset and the LoRA adapter.
- ``scripts.ops``: setup and deployment (model preparation, the balancer's config, the adapter for llama.cpp).
- ``scripts.common``: helpers shared by the commands (no commands of its own).

Scripts may import the backend; the backend never imports scripts (an import-linter contract in pyproject.toml).
"""
