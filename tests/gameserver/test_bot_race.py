"""Five bots race a full race over the real protocol; ranking and figures must hold up."""

import asyncio
import random

import redis.asyncio as aioredis

from arena.rating import RatingStore
from simulators.bot import Bot
from simulators.typing import TypingProfile
from tests.conftest import RunningNode, read_outbox

TEXT = (
    "Rain moved across the valley in slow grey sheets, and the farmers on the ridge "
    "watched it come, counting the minutes until the first drops reached the barn."
)
SPEEDS = [200.0, 170.0, 145.0, 125.0, 105.0]  # far enough apart that the order is the speed order


async def test_five_bots_race_to_completion(node: RunningNode, redis_url: str) -> None:
    names = [f"bot-{i}" for i in range(1, 6)]
    race = await node.create_race(names, race_type="custom", custom_text=TEXT)
    bots = [
        Bot(
            node.ws_url,
            seat["player_token"],
            seat["ticket"],
            TypingProfile(wpm=wpm, error_rate=0.02, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.03),
            random.Random(i),
            name=seat["name"],
        )
        for i, (seat, wpm) in enumerate(zip(race["seats"], SPEEDS, strict=True))
    ]
    reports = await asyncio.gather(*(b.run(timeout_s=40) for b in bots))
    assert all(r.failure is None and r.finished and not r.errors for r in reports), [
        (r.name, r.failure, r.errors) for r in reports
    ]
    results = reports[0].results
    assert results is not None and results.state == "finished"
    rows = results.results
    # Places 1..5, ordered by judged time, fastest typist first.
    assert [r.place for r in rows] == [1, 2, 3, 4, 5]
    assert [r.name for r in rows] == names
    assert [r.elapsed_ms for r in rows] == sorted(r.elapsed_ms for r in rows)
    for row, wpm in zip(rows, SPEEDS, strict=True):
        assert row.status == "finished" and row.flags == [] and row.position == len(TEXT)
        assert 0.7 * wpm < row.wpm < 1.3 * wpm, (row.name, row.wpm, wpm)
        assert row.raw_wpm >= row.wpm and 85.0 <= row.accuracy <= 100.0
        assert 0.0 <= row.consistency <= 100.0
    # Every bot saw the same results, and the race is in the outbox exactly once.
    assert all(r.results == results for r in reports)
    records = await read_outbox(redis_url)
    assert [r.match_id for r in records] == [race["race_id"]]
    assert len(records[0].participants) == 5
    # Ratings moved once: the winner up, the last down.
    redis = aioredis.Redis.from_url(redis_url)
    ratings = await RatingStore(redis).get_many([r.player_id for r in rows])
    await redis.aclose()
    assert ratings[rows[0].player_id].rating > 1500 > ratings[rows[-1].player_id].rating
    # Bots measured their own input-to-broadcast latency from progress rows.
    assert all(r.progress_latencies_ms for r in reports)
