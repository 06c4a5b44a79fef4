"""The lobby: the HTTP front door (player tokens, matchmaking tickets, private races, presence)."""
