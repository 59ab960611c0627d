"""agentsearch.optimizers"""
