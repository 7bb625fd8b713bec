"""backend/engines/llm."""
