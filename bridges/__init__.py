"""plastix.bridges"""
