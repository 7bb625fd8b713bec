"""backend/engines/stt."""
