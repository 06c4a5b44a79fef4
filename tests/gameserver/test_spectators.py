"""Anyone may watch a live race from any node; spectators cannot type."""

import asyncio
import random

import pytest

from arena import keys
from arena.codec import WireFormat
from arena.protocol import (
    Error,
    ErrorCode,
    Hello,
    Input,
    Progress,
    Results,
    Spectate,
    Start,
    Watching,
    Welcome,
)
from arena.tokens import TokenSigner
from tests.conftest import NodeFactory, RunningNode, redis_client
from tests.gameserver.test_race_flow import CUSTOM, human_times, seat, type_text, wait_start
from tests.gameserver.wsclient import RawClient


async def spectator(node: RunningNode, race_id: str) -> tuple[RawClient, Watching]:
    signer = TokenSigner(node.settings.secrets.token_secret)
    token = signer.sign_player("pwatcher", "watcher", ttl_s=60, guest=True)  # type: ignore[arg-type]
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=token))
    await client.recv_until(Welcome)
    await client.send(Spectate(race_id=race_id))
    watching = await client.recv_until(Watching)
    assert isinstance(watching, Watching)
    return client, watching


@pytest.mark.redis_cluster
async def test_a_spectator_on_another_node_sees_the_race(node_factory: NodeFactory) -> None:
    owner = await node_factory("node-a")
    other = await node_factory("node-b")
    race = await owner.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, _), (b, _) = [await seat(owner, s) for s in race["seats"]]
    start_at = await wait_start(a)
    await asyncio.sleep(0.2)  # the owner's mirror of the running race is in Redis by now
    watcher, snapshot = await spectator(other, race["race_id"])
    assert snapshot.node_id == "node-a" and snapshot.passage == CUSTOM and snapshot.state == "running"
    assert sorted(p.name for p in snapshot.players) == ["ada", "bob"]
    await asyncio.sleep(1.2)  # the owner learns the race is watched (checked every second)
    rng = random.Random(4)
    await asyncio.gather(
        type_text(a, CUSTOM, start_at, human_times(len(CUSTOM), 1500, 90, rng)),
        type_text(b, CUSTOM, start_at, human_times(len(CUSTOM), 1500, 120, rng)),
    )
    results = await watcher.recv_until(Results, timeout=10)
    assert isinstance(results, Results) and [r.name for r in results.results] == ["ada", "bob"]
    progress = [m for m in watcher.received if isinstance(m, Progress)]
    assert len(progress) >= 5
    positions = [row[1] for m in progress for row in m.players if row[0] == race["seats"][0]["player_id"]]
    assert positions == sorted(positions) and positions[-1] == len(CUSTOM)
    # spectators cannot type
    await watcher.send(Input(seq=1, keys="a", times=[1]))
    err = await watcher.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.NOT_JOINED
    for c in (a, b, watcher):
        await c.close()


async def test_a_local_spectator_and_unknown_races(node: RunningNode) -> None:
    race = await node.create_race(["ada"], race_type="custom", custom_text=CUSTOM)
    a, _ = await seat(node, race["seats"][0])
    watcher, snapshot = await spectator(node, race["race_id"])
    assert snapshot.state in ("countdown", "running")
    assert isinstance(await watcher.recv_until(Start, timeout=5), Start)
    await watcher.send(Spectate(race_id="r-nope"))
    err = await watcher.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.ALREADY_JOINED
    for c in (a, watcher):
        await c.close()
    signer = TokenSigner(node.settings.secrets.token_secret)
    lost = await RawClient.connect(node.ws_url)
    await lost.send(Hello(token=signer.sign_player("plost", "lost", ttl_s=60, guest=True)))  # type: ignore[arg-type]
    await lost.recv_until(Welcome)
    await lost.send(Spectate(race_id="r-nope"))
    err = await lost.recv_until(Error)
    assert isinstance(err, Error) and err.code == ErrorCode.RACE_NOT_FOUND
    await lost.close()


async def test_a_garbage_frame_on_a_race_channel_costs_only_that_frame(
    node_factory: NodeFactory, redis_url: str
) -> None:
    """The relay turns msgpack into JSON for a JSON spectator: a frame it cannot read is logged and
    dropped, and the relay (and every race it carries) goes on."""
    owner = await node_factory("node-a")
    other = await node_factory("node-b")
    race = await owner.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, _), (b, _) = [await seat(owner, s) for s in race["seats"]]
    start_at = await wait_start(a)
    await asyncio.sleep(0.2)
    signer = TokenSigner(other.settings.secrets.token_secret)
    token = signer.sign_player("pwatcher", "watcher", ttl_s=60, guest=True)  # type: ignore[arg-type]
    watcher = await RawClient.connect(other.ws_url)
    await watcher.send(Hello(token=token), WireFormat.JSON)
    await watcher.recv_until(Welcome)
    await watcher.send(Spectate(race_id=race["race_id"]), WireFormat.JSON)
    await watcher.recv_until(Watching)
    redis = redis_client(redis_url)
    try:
        await redis.spublish(keys.race_updates(race["race_id"]), b"\xc1 not msgpack")
    finally:
        await redis.aclose()
    await asyncio.sleep(1.2)  # the owner learns the race is watched
    rng = random.Random(5)
    await asyncio.gather(
        type_text(a, CUSTOM, start_at, human_times(len(CUSTOM), 1500, 60, rng)),
        type_text(b, CUSTOM, start_at, human_times(len(CUSTOM), 1500, 70, rng)),
    )
    results = await watcher.recv_until(Results, timeout=10)
    assert isinstance(results, Results) and results.state == "finished"
    assert other.node.relay.tasks_alive()
    for c in (a, b, watcher):
        await c.close()
