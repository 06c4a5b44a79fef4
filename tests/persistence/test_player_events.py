"""Per-player Kafka events: one per player a record concerns, keyed by the player id.

Pure (what a record gives) and against the noida-db broker (a player's events on one partition,
in the order they were produced, next to the unchanged race messages)."""

from __future__ import annotations

import random

import redis.asyncio as aioredis

from persistence import synthetic
from persistence.player_events import decode_event, player_events
from persistence.review import ReviewDecisionRecord, review_match_id
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, drained, final, kafka_keys, kafka_messages, push, wait_until


def test_a_race_gives_one_event_per_participant_keyed_by_player() -> None:
    record = synthetic.match(random.Random(3), ended_at=1_790_000_000_000, players=["pa", "pb", "pc"])
    events = player_events(record)
    assert [e.player_id for e in events] == ["pa", "pb", "pc"]
    first = decode_event(events[0].value)
    p = record.participants[0]
    assert first["kind"] == "race_result" and first["match_id"] == record.match_id
    assert (first["place"], first["wpm"], first["status"]) == (p.place, p.wpm, p.status)
    assert first["at"] == record.ended_at and "key_times" not in first  # the keylog stays on the race topic


def test_a_final_and_a_review_decision_give_their_players_events() -> None:
    record = final("t-1", ["pa", "pb"])
    events = player_events(record)
    assert [(e.player_id, e.kind) for e in events] == [("pa", "tournament_final"), ("pb", "tournament_final")]
    assert decode_event(events[0].value)["rank"] == 1
    decision = ReviewDecisionRecord(
        match_id=review_match_id("r-1", "pa"),
        race_id="r-1",
        player_id="pa",
        decision="rejected",
        reason="replayed timing",
        decided_at=1_790_000_000_000,
    )
    [event] = player_events(decision)
    body = decode_event(event.value)
    assert (event.player_id, body["kind"], body["decision"], body["match_id"]) == (
        "pa",
        "review_decision",
        "rejected",
        "r-1",
    )


async def test_each_players_events_reach_one_partition_in_order(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    rng = random.Random(11)
    # Six races over time among three players: each plays several.
    records = [
        synthetic.match(
            rng, ended_at=1_790_000_000_000 + i * 60_000, players=rng.sample(["pa", "pb", "pc"], 2)
        )
        for i in range(6)
    ]
    await start_service(env.settings())
    await push(redis, records)
    await wait_until(lambda: drained(redis), 20, "every entry acknowledged")
    assert set(await kafka_keys(env.bootstrap, env.race_topic, 6)) == {r.match_id for r in records}
    total = sum(len(r.participants) for r in records)
    messages = await kafka_messages(env.bootstrap, env.player_topic, 3, count=total)
    assert len(messages) == total
    by_player: dict[str, list[dict[str, object]]] = {}
    for key, headers, value in messages:
        assert headers["kind"] == b"race_result"
        by_player.setdefault(key, []).append(decode_event(value))
    for player, events in by_player.items():
        expected = [r.match_id for r in records if any(p.player_id == player for p in r.participants)]
        assert [e["match_id"] for e in events] == expected  # once each, in outbox order
        assert all(e["player_id"] == player for e in events)
