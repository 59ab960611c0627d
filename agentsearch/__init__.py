"""agentsearch: search prompt-, module- and agent-level designs of LLM reasoning systems."""

__version__ = "0.1.0"
