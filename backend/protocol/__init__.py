"""backend/protocol."""
