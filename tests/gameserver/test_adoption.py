"""Adoption: a live node runs a dead node's race on for its players (issue 15, item 2).

1. Pure: the outage moves the time limit, a start still to come and the absent racers' grace;
   a checkpoint with the adopter's entry replays to the moved instants.
2. Two live nodes, a dead node's checkpointed race: exactly one adopts it; a spectator on the
   other node sees it at the adopter; a join whose ticket names the dead node is redirected by
   the other node to the adopter, which seats the player with the server's view; the race
   finishes there and is written once, finished.
3. The proof (a few seconds): two node processes, bots racing on one, ``kill -9`` of it mid-race;
   the other adopts the race, the bots rejoin it and finish, and the outbox holds the race once,
   finished, with every key each player typed.
"""

import asyncio
import signal
from random import Random
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.codec import WireFormat
from arena.ids import NodeId, PlayerId, RaceId, new_race_id
from arena.protocol import (
    Hello,
    Input,
    Join,
    Joined,
    Leave,
    PlayerStatus,
    RaceState,
    RaceType,
    Redirect,
    Results,
    Spectate,
    Watching,
    Welcome,
)
from arena.tokens import TokenSigner
from gameserver.adoption import adopted_journal, extend_by_outage
from gameserver.checkpoint import encode_entries, replay
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.passages import Passage, PassageKind
from gameserver.race import Race
from gameserver.scoring import ScoringLimits
from simulators.bot import Bot
from simulators.typing import TypingProfile
from tests.conftest import ADMIN, FAST_RACE, NodeFactory, RunningNode, read_outbox
from tests.gameserver.test_checkpoint import checkpoint_of
from tests.gameserver.test_process import ProcessStarter, run_bots, start_process  # noqa: F401
from tests.gameserver.test_reaper import journalled, wait_for
from tests.gameserver.wsclient import RawClient

TEXT = "The quick brown fox jumps over the lazy dog."
SECRET = b"test-secret-0123456789"  # the node_factory nodes' token secret


def ghost_race(now: int, race_id: RaceId | None = None) -> Race:
    """A race of the dead node ``ghost``, running for 2 s, ada 10 keys in (seq 1), bob none."""
    race = Race(
        race_id=race_id or new_race_id(),
        node_id=NodeId("ghost"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind=PassageKind.QUICK, text=TEXT, source="test"),
        seats={PlayerId("p1"), PlayerId("p2")},
        now=now - 3000,
        settings=FAST_RACE,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
    )
    race.journal = Journal()
    race.join(PlayerId("p1"), "ada", now - 3000)
    race.join(PlayerId("p2"), "bob", now - 2990)  # full: the countdown (1 s) begins
    assert race.start_at is not None
    race.advance(race.start_at)
    race.apply_input(race.racers[PlayerId("p1")], 1, TEXT[:10], [100 * i for i in range(1, 11)], now - 1500)
    return race


# ---- pure --------------------------------------------------------------------------------



def solo_race(race_id: RaceId, now: int) -> Race:
    """A quick race with one seat, p1, nobody joined yet."""
    return Race(
        race_id=race_id,
        node_id=NodeId("ghost"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind=PassageKind.QUICK, text=TEXT, source="test"),
        seats={PlayerId("p1")},
        now=now,
        settings=FAST_RACE,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
    )

def test_the_outage_moves_the_time_limit_and_the_grace_windows() -> None:
    now = 10_000_000
    race = ghost_race(now)
    ada, bob = race.racers[PlayerId("p1")], race.racers[PlayerId("p2")]
    race.disconnect(ada, now - 1000)
    race.leave(bob, now - 900)  # done: nothing of his moves
    start, ends = race.start_at, race.ends_at
    assert start is not None and ends is not None
    extend_by_outage(race, 2500)
    assert (race.start_at, race.ends_at) == (start, ends + 2500)  # running: the start stays
    assert ada.disconnected_at == now - 1000 + 2500
    race.advance(now - 1000 + FAST_RACE.grace_s * 1000 + 2000)  # past the old grace, not the new
    assert ada.status is PlayerStatus.RACING

    waiting = solo_race(RaceId("r2"), now)
    extend_by_outage(waiting, 4000)  # nobody came yet: the wait for players runs 4 s longer
    waiting.advance(now + int(FAST_RACE.wait_timeout_s * 1000) + 3999)
    assert waiting.state is RaceState.WAITING
    waiting.advance(now + int(FAST_RACE.wait_timeout_s * 1000) + 4000)
    assert (waiting.state, waiting.end_reason) == (RaceState.ABORTED, "nobody joined")

    counting = solo_race(RaceId("r3"), now)
    counting.join(PlayerId("p1"), "ada", now)  # counting down
    assert counting.start_at is not None and counting.ends_at is not None
    start, ends = counting.start_at, counting.ends_at
    extend_by_outage(counting, 700)
    assert (counting.start_at, counting.ends_at) == (start + 700, ends + 700)  # the start had not come


def test_a_checkpoint_with_the_adopters_entry_replays_to_the_moved_instants() -> None:
    now = 10_000_000
    race = ghost_race(now)
    raw = checkpoint_of(race)
    rebuilt, last = replay(raw, FAST_RACE, ScoringLimits(), FairPlayLimits())
    assert last == now - 1500  # the input, the checkpoint's last word
    extend_by_outage(rebuilt, 3000)
    entries = adopted_journal(rebuilt, now)
    again, _ = replay([*raw, encode_entries(entries)], FAST_RACE, ScoringLimits(), FairPlayLimits())
    assert (again.start_at, again.ends_at) == (rebuilt.start_at, rebuilt.ends_at)
    assert again.racers[PlayerId("p1")].seq == 1 and again.racers[PlayerId("p1")].typing.position == 10


# ---- two live nodes, a dead node's race ------------------------------------------------------


async def join(url: str, player: str, name: str, ticket: str) -> RawClient:
    signer = TokenSigner(SECRET)
    client = await RawClient.connect(url)
    await client.send(Hello(token=signer.sign_player(PlayerId(player), name, ttl_s=600, guest=True)))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=ticket))
    return client


async def join_spectator(url: str, race_id: RaceId) -> RawClient:
    client = await RawClient.connect(url)
    token = TokenSigner(SECRET).sign_player(PlayerId("w1"), "wes", ttl_s=600, guest=True)
    await client.send(Hello(token=token))
    await client.recv_until(Welcome)
    await client.send(Spectate(race_id=race_id))
    return client


def adopted(node: RunningNode) -> float:
    """The node's count of races it adopted (``arena_gameserver_races_reaped_total{outcome="adopted"}``)."""
    samples = node.node.metrics.races_reaped.collect()[0].samples
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["outcome"] == "adopted")


async def test_one_live_node_adopts_a_dead_nodes_race_and_its_players_finish_there(
    node_factory: NodeFactory, redis_url: str
) -> None:
    now = now_ms()
    race = ghost_race(now)
    rid = race.id
    ends_before = race.ends_at
    assert ends_before is not None
    redis = aioredis.Redis.from_url(redis_url)
    clients: list[RawClient] = []
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(keys.race_checkpoint(rid), *checkpoint_of(race))
            pipe.sadd(keys.node_checkpoints("ghost"), rid)
            pipe.hset(keys.CHECKPOINT_NODES, "ghost", "local")
            await pipe.execute()
        nodes = [await node_factory("node-a"), await node_factory("node-b")]

        async def owned() -> bool:
            return bool(await redis.exists(keys.race_owner(rid)))

        await wait_for(owned, "the race to be adopted", 10)
        owner = (await redis.get(keys.race_owner(rid))).decode()
        adopter, other = nodes if owner == "node-a" else nodes[::-1]
        room = adopter.node.room(rid)
        assert room is not None and other.node.room(rid) is None
        assert room.race.node_id == owner and room.race.state is RaceState.RUNNING
        assert room.race.ends_at is not None and room.race.ends_at >= ends_before + 1500  # the outage
        assert await redis.sismember(keys.node_checkpoints(owner), rid)
        assert not await redis.exists(keys.node_checkpoints("ghost"), keys.race_claim(rid))
        assert [adopted(n) for n in nodes].count(1.0) == 1 and sum(adopted(n) for n in nodes) == 1

        # A spectator (of the dead node, say) watches it on any node: the adopter's mirror.
        async def mirrored() -> bool:
            return await redis.hget(keys.race_state(rid), "node") == owner.encode()

        await wait_for(mirrored, "the adopter's mirror", 5)
        watcher = await join_spectator(other.ws_url, rid)
        clients.append(watcher)
        watching = await watcher.recv_until(Watching)
        assert isinstance(watching, Watching)
        assert (watching.node_id, watching.state, watching.ends_at) == (owner, "running", room.race.ends_at)

        # Ada's ticket names the dead node: the other node sends her to the adopter.
        signer = TokenSigner(SECRET)
        ticket = signer.sign_join(PlayerId("p1"), "ada", rid, NodeId("ghost"), ttl_s=600)
        lost = await join(other.ws_url, "p1", "ada", ticket)
        clients.append(lost)
        redirect = await lost.recv_until(Redirect)
        assert isinstance(redirect, Redirect)
        assert (redirect.url, redirect.node_id, redirect.race_id) == (adopter.ws_url, owner, rid)
        assert await lost.wait_closed() == 4005

        # The adopter honours it: the server's view, then she types the rest and finishes.
        ada = await join(adopter.ws_url, "p1", "ada", ticket)
        clients.append(ada)
        joined = await ada.recv_until(Joined)
        assert isinstance(joined, Joined)
        assert (joined.race_id, joined.state, joined.ends_at) == (rid, "running", room.race.ends_at)
        assert (joined.you.seq, joined.you.position, joined.you.status) == (1, 10, "racing")
        rest = TEXT[10:]
        await ada.send(Input(seq=2, keys=rest, times=[1000 + 40 * i for i in range(1, len(rest) + 1)]))
        bob_ticket = signer.sign_join(PlayerId("p2"), "bob", rid, NodeId("ghost"), ttl_s=600)
        bob = await join(adopter.ws_url, "p2", "bob", bob_ticket)
        clients.append(bob)
        await bob.recv_until(Joined)
        await bob.send(Leave())
        results = await ada.recv_until(Results, timeout=10)
        assert isinstance(results, Results) and results.state == "finished"

        async def written() -> bool:
            return bool(await read_outbox(redis_url))

        await wait_for(written, "the result in the outbox", 5)
        records = await read_outbox(redis_url)
        assert [(r.match_id, r.state, r.node_id) for r in records] == [(rid, "finished", owner)]
        by_name = {p.name: p for p in records[0].participants}
        assert (by_name["ada"].status, by_name["ada"].keys) == ("finished", TEXT)
        assert by_name["bob"].status == "dnf"
    finally:
        for c in clients:
            await c.close()
        await redis.aclose()


# ---- the proof: kill -9 with real clients ------------------------------------------------------


async def test_kill_9_mid_race_the_race_finishes_on_another_node(
    start_process: ProcessStarter,  # noqa: F811
    redis_url: str,
) -> None:
    fast = {"ARENA_RACE_CHECKPOINT_MS": "300", "ARENA_RACE_GRACE_S": "10"}
    doomed = await start_process("proc-doomed", **fast)
    live = await start_process("proc-live", **fast)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        body = {"race_type": "custom", "custom_text": TEXT, "players": [{"name": "ada"}, {"name": "bob"}]}
        resp = await http.post(f"{doomed.admin_url}/admin/races", json=body)
        assert resp.status == 201
        race: dict[str, Any] = await resp.json()
    rid = RaceId(race["race_id"])
    profile = TypingProfile(wpm=90.0, error_rate=0.0, jitter_cv=0.3, notice_delay_chars=0, pause_chance=0.0)
    live_url = f"ws://127.0.0.1:{live.port}/ws"
    bots = [
        Bot(
            race["url"],
            s["player_token"],
            s["ticket"],
            profile,
            Random(i),
            fmt=WireFormat.MSGPACK,
            name=f"bot{i}",
            reconnect_s=15.0,
            fallback_urls=[live_url],
        )
        for i, s in enumerate(race["seats"])
    ]
    reports = run_bots(bots, 30)
    redis = aioredis.Redis.from_url(redis_url)
    try:

        async def typing() -> bool:  # 2 joins, the countdown, then inputs of both
            return await journalled(redis, rid) >= 5

        await wait_for(typing, "inputs in the checkpoint", 10)
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait()
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def owned() -> bool:
            return bool(await redis.exists(keys.race_owner(rid)))

        await wait_for(owned, "the adoption", 10)
        adopted_s = loop.time() - killed_at
        done = await reports
        took_s = loop.time() - killed_at
        print(f"adopted {adopted_s:.2f} s after the kill; both bots had their results {took_s:.2f} s after")
        for r in done:
            assert r.failure is None, (r.name, r.failure, r.errors, r.close_code)
            assert r.results is not None and r.results.state == "finished"
            assert r.my_row is not None and r.my_row.status == "finished"
            assert r.reconnects == 1
        assert adopted_s < 5 and took_s < 20  # dead after 3 heartbeats of 0.5 s, then a reaper round
        assert (await redis.get(keys.race_owner(rid))) == b"proc-live"
        await asyncio.sleep(1.0)  # more reaper rounds: still written once
        records = await read_outbox(redis_url)
        assert [(r.match_id, r.state, r.node_id) for r in records] == [(rid, "finished", "proc-live")]
        # Every key the players typed, each once (the resent inputs were idempotent by seq).
        parts = records[0].participants
        assert len(parts) == 2
        assert all(p.status == "finished" and p.keys == TEXT and p.typed_chars == len(TEXT) for p in parts)
    finally:
        reports.cancel()
        await asyncio.gather(reports, return_exceptions=True)
        await redis.aclose()
