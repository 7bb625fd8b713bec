"""backend/engines/tts."""
