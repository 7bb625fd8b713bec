"""backend/mentor."""
