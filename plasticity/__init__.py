"""plastix.plasticity"""
