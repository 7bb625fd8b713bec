"""scripts/speech_tools."""
