"""LLM access: metered DSPy clients (lm), endpoint pools and build_lm (pool), model aliases
(models), the servers we launch (backends).
"""
