"""A race rebuilt from its checkpoint scores what the original scored (pure: no I/O)."""

import dataclasses
import random
from types import SimpleNamespace

import aiohttp
import pytest
import redis.asyncio as aioredis
import structlog
import structlog.testing

from arena import keys
from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import PlayerStatus, RaceState, RaceType
from gameserver import node as node_module
from gameserver.checkpoint import (
    CheckpointError,
    decode_definition,
    decode_item,
    definition_of,
    encode_definition,
    encode_entries,
    encode_entries_json,
    encode_entry,
    rebuild,
)
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.metrics import NodeMetrics
from gameserver.node import Checkpoints, Node
from gameserver.passages import Passage, PassageKind
from gameserver.race import HeatTag, Race
from gameserver.room import RaceRoom
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings
from tests.conftest import ADMIN, FAST_RACE, NodeFactory

TEXT = "the quick brown fox jumps over the lazy dog and runs far away"
T0 = 1_000_000
SETTINGS = RaceSettings(countdown_s=3, wait_timeout_s=10, grace_s=15, quick_limit_s=60)


def journalled_race(seats: int, heat: HeatTag | None = None) -> Race:
    race = Race(
        race_id=RaceId("r1"),
        node_id=NodeId("n1"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind=PassageKind.QUICK, text=TEXT, source="test"),
        seats={PlayerId(f"p{i}") for i in range(1, seats + 1)},
        now=T0,
        settings=SETTINGS,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
        heat=heat,
        input_offset_ms=70,
    )
    race.journal = Journal()
    return race


def journal_of(entries: list[tuple[object, ...]]) -> Journal:
    journal = Journal()
    journal.extend(entries)
    return journal


def journal_entries(race: Race) -> list[tuple[object, ...]]:
    """What the race journalled and no tick took yet, decoded."""
    assert race.journal is not None
    return [tuple(e) for item, _ in race.journal.items() for e in decode_item(item)]


def checkpoint_of(race: Race) -> list[bytes]:
    """As Redis returns it: the definition, then the journal in appends of up to 3 entries
    (msgpack), single entries and appends in JSON (as older checkpoints hold them): the rebuild
    reads them all, as bytes."""
    journal = journal_entries(race)
    items: list[bytes] = [encode_definition(definition_of(race, "eu")).encode()]
    for i in range(0, len(journal), 6):
        items.append(encode_entries(journal[i : i + 3]))
        items.extend(encode_entry(e).encode() for e in journal[i + 3 : i + 4])
        if i + 4 < len(journal):
            items.append(encode_entries_json(journal[i + 4 : i + 6]).encode())
    return items


def type_some(race: Race, pid: str, upto: int, rng: random.Random, errors: bool = False) -> None:
    """Send the passage up to ``upto`` characters in batches of a few keys (with typos if asked)."""
    racer = race.racers[PlayerId(pid)]
    assert race.start_at is not None
    t = racer.typing.last_time_ms if racer.typing.last_time_ms > 0 else 0
    pos = racer.typing.position
    while pos < upto:
        n = min(rng.randint(1, 6), upto - pos)
        keys, times = "", []
        for ch in TEXT[pos : pos + n]:
            if errors and rng.random() < 0.1:
                t += rng.randint(60, 200)
                keys += "#\b"
                times += [t, t + 50]
                t += 50
            t += rng.randint(60, 200)
            keys += ch
            times.append(t)
        race.apply_input(racer, racer.seq + 1, keys, times, race.start_at + t + rng.randint(5, 80))
        pos = racer.typing.position


def scoring_state(race: Race) -> dict[str, object]:
    return {
        "state": race.state,
        "start_at": race.start_at,
        "ends_at": race.ends_at,
        "racers": {
            pid: (
                r.name,
                r.joined_at,
                r.seq,
                r.status,
                r.typing.position,
                r.typing.error_run,
                r.typing.log_keys(),
                r.typing.log_times(),
                r.finish_elapsed_ms,
                r.finished_at,
                sorted(r.flags),
                r.score,
            )
            for pid, r in race.racers.items()
        },
        "results": race.result_rows(),
    }


def test_a_rebuilt_race_scores_what_the_original_scored() -> None:
    rng = random.Random(15)
    race = journalled_race(4, heat=HeatTag("t9", 2, 3))
    for i in range(1, 5):
        race.join(PlayerId(f"p{i}"), f"player{i}", T0 + 100 * i)
    assert race.state is RaceState.COUNTDOWN
    race.advance(race.start_at or 0)
    race.racers[PlayerId("p1")].round_trips.expect(T0)
    race.racers[PlayerId("p1")].round_trips.answer(T0, T0 + 180)  # a finish judged with 90 ms off
    type_some(race, "p1", len(TEXT), rng)  # finishes
    type_some(race, "p2", len(TEXT), rng, errors=True)  # finishes, with corrections
    type_some(race, "p3", 30, rng)  # mid-passage
    type_some(race, "p4", 10, rng)
    race.leave(race.racers[PlayerId("p4")], (race.start_at or 0) + 20_000)  # gave up: DNF
    p3 = race.racers[PlayerId("p3")]
    race.apply_input(p3, p3.seq, "x", [p3.typing.last_time_ms + 10], (race.start_at or 0) + 21_000)  # resent
    assert race.racers[PlayerId("p1")].status is PlayerStatus.FINISHED
    assert race.racers[PlayerId("p1")].rtt_ms == 180.0

    rebuilt = rebuild(checkpoint_of(race), SETTINGS, ScoringLimits(), FairPlayLimits())

    assert scoring_state(rebuilt) == scoring_state(race)
    assert rebuilt.heat == HeatTag("t9", 2, 3) and rebuilt.input_offset_ms == 70
    assert not any(r.connected for r in rebuilt.racers.values())  # their sockets died with the node
    assert rebuilt.outgoing == []
    # Both abort alike: the partial results a reaper writes are the owner's.
    now = (race.start_at or 0) + 30_000
    race.abort(now, "node lost")
    rebuilt.abort(now, "node lost")
    assert rebuilt.match_record() == race.match_record()


def test_the_owners_instants_survive_other_settings() -> None:
    """A race started by its wait timeout, rebuilt where countdowns are longer: same instants."""
    race = journalled_race(3)
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 10_000)  # the wait ran out with one of three seats taken
    assert race.state is RaceState.COUNTDOWN
    race.advance(race.start_at or 0)
    type_some(race, "p1", 12, random.Random(1))
    other = RaceSettings(countdown_s=9, wait_timeout_s=30, quick_limit_s=60)
    rebuilt = rebuild(checkpoint_of(race), other, ScoringLimits(), FairPlayLimits())
    assert scoring_state(rebuilt) == scoring_state(race)


def test_the_definition_round_trips() -> None:
    race = journalled_race(2, heat=HeatTag("t1", 1, 1))
    d = definition_of(race, "eu")
    assert decode_definition(encode_definition(d)) == d


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [b"not json"],
        [b'["d",99]'],
        [b'["i","p1",1,1,"a",[1],null]'],  # no definition first
    ],
)
def test_an_unreadable_checkpoint_is_refused(raw: list[bytes]) -> None:
    with pytest.raises(CheckpointError):
        rebuild(raw, SETTINGS, ScoringLimits(), FairPlayLimits())


def test_an_entry_that_does_not_replay_is_refused() -> None:
    race = journalled_race(2)
    raw = checkpoint_of(race) + [b'["i","nobody",1,1,"a",[1],null]', b'["z"]']
    with pytest.raises(CheckpointError, match="item 1"):
        rebuild(raw, SETTINGS, ScoringLimits(), FairPlayLimits())


def test_a_race_is_appended_at_most_once_per_interval_and_deleted_once_written() -> None:
    race = journalled_race(2)
    room = RaceRoom(race, NodeMetrics())
    room.checkpoint_def, room.checkpointed = "definition", True

    def collect(now: int) -> Checkpoints:
        ckpt = Checkpoints(now, 1000)
        ckpt.collect(room)
        return ckpt

    first = collect(T0)  # the definition goes with the first tick, news or not
    assert [a.entries for a in first.appends] == [0] and first.written() == 0
    race.join(PlayerId("p1"), "ada", T0 + 10)
    assert not collect(T0 + 999)  # news, but within the interval
    race.join(PlayerId("p2"), "bob", T0 + 20)  # the race fills: the countdown journals too
    due = collect(T0 + 1000)
    assert [a.entries for a in due.appends] == [3]
    race.journal.append(("l", "p1", T0 + 1001))  # type: ignore[union-attr]  # journalled meanwhile
    assert due.written() == 3 and journal_entries(race) == [("l", "p1", T0 + 1001)]
    assert not collect(T0 + 1500)
    room.finalized = True
    done = collect(T0 + 1600)
    assert done.done == [room] and not done.appends
    done.written()
    assert not room.checkpointed and race.journal is None


def _due_rooms(n: int, entries: int) -> list[RaceRoom]:
    """``n`` checkpointed races, definitions written, each with ``entries`` journal entries."""
    metrics = NodeMetrics()
    rooms = []
    for i in range(n):
        race = journalled_race(2)
        race.id = RaceId(f"r{i}")
        race.journal = journal_of([("l", "p1", T0 + k) for k in range(entries)])
        room = RaceRoom(race, metrics)
        room.checkpointed = True
        rooms.append(room)
    return rooms


def test_a_tick_appends_a_bounded_number_of_races_and_the_rest_next_tick() -> None:
    per_tick = node_module.CHECKPOINT_COMMANDS_PER_TICK
    rooms = _due_rooms(per_tick + 7, 3)
    rooms[0].checkpoint_def = "definition"  # a new race: three commands
    first = Checkpoints(T0, 1000)
    for room in rooms:
        first.collect(room)
    assert len(first.appends) == per_tick - 2 and first.deferred == 9
    assert first.unwritten == 3 * len(rooms)
    assert first.written() == 3 * (per_tick - 2)
    second = Checkpoints(T0 + 100, 1000)
    for room in rooms:
        second.collect(room)
    assert [a.room for a in second.appends] == rooms[-9:] and second.deferred == 0


def test_a_long_journal_is_kept_encoded_and_goes_in_bounded_appends_oldest_first() -> None:
    per_item = node_module.CHECKPOINT_ENTRIES_PER_ITEM
    (room,) = _due_rooms(1, per_item)
    race = room.race
    journal = journal_entries(race)
    room.checkpoint_at = T0  # not due: its journal is encoded all the same, compact
    early = Checkpoints(T0 + 10, 1000)
    early.collect(room)
    assert not early.appends and early.compacted == 1 and early.unwritten == per_item
    assert race.journal is not None and len(race.journal) == 0
    assert [n for _, n in room.checkpoint_backlog] == [per_item]
    # A backlog larger than one append carries (what failed appends left): oldest first, in turns.
    big = b"\x91" + b"\xc0" * (node_module.CHECKPOINT_BYTES_PER_APPEND // 2)  # an array of nils
    room.checkpoint_backlog += [(big, 1), (big, 1)]
    race.journal.append(("l", "p2", T0 + 1500))
    first = Checkpoints(T0 + 2000, 1000)
    first.collect(room)
    assert first.split == 1 and first.appends[0].entries == per_item + 1  # the journal's item and one big one
    assert decode_item(first.appends[0].items[0]) == [list(e) for e in journal]
    assert first.written() == per_item + 1
    second = Checkpoints(T0 + 2100, 1000)  # due again at once: it is behind
    second.collect(room)
    assert second.appends[0].items == [big, room.checkpoint_backlog[1][0]] and second.written() == 2
    assert decode_item(second.appends[0].items[1]) == [["l", "p2", T0 + 1500]]
    assert room.checkpoint_backlog == []
    race.journal.append(("l", "p1", T0 + 2150))
    caught_up = Checkpoints(T0 + 2200, 1000)
    caught_up.collect(room)
    assert not caught_up  # caught up: the interval again


def test_a_failed_append_keeps_its_items_and_waits_its_interval() -> None:
    (room,) = _due_rooms(1, 4)
    race = room.race
    before = journal_entries(race)
    ckpt = Checkpoints(T0 + 5000, 1000)
    ckpt.collect(room)
    assert race.journal is not None and len(race.journal) == 0  # taken: what comes meanwhile is new
    race.journal.append(("l", "p2", T0 + 5001))
    ckpt.failed()
    assert [n for _, n in room.checkpoint_backlog] == [4]  # encoded once, kept for the retry
    next_tick = Checkpoints(T0 + 5100, 1000)
    next_tick.collect(room)
    assert not next_tick and next_tick.unwritten == 5  # not every race again at the next tick
    retry = Checkpoints(T0 + 6000, 1000)
    retry.collect(room)
    assert [a.entries for a in retry.appends] == [5]
    replayed = [e for item in retry.appends[0].items for e in decode_item(item)]
    assert replayed == [list(e) for e in [*before, ("l", "p2", T0 + 5001)]]
    assert retry.written() == 5 and room.checkpoint_backlog == []


def test_an_entry_msgpack_cannot_encode_goes_as_json_between_the_others() -> None:
    (room,) = _due_rooms(1, 2)
    assert room.race.journal is not None
    room.race.journal.append(("j", "p1", "bad \ud800 name", T0))
    room.race.journal.append(("l", "p1", T0 + 1))
    ckpt = Checkpoints(T0, 1000)
    ckpt.collect(room)
    before, bad, after = ckpt.appends[0].items
    assert ckpt.appends[0].entries == 4 and isinstance(bad, str)
    assert decode_item(bad) == [["j", "p1", "bad \ud800 name", T0]]
    assert decode_item(before) == [["l", "p1", T0], ["l", "p1", T0 + 1]]
    assert decode_item(after) == [["l", "p1", T0 + 1]]


def test_checkpoints_behind_is_said_when_they_lag_not_when_the_bound_spreads_a_burst() -> None:
    node = SimpleNamespace(
        metrics=NodeMetrics(),
        settings=SimpleNamespace(race=SETTINGS),  # checkpoint_ms: 2000
        log=structlog.get_logger(),
        _checkpoint_deferring_since=None,
        _checkpoint_lag_logged_ms=0,
    )

    def tick(now: int, deferred: int = 0, split: int = 0) -> list[dict[str, object]]:
        ckpt = Checkpoints(now, 2000)
        ckpt.deferred, ckpt.split, ckpt.unwritten = deferred, split, 99
        with structlog.testing.capture_logs() as logs:
            Node._checkpoint_lag(node, ckpt, now)  # type: ignore[arg-type]
        return [e for e in logs if e["event"] == "checkpoints_behind"]

    assert tick(T0, deferred=500) == [] and tick(T0 + 1900, deferred=5) == []  # a burst spread
    assert tick(T0 + 2000) == []  # a tick without deferrals ends the run
    assert tick(T0 + 2100, deferred=5) == [] and tick(T0 + 4100, deferred=5)[0]["deferred"] == 5
    assert tick(T0 + 5000, split=1) == []  # at most one line every CHECKPOINT_LAG_LOG_MS
    assert tick(T0 + 14_100, split=1)[0]["unwritten_entries"] == 99
    deferred = node.metrics.checkpoint_deferred._value.get()  # type: ignore[attr-defined]
    assert deferred == 500 + 5 + 5 + 5 + 1 + 1


async def test_a_race_created_through_the_admin_endpoint_is_checkpointed_before_the_answer(
    node_factory: NodeFactory, redis_url: str
) -> None:
    # A tick every 5 s: whatever the checkpoint holds right after the answer, the answer wrote it.
    node = await node_factory(race=dataclasses.replace(FAST_RACE, tick_hz=0.2))
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            for _ in range(3):  # the first tick may come at any moment: three races, three checks
                resp = await http.post(
                    f"{node.admin_url}/admin/races",
                    json={"race_type": "quick", "players": [{"name": "ada"}, {"name": "bob"}]},
                )
                assert resp.status == 201
                race_id = RaceId((await resp.json())["race_id"])
                items = await redis.lrange(keys.race_checkpoint(race_id), 0, -1)
                assert len(items) == 1 and decode_definition(items[0]).race_id == race_id
                assert await redis.sismember(keys.node_checkpoints("node-a"), race_id)
                assert await redis.ttl(keys.race_checkpoint(race_id)) > 0
        room = node.node.rooms[race_id]
        assert room.checkpoint_def is None and not room.checkpoint_pending  # the tick will not write it again
    finally:
        await redis.aclose()


def test_a_backlog_past_its_bound_is_dropped_and_the_checkpoint_stays_a_prefix_that_replays() -> None:
    """A node whose appends fall ever further behind (saturated) keeps at most the bound per race:
    past it the race's backlog goes and it journals nothing more; what Redis holds is the race's
    first entries, in order, and replays to the race as it was then."""
    race = journalled_race(2)
    room = RaceRoom(race, NodeMetrics())
    room.checkpointed = True
    room.checkpoint_def = encode_definition(definition_of(race, "eu"))
    redis_list: list[bytes | str] = []  # what the checkpoint's list holds

    def tick(now: int, limit: int, write: bool) -> Checkpoints:
        ckpt = Checkpoints(now, 1000, limit)
        ckpt.collect(room)
        if write:
            for a in ckpt.appends:
                redis_list.extend([room.checkpoint_def] if room.checkpoint_def else [])
                redis_list.extend(a.items)
            ckpt.written()
        else:
            ckpt.failed()
        return ckpt

    race.join(PlayerId("p1"), "ada", T0 + 10)
    tick(T0 + 1000, 1 << 20, write=True)  # the definition and the join are in Redis
    race.join(PlayerId("p2"), "bob", T0 + 1100)
    rng = random.Random(7)
    type_some(race, "p1", 20, rng)
    ckpt = tick(T0 + 2000, 1 << 20, write=False)  # Redis does not take it: backlog
    assert room.checkpoint_backlog and not ckpt.frozen
    size = sum(len(item) for item, _ in room.checkpoint_backlog)
    type_some(race, "p2", 10, rng)
    frozen = tick(T0 + 2100, size - 1, write=True)  # past the bound: dropped, nothing appended
    assert frozen.frozen == [room] and not frozen.appends
    assert room.checkpoint_frozen and room.checkpoint_backlog == [] and race.journal is None
    type_some(race, "p2", 20, rng)  # the race goes on; its checkpoint does not
    assert race.journal is None and not tick(T0 + 5000, size - 1, write=True)
    rebuilt = rebuild(redis_list, SETTINGS, ScoringLimits(), FairPlayLimits())
    assert set(rebuilt.racers) == {PlayerId("p1")}  # the race as Redis last had it


def test_a_frozen_race_still_gets_its_definition_written() -> None:
    """Frozen before its first append: the definition still goes, so the reapers find the race."""
    race = journalled_race(1)
    room = RaceRoom(race, NodeMetrics())
    room.checkpointed = True
    room.checkpoint_def = "definition"
    room.checkpoint_backlog = [(b"\x91\xc0" * 100, 1)]
    ckpt = Checkpoints(T0, 1000, 16)
    ckpt.collect(room)
    assert ckpt.frozen == [room] and [a.items for a in ckpt.appends] == [[]]
    assert ckpt.commands == 3  # RPUSH of the definition, EXPIRE, SADD


def test_frozen_checkpoints_are_counted_every_time_and_said_once() -> None:
    node = SimpleNamespace(
        metrics=NodeMetrics(),
        settings=SimpleNamespace(race=SETTINGS),
        log=structlog.get_logger(),
        _frozen_said=False,
    )
    rooms = _due_rooms(3, 0)
    with structlog.testing.capture_logs() as logs:
        Node._checkpoints_frozen(node, rooms[:2], "backlog")  # type: ignore[arg-type]
        Node._checkpoints_frozen(node, rooms[2:], "backlog")  # type: ignore[arg-type]
    said = [e for e in logs if e["event"] == "checkpoints_frozen"]
    assert len(said) == 1 and said[0]["log_level"] == "warning" and said[0]["races"] == 2
    assert said[0]["backlog_kb"] == SETTINGS.checkpoint_backlog_kb
    sample = node.metrics.registry.get_sample_value
    frozen = sample("arena_gameserver_checkpoints_frozen_total", {"why": "backlog"})
    assert frozen == 3
