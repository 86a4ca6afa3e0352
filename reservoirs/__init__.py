"""plastix.reservoirs"""
