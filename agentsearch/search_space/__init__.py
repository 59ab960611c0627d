"""agentsearch.search_space"""
