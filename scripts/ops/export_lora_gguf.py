"""Export the mentor LoRA adapter (models/claritymentor-lora, PEFT) as a GGUF adapter for llama.cpp and Ollama.

    python -m scripts.ops.export_lora_gguf            # -> models/cache/claritymentor-lora.f16.gguf (once)

It runs llama.cpp's own converter (``convert_lora_to_gguf.py``, with its ``gguf-py``) taken from the
llama-cpp-python source archive that scripts/setup.sh keeps in models/cache/wheels/ (downloaded with pip when
missing), against the base model the adapter was trained on: the embedded SmolLM2-135M-Instruct as converted
into models/cache/ by scripts/ops/prepare_models.py. vLLM needs no export: it loads the PEFT folder itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from backend.config import REPO_ROOT, LLMSettings, resolve_path
from backend.engines.llm.model_files import ensure_converted

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
SDIST = REPO_ROOT / "models" / "cache" / "wheels" / "llama_cpp_python-0.3.36.tar.gz"
ADAPTER = REPO_ROOT / "models" / "claritymentor-lora"
OUTPUT = REPO_ROOT / "models" / "cache" / "claritymentor-lora.f16.gguf"
_CONVERTER_PARTS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def source_archive() -> Path:
    """llama-cpp-python's source archive (it vendors llama.cpp and its converters); downloaded once."""
    if not SDIST.is_file():
        SDIST.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                LLAMA_CPP_PYTHON,
                "-d",
                str(SDIST.parent),
            ],
            check=True,
        )
    return SDIST


def extract_converter(archive: Path, target: Path) -> Path:
    """Unpack llama.cpp's converter scripts and gguf-py into ``target``; returns the folder holding them."""
    prefix = f"{archive.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(archive) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(prefix) and m.name[len(prefix) :].startswith(_CONVERTER_PARTS)
        ]
        tar.extractall(target, members=members, filter="data")
    return target / prefix


def export(adapter: Path = ADAPTER, output: Path = OUTPUT, force: bool = False) -> Path:
    """Convert ``adapter`` to a GGUF LoRA at ``output`` (f16), unless an up-to-date one is there."""
    weights = adapter / "adapter_model.safetensors"
    if not force and output.is_file() and output.stat().st_mtime >= weights.stat().st_mtime:
        return output
    base = ensure_converted(LLMSettings())  # the plain transformers folder of the embedded base model
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lora-gguf-") as tmp:
        converter = extract_converter(source_archive(), Path(tmp))
        partial = output.with_suffix(".part")
        subprocess.run(
            [
                sys.executable,
                str(converter / "convert_lora_to_gguf.py"),
                "--base",
                str(base),
                "--outtype",
                "f16",
                "--outfile",
                str(partial),
                str(adapter),
            ],
            check=True,
            cwd=converter,
        )
        partial.replace(output)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path, default=ADAPTER)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--force", action="store_true", help="convert even if the output is up to date")
    args = parser.parse_args()
    print(export(resolve_path(args.adapter), resolve_path(args.out), args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
