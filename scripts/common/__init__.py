"""Helpers shared by the commands in scripts/ (servers and speech for benchmarks, the mentor data, the rubric,
the model card, the generated sections of docs/, speech synthesis and word error rate). Nothing here is a command."""
