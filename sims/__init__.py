"""plastix.sims"""
