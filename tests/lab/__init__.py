"""
Tests for the namespace lab (netsuite.lab) and its peers.
"""
