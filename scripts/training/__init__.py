"""The mentor dataset and its LoRA adapter: ``python -m scripts.training.<name> --help``."""
