"""Fair play v2 through a real node: what the server saw (arrival times) outweighs what clients claim."""

from __future__ import annotations

import asyncio
import random

from arena.clock import now_ms
from arena.protocol import Input, Results
from simulators.typing import TypingProfile, plan_keystrokes
from tests.conftest import RunningNode
from tests.gameserver.test_race_flow import seat, wait_start
from tests.gameserver.wsclient import RawClient

TEXT = (
    "a quiet river bends past the old mill and on toward the sea, where gulls wait on the "
    "posts for the boats to come home with their nets full"
)
PERSON = TypingProfile(wpm=150, error_rate=0.02, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.03)


async def send_at_instants(
    client: RawClient, plan: list[tuple[str, int]], start_at: int, every_ms: int, claim_shift_ms: int = 0
) -> None:
    """Send what was typed since the last instant, every ``every_ms`` (an honest client at 250,
    one holding keys back at 3000), claiming the typed times (shifted by ``claim_shift_ms``)."""
    seq, i, instant = 0, 0, every_ms
    while i < len(plan):
        delay = (start_at + instant - now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        j = i
        while j < len(plan) and plan[j][1] <= instant and j - i < 64:
            j += 1
        if j > i:
            seq += 1
            chunk = plan[i:j]
            times = [max(0, t + claim_shift_ms) for _, t in chunk]
            await client.send(Input(seq=seq, keys="".join(k for k, _ in chunk), times=times))
            i = j
        instant += every_ms


async def paste(client: RawClient, plan: list[tuple[str, int]], start_at: int) -> None:
    """Smart paste: nothing until a fast typist would be done, then the whole text with
    human-looking claimed times, in as few messages as the node allows."""
    finish = plan[-1][1]
    await asyncio.sleep(max(0.0, (start_at + finish - now_ms()) / 1000))
    for seq, i in enumerate(range(0, len(plan), 64), start=1):
        chunk = plan[i : i + 64]
        await client.send(Input(seq=seq, keys="".join(k for k, _ in chunk), times=[t for _, t in chunk]))


async def test_the_node_judges_by_arrivals_not_by_claimed_times(node: RunningNode) -> None:
    race = await node.create_race(["honest", "paster", "holder"], race_type="custom", custom_text=TEXT)
    clients = [await seat(node, s) for s in race["seats"]]
    honest, paster, holder = (c for c, _ in clients)
    start_at = await wait_start(honest)
    for c in (paster, holder):
        await wait_start(c)
    rng = random.Random(14)
    honest_plan = plan_keystrokes(TEXT, PERSON, rng)
    typist = TypingProfile(wpm=170, error_rate=0.0, jitter_cv=0.4, notice_delay_chars=0, pause_chance=0.0)
    fabricated = plan_keystrokes(TEXT, typist, rng)
    held_plan = plan_keystrokes(TEXT, PERSON, rng)
    await asyncio.gather(
        send_at_instants(honest, honest_plan, start_at, 250),
        paste(paster, fabricated, start_at),
        send_at_instants(holder, held_plan, start_at, 3000),
    )
    results = await honest.recv_until(Results, timeout=30)
    assert isinstance(results, Results)
    rows = {r.name: r for r in results.results}
    assert rows["honest"].place == 1 and rows["honest"].flags == []
    # The claimed times of both cheats look human; their arrivals do not.
    assert rows["paster"].place is None and "arrived_too_fast" in rows["paster"].flags
    assert "held_back" in rows["paster"].flags
    assert rows["holder"].place is None and rows["holder"].flags == ["held_back"]
    for c in (honest, paster, holder):
        await c.close()
