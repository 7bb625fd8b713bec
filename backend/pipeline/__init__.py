"""backend/pipeline."""
