"""A fault caused by one socket or one race stays there: every other race on the node goes on.

The poison messages an attacker found (issue 13 A-C) are refused at the door now; each case
checks that the poisoned race and another race on the same node still get their progress.
Faults the door cannot stop (a bug in one race) abort that race with its results in the
outbox; a loop that dies anyway fails /readyz.
"""

import asyncio
import json
from dataclasses import dataclass

import aiohttp
import pytest

from arena.clock import now_ms
from arena.protocol import Error, ErrorCode, Input, Progress, Results
from gameserver.connection import Connection
from gameserver.race import Race
from gameserver.room import RaceRoom
from gameserver.settings import LimitSettings
from tests.conftest import NodeFactory, RunningNode, read_outbox
from tests.gameserver.test_race_flow import CUSTOM, seat, wait_start
from tests.gameserver.wsclient import RawClient


@dataclass
class Pair:
    """A running race of two: one types, the other watches its progress frames."""

    typist: RawClient
    mate: RawClient
    start_at: int
    race_id: str

    async def typed(self, seq: int, at: int) -> Progress:
        """Type the passage's next key; the mate's progress frame shows it."""
        elapsed = max(1, now_ms() - self.start_at)
        await self.typist.send(Input(seq=seq, keys=CUSTOM[at], times=[elapsed]))
        return await self.mate.recv_matching(Progress, lambda p: any(row[1] == at + 1 for row in p.players))

    async def close(self) -> None:
        await self.typist.close()
        await self.mate.close()


async def running_race(node: RunningNode, name: str) -> Pair:
    race = await node.create_race([name, f"{name}-mate"], race_type="custom", custom_text=CUSTOM)
    (typist, _), (mate, _) = [await seat(node, s) for s in race["seats"]]
    start_at = await wait_start(typist)
    await wait_start(mate)
    return Pair(typist, mate, start_at, race["race_id"])


POISON = {
    "seq 2**70 (msgpack cannot encode it)": '{"t":"input","seq":' + str(2**70) + ',"keys":"a","times":[1]}',
    "4,000 nested arrays": "[" * 4000 + "]" * 4000,
    "a negative key time": '{"t":"input","seq":5,"keys":"a","times":[-1]}',
    "a key time of 2**32": '{"t":"input","seq":5,"keys":"a","times":[4294967296]}',
    "a pong of -10**400": '{"t":"pong","echo":-' + "1" + "0" * 400 + ',"time":1}',
}


@pytest.mark.parametrize("poison", list(POISON.values()), ids=list(POISON))
async def test_a_poison_message_is_refused_and_every_race_goes_on(node: RunningNode, poison: str) -> None:
    mallory, other = await asyncio.gather(running_race(node, "mallory"), running_race(node, "ada"))
    await mallory.typist.ws.send_str(poison)
    err = await mallory.typist.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.BAD_MESSAGE
    # Nothing of the refused message stuck: the sender's next real input counts from seq 1.
    assert (await mallory.typed(seq=1, at=0)).players
    for at in range(2):  # and the node's other race gets frames, now and later
        assert (await other.typed(seq=at + 1, at=at)).players
    assert node.node.loops_alive
    await mallory.close()
    await other.close()


@pytest.mark.parametrize(
    ("cls", "method", "where"),
    [(RaceRoom, "broadcast_progress", "progress"), (Race, "advance", "tick")],
    ids=["its progress frame", "its tick"],
)
async def test_a_race_the_server_fails_on_is_aborted_alone(
    node: RunningNode, redis_url: str, monkeypatch: pytest.MonkeyPatch, cls: type, method: str, where: str
) -> None:
    doomed, other = await asyncio.gather(running_race(node, "doomed"), running_race(node, "ada"))
    original = getattr(cls, method)

    def broken_for_one(self: RaceRoom | Race, *args: object) -> None:
        race_id = self.race.id if isinstance(self, RaceRoom) else self.id
        if race_id == doomed.race_id:
            raise OverflowError("the server cannot go on with this race")
        original(self, *args)

    monkeypatch.setattr(cls, method, broken_for_one)
    await doomed.typist.send(Input(seq=1, keys=CUSTOM[0], times=[max(1, now_ms() - doomed.start_at)]))
    for client in (doomed.typist, doomed.mate):  # both get the aborted results, then may race again
        results = await client.recv_until(Results, timeout=5)
        assert isinstance(results, Results) and results.state == "aborted"
        assert results.reason == "the server failed on this race"
    for at in range(3):
        assert (await other.typed(seq=at + 1, at=at)).players
    records = {r.match_id: r for r in await read_outbox(redis_url)}
    assert records[doomed.race_id].state == "aborted"
    assert node.node.metrics.faults.labels(where)._value.get() == 1  # one fault: then it ended
    assert node.node.loops_alive
    await doomed.close()
    await other.close()


async def test_a_loop_that_dies_fails_readyz(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.http_url}/readyz") as resp:
            assert resp.status == 200

        def dead(now: int) -> list[RaceRoom]:
            raise RuntimeError("the flusher's own bug")

        monkeypatch.setattr(node.node.batcher, "take_due", dead)
        await asyncio.wait_for(node.node.failed.wait(), timeout=5)
        assert node.node.failure is not None and "node-flusher" in node.node.failure
        async with http.get(f"{node.http_url}/readyz") as resp:
            assert resp.status == 503
            body = json.loads(await resp.text())
            assert body["ready"] is False


async def test_a_socket_the_keepalive_sweep_fails_on_goes_alone(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await node_factory(limits=LimitSettings(keepalive_s=0.1))
    doomed, other = await asyncio.gather(running_race(running, "doomed"), running_race(running, "ada"))
    original = Connection.keepalive
    broken = next(c for c in running.node.sockets if c.player is not None and c.player.name == "doomed")

    def keepalive(self: Connection) -> bool:
        if self is broken:
            raise RuntimeError("a bug in this socket's keepalive")
        return original(self)

    monkeypatch.setattr(Connection, "keepalive", keepalive)
    assert await doomed.typist.wait_closed(timeout=5) == 1006  # aborted: no close frame
    for at in range(2):
        assert (await other.typed(seq=at + 1, at=at)).players
    assert running.node.metrics.faults.labels("keepalive")._value.get() >= 1
    assert running.node.loops_alive
    await doomed.close()
    await other.close()
