"""agentsearch.evaluators"""
