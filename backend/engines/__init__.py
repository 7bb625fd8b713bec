"""backend/engines."""
