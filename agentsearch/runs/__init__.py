"""agentsearch.runs"""
