"""The swarm: thousands of bots through the real path (lobby, matchmaker, node), with a report.

``python -m simulators.swarm --scenario FILE --lobby URL`` (see ``docs/SWARM.md``).
"""
