"""The matchmaker: pairs queued tickets into races by rating, region and wait, and places them
on gameserver nodes. See docs/MATCHMAKING.md."""
