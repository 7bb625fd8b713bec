"""backend/engines/emotion."""
