"""Every Redis key and channel name, in one place, as functions.

Names follow the design documents (``race:{id}:state``, ``race:{id}:updates``). Keys that one
Lua script touches together share a hash tag (the part in braces) so the script stays valid
on Redis Cluster.
"""

from __future__ import annotations

from arena.ids import RaceId

# The outbox: finished matches waiting for persistence. The stream and the
# "already written" markers are touched by one script, hence the shared {outbox} tag.
OUTBOX_STREAM = "{outbox}:matches"


def outbox_written(race_id: RaceId) -> str:
    """Marker that a race's result is already in the outbox (makes the append idempotent)."""
    return f"{{outbox}}:written:{race_id}"


def race_state(race_id: RaceId) -> str:
    """Hash mirroring a live race: state, owner node, type, players, start instant."""
    return f"race:{{{race_id}}}:state"


def race_updates(race_id: RaceId) -> str:
    """Pub/sub channel carrying a race's progress frames to other nodes."""
    return f"race:{{{race_id}}}:updates"


def node_info(node_id: str) -> str:
    """Hash describing a gameserver node: public URL, region, state."""
    return f"node:{node_id}"


# Sorted set of node ids scored by their last heartbeat (ms): the registry's liveness index.
NODES_ALIVE = "nodes:alive"
