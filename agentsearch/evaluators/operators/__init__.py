"""Operators: dspy.Module implementations by family, their registry, compile, prepare, output formats."""
