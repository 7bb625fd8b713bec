"""backend/engines/vad."""
