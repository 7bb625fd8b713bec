"""Benchmarks: run each with ``python -m scripts.bench.<name> --help``."""
