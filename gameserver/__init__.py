"""Gameserver nodes: own races, judge typing, fan progress out to players."""
