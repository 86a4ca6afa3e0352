"""plastix.circuits"""
