"""Test helpers for agentsearch and third parties: the fake OpenAI server, contract suites."""
