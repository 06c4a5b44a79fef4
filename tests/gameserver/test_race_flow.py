"""Races over the real protocol with scripted clients: resume, DNF, cheating, the outbox."""

import asyncio
import random
import time

from arena.clock import now_ms
from arena.protocol import (
    Countdown,
    Hello,
    Input,
    Join,
    Joined,
    Leave,
    Progress,
    Results,
    Roster,
    Start,
    Welcome,
)
from tests.conftest import NodeFactory, RunningNode, read_outbox, with_race
from tests.gameserver.wsclient import RawClient

CUSTOM = "a quiet river bends past the old mill and on toward the sea"


async def seat(node: RunningNode, seat: dict[str, str]) -> tuple[RawClient, Joined]:
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=seat["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seat["ticket"]))
    joined = await client.recv_until(Joined)
    assert isinstance(joined, Joined)
    return client, joined


def human_times(n: int, start: int, mean_ms: float, rng: random.Random) -> list[int]:
    times, t = [], start
    for _ in range(n):
        t += max(15, int(rng.gauss(mean_ms, mean_ms * 0.4)))
        times.append(t)
    return times


async def wait_start(client: RawClient) -> int:
    start = await client.recv_until(Start, timeout=10)
    assert isinstance(start, Start)
    return start.start_at


async def type_text(
    client: RawClient, text: str, start_at: int, times: list[int], *, seq: int = 1, batch: int = 8
) -> int:
    """Send keys in batches, each when its last key's planned time has come (real pacing)."""
    for i in range(0, len(text), batch):
        chunk_times = times[i : i + batch]
        delay = (start_at + chunk_times[-1] - now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        await client.send(Input(seq=seq, keys=text[i : i + batch], times=chunk_times))
        seq += 1
    return seq


async def test_two_players_race_and_the_result_is_in_the_outbox_once(
    node: RunningNode, redis_url: str
) -> None:
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, joined_a), (b, _) = [await seat(node, s) for s in race["seats"]]
    assert joined_a.passage == CUSTOM
    assert isinstance(await a.recv_until(Countdown), Countdown)
    start_at = await wait_start(a)
    await wait_start(b)
    rng = random.Random(7)
    await asyncio.gather(
        type_text(a, CUSTOM, start_at, human_times(len(CUSTOM), 0, 60, rng)),
        type_text(b, CUSTOM, start_at, human_times(len(CUSTOM), 0, 110, rng)),
    )
    results = await a.recv_until(Results, timeout=15)
    assert isinstance(results, Results) and results.state == "finished"
    assert [(r.name, r.place) for r in results.results] == [("ada", 1), ("bob", 2)]
    assert 80 < results.results[0].wpm < 260 and results.results[0].accuracy == 100.0
    assert isinstance(await b.recv_until(Results), Results)
    records = await read_outbox(redis_url)
    assert [r.match_id for r in records] == [race["race_id"]]
    record = records[0]
    assert record.state == "finished" and record.passage_chars == len(CUSTOM)
    assert [p.name for p in record.participants] == ["ada", "bob"]
    assert all(p.keys == CUSTOM and len(p.key_times) == len(CUSTOM) for p in record.participants)
    # A second append of the same match (a retry after a lost reply) writes nothing.
    assert await node.node.outbox.append(record) is False
    assert len(await read_outbox(redis_url)) == 1
    for c in (a, b):
        await c.close()


async def test_a_dropped_player_resumes_within_the_grace_window(node_factory: NodeFactory) -> None:
    node = await node_factory(race=with_race(grace_s=5.0))
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, _), (b, _) = [await seat(node, s) for s in race["seats"]]
    start_at = await wait_start(a)
    rng = random.Random(3)
    times = human_times(len(CUSTOM), 0, 100, rng)
    half = len(CUSTOM) // 2
    seq = await type_text(a, CUSTOM[:half], start_at, times[:half])
    await asyncio.sleep(0.2)
    await a.close()  # the connection drops
    await b.recv_matching(Roster, lambda r: any(p.name == "ada" and not p.connected for p in r.players))
    await asyncio.sleep(1.0)
    a, rejoined = await seat(node, race["seats"][0])
    assert rejoined.state == "running"
    assert rejoined.you.position == half and rejoined.you.seq == seq - 1
    await type_text(a, CUSTOM[half:], start_at, [max(t, times[half - 1]) for t in times[half:]], seq=seq)
    await b.send(Leave())
    results = await a.recv_until(Results, timeout=15)
    assert isinstance(results, Results)
    rows = {r.name: r for r in results.results}
    assert rows["ada"].status == "finished" and rows["ada"].place == 1 and rows["ada"].position == len(CUSTOM)
    assert rows["bob"].status == "dnf"
    for c in (a, b):
        await c.close()


async def test_a_player_who_does_not_return_is_dnf(node_factory: NodeFactory) -> None:
    node = await node_factory(race=with_race(grace_s=1.0))
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, _), (b, _) = [await seat(node, s) for s in race["seats"]]
    start_at = await wait_start(a)
    await b.close()  # gone for good
    await type_text(a, CUSTOM, start_at, human_times(len(CUSTOM), 0, 100, random.Random(1)))
    results = await a.recv_until(Results, timeout=15)
    assert isinstance(results, Results)
    assert [(r.name, r.status, r.place) for r in results.results] == [
        ("ada", "finished", 1),
        ("bob", "dnf", None),
    ]
    await a.close()


async def test_cheaters_are_flagged_and_not_ranked(node: RunningNode) -> None:
    text = "the early bird catches the worm but the second mouse gets the cheese in the end"
    race = await node.create_race(["honest", "robot", "liar"], race_type="custom", custom_text=text)
    clients = [await seat(node, s) for s in race["seats"]]
    honest, robot, liar = (c for c, _ in clients)
    start_at = await wait_start(honest)
    for c in (robot, liar):
        await wait_start(c)
    # the robot types at 600 wpm with machine-regular 20 ms gaps
    robot_times = [20 * (i + 1) for i in range(len(text))]
    # the liar sends the whole text at once, claiming key times seconds in the future
    liar_times = human_times(len(text), 0, 150, random.Random(9))
    for seq, i in enumerate(range(0, len(text), 40), start=1):
        await liar.send(Input(seq=seq, keys=text[i : i + 40], times=liar_times[i : i + 40]))
    await asyncio.gather(
        type_text(honest, text, start_at, human_times(len(text), 0, 90, random.Random(5))),
        type_text(robot, text, start_at, robot_times),
    )
    results = await honest.recv_until(Results, timeout=20)
    assert isinstance(results, Results)
    rows = {r.name: r for r in results.results}
    assert rows["honest"].place == 1 and rows["honest"].flags == []
    assert rows["robot"].place is None and "too_fast" in rows["robot"].flags
    assert "robotic" in rows["robot"].flags
    assert rows["liar"].place is None
    for c in (honest, robot, liar):
        await c.close()


async def test_text_that_was_not_typed_never_counts(node: RunningNode) -> None:
    race = await node.create_race(["ada"], race_type="custom", custom_text=CUSTOM)
    a, _ = await seat(node, race["seats"][0])
    start_at = await wait_start(a)
    wrong = "z" * 40
    await type_text(a, wrong, start_at, human_times(40, 0, 80, random.Random(2)))
    await a.send(Leave())
    await asyncio.sleep(0.3)
    records = node.node.rooms[race["race_id"]].race.result_rows()
    assert records[0].position == 0 and records[0].status == "dnf" and records[0].wpm == 0.0
    await a.close()


async def test_a_heat_carries_its_tournament_into_the_outbox(node: RunningNode, redis_url: str) -> None:
    heat = {"tournament_id": "t1", "round": 2, "heat": 3}
    race = await node.create_race(["ada"], race_type="custom", custom_text=CUSTOM, heat=heat)
    a, _ = await seat(node, race["seats"][0])
    await wait_start(a)
    await a.send(Leave())
    await a.close()
    for _ in range(50):
        records = await read_outbox(redis_url)
        if records:
            break
        await asyncio.sleep(0.1)
    assert [(r.kind, r.tournament_id, r.round_no, r.heat_no) for r in records] == [("heat", "t1", 2, 3)]


async def test_a_frame_leaves_as_soon_as_every_room_mate_has_sent(node_factory: NodeFactory) -> None:
    """Clients sending at the race's instants share one frame, and it does not wait the window."""
    node = await node_factory(race=with_race(progress_window_ms=1500, input_cadence_ms=250))
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, joined_a), (b, joined_b) = [await seat(node, s) for s in race["seats"]]
    assert joined_a.input_every_ms == joined_b.input_every_ms == 250
    assert joined_a.input_offset_ms == joined_b.input_offset_ms
    assert 0 <= joined_a.input_offset_ms < 250
    start_at = await wait_start(a)
    await wait_start(b)
    await a.recv_until(Progress)  # the start's frame
    await b.recv_until(Progress)

    # One room-mate sends: the frame waits for the window (1.5 s here), in case the other sends.
    sent = time.monotonic()
    await a.send(Input(seq=1, keys="a", times=[now_ms() - start_at]))
    frame = await b.recv_until(Progress, timeout=5)
    assert isinstance(frame, Progress)
    assert time.monotonic() - sent >= 1.3

    # Both send: the frame leaves when the second input arrives, long before the window.
    sent = time.monotonic()
    await a.send(Input(seq=2, keys=" ", times=[now_ms() - start_at]))
    await b.send(Input(seq=1, keys="a", times=[now_ms() - start_at]))
    frame = await a.recv_until(Progress, timeout=5)
    assert isinstance(frame, Progress)
    assert time.monotonic() - sent < 0.5
    seqs = {row[0]: row[4] for row in frame.players}
    assert seqs == {p["player_id"]: 2 - i for i, p in enumerate(race["seats"])}
    await asyncio.sleep(0.2)  # the tick publishes the hot counts
    flushes = {
        reason: node.node.metrics.registry.get_sample_value(
            "arena_gameserver_progress_flushes_total", {"reason": reason}
        )
        for reason in ("instant", "window", "tick")
    }
    assert flushes == {"instant": 1, "window": 1, "tick": 1}  # the start's frame went with the tick
    for c in (a, b):
        await c.close()


async def test_keys_sent_right_after_the_start_instant_count_before_the_tick_sees_it(
    node_factory: NodeFactory,
) -> None:
    # A tick every 5 s: the race is still in countdown on the node when the first keys arrive.
    node = await node_factory(race=with_race(tick_hz=0.2))
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    (a, _), (b, _) = [await seat(node, s) for s in race["seats"]]
    countdown = await a.recv_until(Countdown)
    assert isinstance(countdown, Countdown)
    await asyncio.sleep(max(0.0, (countdown.start_at + 10 - now_ms()) / 1000))
    await a.send(Input(seq=1, keys="a q", times=[2, 5, 8]))
    start = await b.recv_until(Start)  # the input started the race on the server's clock
    assert isinstance(start, Start) and start.start_at == countdown.start_at
    frame = await b.recv_until(Progress)
    assert isinstance(frame, Progress)
    assert {row[0]: row[1] for row in frame.players}[race["seats"][0]["player_id"]] == 3
    await a.send(Leave())
    for c in (a, b):
        await c.close()
