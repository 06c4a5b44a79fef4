"""Tournaments: brackets of heats played across nodes, run by one elected director."""
