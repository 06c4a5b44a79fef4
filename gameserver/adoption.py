"""Adoption: a live node runs a dead node's race on for its players (issue 15, item 2).

The reaper (``gameserver/reaper.py``) claims a dead node's race (``SET race:{id}:claim NX``:
exactly one live node), rebuilds it from its checkpoint, and, unless the race is over or
adoption is off (``ARENA_RACE_ADOPT``), hands it to ``Node.adopt``, which:

1. extends the race by the outage (``extend_by_outage``, pure): from the dead owner's last sign
   of life (its last heartbeat or the checkpoint's last entry, the later) to now. The wait for
   its players, the time limit (``ends_at``), a start that had not come yet (``start_at``) and
   each absent racer's grace window move by that much, so players lose neither typing time nor
   their seat to the crash;
2. moves the race's Redis bookkeeping to itself in one pipelined round trip (``take_over``):
   ``race:{id}:owner`` names it (joins whose ticket names the dead node are sent here, the lobby
   answers with this node), the checkpoint gets the new instants appended and is listed under
   this node (a second death is adopted the same way), the dead node's list forgets the race and
   the claim goes (the race is now this node's, as if it had created it);
3. installs the race as one of its own rooms: its tick mirrors it (``race:{id}:state`` names the
   new owner, ``races:live`` lists it), checkpoints its new inputs, and writes its result.

The racers are disconnected until their clients reconnect: they rejoin with the ticket that
names the dead node, get ``joined`` with the server's view, and resend their inputs above its
``seq`` (idempotent by ``seq``).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from arena import keys
from arena.ids import NodeId
from gameserver.checkpoint import encode_entries
from gameserver.checkpoint import ttl_s as checkpoint_ttl_s
from gameserver.race import Race


def extend_by_outage(race: Race, outage_ms: int) -> None:
    """Give the race back the time its node was dead: its time limit, a start still to come,
    and every absent racer's grace window move ``outage_ms`` later."""
    if outage_ms <= 0:
        return
    race.outage_ms += outage_ms  # a race still waiting for its players waits that much longer
    if race.start_at is not None and not race.started:
        race.start_at += outage_ms
    if race.ends_at is not None:
        race.ends_at += outage_ms
    for racer in race.racers.values():
        if racer.disconnected_at is not None and not racer.done:
            racer.disconnected_at += outage_ms
    race.version += 1  # the mirror follows (new instants, new owner)


def adopted_journal(race: Race, now: int) -> list[tuple[object, ...]]:
    """What the new owner's checkpoint appends first: the moved instants (a countdown entry
    replays as 'these are the instants', ``checkpoint._replay``)."""
    if race.start_at is None or race.ends_at is None:
        return []  # still waiting for its players: nothing was set to move
    return [("c", now, race.start_at, race.ends_at)]


def take_over(
    pipe: aioredis.client.Pipeline, race: Race, dead_node: str, me: NodeId, region: str, now: int
) -> None:
    """Queue the Redis side of an adoption on ``pipe`` (one round trip, in this order)."""
    rid = race.id
    ttl = checkpoint_ttl_s(race)
    pipe.set(keys.race_owner(rid), me, ex=ttl)
    entries = adopted_journal(race, now)
    if entries:
        pipe.rpush(keys.race_checkpoint(rid), encode_entries(entries))
    pipe.expire(keys.race_checkpoint(rid), ttl)
    pipe.srem(keys.node_checkpoints(dead_node), rid)  # first: the dead node may be us, restarted
    pipe.sadd(keys.node_checkpoints(me), rid)
    pipe.hset(keys.CHECKPOINT_NODES, me, region)
    pipe.hdel(keys.race_handoffs(region), rid)  # handed off by a draining node (gameserver/mover.py)
    # After the race left the dead node's list: a reaper that claims it now finds it gone.
    pipe.delete(keys.race_claim(rid))
