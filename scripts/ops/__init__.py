"""Setup and deployment: ``python -m scripts.ops.<name> --help``."""
