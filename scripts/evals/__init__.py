"""Evaluations: run each with ``python -m scripts.evals.<name> --help``."""
