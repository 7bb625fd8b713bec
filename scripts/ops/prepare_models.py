"""Prepare model caches before the server's first start: converts the embedded LLM once and trains the safety
check's classifier (skipped when its weights match the example files and training settings).

Usage: python -m scripts.ops.prepare_models [--check]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

from backend.config import get_settings, resolve_path
from backend.engines.llm.ctranslate2 import converted_dir, ensure_ct2
from backend.engines.llm.model_files import EMBEDDED_PREFIX, ensure_converted, is_converted, transformers_options
from scripts.training import train_safety


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what is prepared; change nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return max(prepare_llm(args.check), prepare_safety(args.check))


def prepare_safety(check: bool) -> int:
    """The safety classifier (scripts/training/train_safety.py), for the embedded safety engine only."""
    if get_settings().safety.backend != "embedded":
        print(f"safety: backend {get_settings().safety.backend!r} has no classifier to train")
        return 0
    return train_safety.build(check=check)


def prepare_llm(check: bool) -> int:
    llm = get_settings().llm
    if not llm.model.startswith(EMBEDDED_PREFIX):
        print(f"llm: {llm.model} is not embedded; nothing to convert")
        return 0
    done: Callable[[Path], bool]
    if llm.backend == "transformers":
        cache, done = resolve_path(transformers_options(llm).cache_dir), is_converted
    elif llm.backend == "ctranslate2":
        cache, done = converted_dir(llm), lambda path: (path / "model.bin").is_file()
    else:
        print(f"llm: backend {llm.backend!r} has nothing to convert")
        return 0
    if done(cache):
        print(f"llm: {llm.model} already converted in {cache}")
        return 0
    if check:
        print(f"llm: {llm.model} NOT converted yet (run without --check)")
        return 1
    print(f"llm: converting {llm.model} for {llm.backend} into {cache} (one time, 30-60 s) ...", flush=True)
    started = time.perf_counter()
    path = ensure_converted(llm) if llm.backend == "transformers" else ensure_ct2(llm)
    print(f"llm: converted into {path} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
