"""Publishes matches to Kafka: idempotent producer, ``acks=all``, keyed by match id.

The value is the outbox entry's ``data`` unchanged: the msgpack ``MatchRecord`` exactly as
the node wrote it (``arena/results.py``), with a ``kind`` and ``record_version`` header.
Races go to the race topic, tournament heats to the heat topic. A tournament's final result
(kind ``tournament_final``, a msgpack ``TournamentFinalRecord``) goes to the heat topic too,
keyed by its tournament id. An operator's decision on a result held for review (kind
``review_decision``, a msgpack ``ReviewDecisionRecord``) goes to the race topic, keyed by its race id.
A typing test's result (kind ``test``, a msgpack ``TypingTestRecord``) goes to the test topic,
keyed by its test id. Every record also gives one small message per player it concerns to the
player topic, keyed by the player id, so each player's events stay in order
(``persistence/player_events.py``); a record counts as published when all of its messages are
acknowledged.

A batch is published by a ``PublishBatch``: every message is sent, then every ack awaited.
A retry after a failure re-sends only what failed and keeps waiting for what is still in
flight, so an outage does not multiply copies. The producer is created lazily, so the
service starts (unready) while Kafka is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from arena.results import FINAL_KIND
from arena.typing_tests import TEST_KIND
from arena.waits import within
from persistence.entries import Match
from persistence.errors import Dependency, DependencyDown, describe, kafka_rejects_message
from persistence.player_events import EVENT_VERSION, player_events
from persistence.settings import KafkaSettings

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 5.0
# Records are ~5 KiB: large produce batches mean fewer requests for the broker to handle.
# Below the producer's max_request_size (1 MiB), which also bounds one record.
MAX_BATCH_BYTES = 1000 * 1024


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    def topic_for(self, kind: str) -> str:
        if kind == TEST_KIND:
            return self.settings.test_topic
        return self.settings.heat_topic if kind in ("heat", FINAL_KIND) else self.settings.race_topic

    async def producer(self) -> AIOKafkaProducer:
        """The started producer; ``DependencyDown`` while Kafka cannot be reached."""
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=self.settings.linger_ms,
                compression_type=None if self.settings.compression == "none" else self.settings.compression,
                max_batch_size=MAX_BATCH_BYTES,
                request_timeout_ms=int(self.settings.publish_timeout_s * 1000),
            )
            try:
                await within(producer.start(), self.settings.publish_timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                await _abandon(producer)
                raise DependencyDown(Dependency.KAFKA, exc) from exc
            self._producer = producer
            return producer

    async def ping(self) -> None:
        """Raise unless the cluster answers a metadata request."""
        producer = await self.producer()
        try:
            await within(producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise DependencyDown(Dependency.KAFKA, exc) from exc

    async def close(self) -> None:
        """Deliver what is in flight; if Kafka is down, drop it (its entries were not acknowledged)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await within(producer.flush(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("kafka_close_abandoned_in_flight")
            await _abandon(producer)
            return
        await producer.stop()


async def _abandon(producer: AIOKafkaProducer) -> None:
    """Tear a producer down without flushing.

    ``stop()`` waits until every buffered message is delivered, which with an idempotent
    producer and a dead broker is forever. aiokafka has no close-without-flush, so: cancel
    its sender task, close its connections, mark it closed (private attributes, checked).
    """
    sender = getattr(producer, "_sender", None)
    task: asyncio.Task[None] | None = getattr(sender, "sender_task", None)
    if task is not None and not task.done():
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
    await producer.client.close()
    producer._closed = True


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class PublishBatch:
    """One batch's messages until every one is acknowledged (or rejected for good).

    A match's messages are its record (race or heat topic) and its player events (player topic),
    each tracked by ``(match id, index)``: a retry re-sends only the messages that failed."""

    def __init__(self, publisher: KafkaPublisher, matches: Sequence[Match]) -> None:
        self._publisher = publisher
        self._todo = {m.match_id: m for m in matches}
        self._futures: dict[tuple[str, int], asyncio.Future[object]] = {}
        self.rejected: dict[str, str] = {}  # match id -> why Kafka refused it

    async def run(self) -> dict[str, str]:
        """Publish and await all acks; returns the rejected matches, raises ``DependencyDown``."""
        producer = await self._publisher.producer()
        timeout = self._publisher.settings.publish_timeout_s
        try:
            # send() only waits for metadata or buffer space: one deadline for all, not a task each.
            async with asyncio.timeout(timeout):
                for match_id, m in self._todo.items():
                    for i, message in enumerate(self._messages(m)):
                        if match_id not in self.rejected and self._needs_send((match_id, i)):
                            await self._send(producer, (match_id, i), message)
        except TimeoutError as exc:
            raise DependencyDown(Dependency.KAFKA, f"send blocked for {timeout}s") from exc
        waiting = [f for f in self._futures.values() if not f.done()]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=timeout)
            if pending:
                raise DependencyDown(
                    Dependency.KAFKA, f"{len(pending)} message(s) unacknowledged after {timeout}s"
                )
        for (match_id, _), future in self._futures.items():
            if match_id in self.rejected:
                continue
            if future.cancelled():
                raise DependencyDown(Dependency.KAFKA, "send cancelled")
            error = future.exception()
            if error is not None:
                self._fail(match_id, error)
        return self.rejected

    def _messages(self, m: Match) -> list[_Message]:
        """The record for its topic, then one event per player (if the player topic is on)."""
        kind = m.record.kind
        headers = [("kind", kind.encode()), ("record_version", b"%d" % m.record.version)]
        out = [_Message(self._publisher.topic_for(kind), m.key.encode(), m.data, headers)]
        player_topic = self._publisher.settings.player_topic
        if player_topic:
            for e in player_events(m.record):
                event_headers = [("kind", e.kind.encode()), ("event_version", b"%d" % EVENT_VERSION)]
                out.append(_Message(player_topic, e.player_id.encode(), e.value, event_headers))
        return out

    async def _send(self, producer: AIOKafkaProducer, message_id: tuple[str, int], message: _Message) -> None:
        try:
            self._futures[message_id] = await producer.send(
                message.topic, message.value, key=message.key, headers=message.headers
            )
        except (KafkaError, OSError) as exc:
            self._fail(message_id[0], exc)

    def _needs_send(self, message_id: tuple[str, int]) -> bool:
        future = self._futures.get(message_id)
        if future is None:
            return True
        return future.done() and (future.cancelled() or future.exception() is not None)

    def _fail(self, match_id: str, exc: BaseException) -> None:
        if kafka_rejects_message(exc):
            self.rejected[match_id] = describe(exc)
            return
        raise DependencyDown(Dependency.KAFKA, exc) from exc
