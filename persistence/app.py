"""Wiring of a persistence process: parts created in dependency order, stopped in reverse.

``PersistenceService`` owns the clients and the consumers; ``build_app`` puts it behind
``/healthz`` (the process runs), ``/readyz`` (it can make progress: every dependency answers
and no batch is stuck retrying) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from aiohttp import web

from arena.promhttp import metrics_response
from arena.redisutil import connect
from arena.waits import within
from persistence.consumer import Health, OutboxConsumer, ReadSide
from persistence.deadletters import DeadLetters
from persistence.errors import describe
from persistence.kafka_lag import LagMonitor
from persistence.leaderboards import LeaderboardWriter
from persistence.metrics import PersistenceMetrics
from persistence.pair_store import PairEvidence
from persistence.publisher import KafkaPublisher
from persistence.rating_history import RatingHistoryConsumer
from persistence.ratings import RatingCatchUp
from persistence.recent import RecentCache
from persistence.rejection import RatingUndo
from persistence.settings import PersistenceSettings
from persistence.store import PostgresStore
from persistence.test_results import TestReadSide

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
POOL_CLOSE_TIMEOUT_S = 5.0


class PersistenceService:
    def __init__(self, settings: PersistenceSettings, metrics: PersistenceMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or PersistenceMetrics()
        # Retrying loops repeat a failure at least every backoff_max_s.
        self.health = Health(self.metrics, stale_after_s=3 * settings.consumer.backoff_max_s + 1)
        self.redis: aioredis.Redis | None = None
        self.pool: asyncpg.Pool | None = None
        self.publisher: KafkaPublisher | None = None
        self.consumers: list[OutboxConsumer] = []
        self.rating_history: RatingHistoryConsumer | None = None
        self.lag_monitor = LagMonitor(settings.kafka, self.metrics)
        self._stopping = False

    async def start(self) -> None:
        """Nothing here waits for PostgreSQL or Kafka: while they are down the service runs, unready."""
        s = self.settings
        # No socket timeout (it costs a timer per reply on the hot path): the consumers bound
        # each Redis step with one deadline instead (ARENA_PERSIST_STEP_TIMEOUT_S).
        self.redis = connect(s.redis, socket_connect_timeout=CONNECT_TIMEOUT_S)
        # min_size=0: connections are opened on demand, so a PostgreSQL outage does not stop start-up.
        self.pool = await asyncpg.create_pool(
            s.postgres.dsn,
            min_size=0,
            max_size=s.postgres.pool_size,
            command_timeout=s.postgres.command_timeout_s,
        )
        self.publisher = KafkaPublisher(s.kafka)
        store = PostgresStore(self.pool, review=s.readside)
        readside = ReadSide(
            LeaderboardWriter(self.redis, s.readside),
            RecentCache(self.redis, s.readside),
            RatingCatchUp(self.redis),
            self.redis,
            tests=TestReadSide(self.redis, s.readside),
            undo=RatingUndo(self.redis),
            pairs=PairEvidence(self.redis, s.readside),
        )
        dead = DeadLetters(self.redis)
        workers = max(1, s.consumer.workers)
        for i in range(1, workers + 1):
            consumer = OutboxConsumer(
                name=s.consumer.consumer if workers == 1 else f"{s.consumer.consumer}-{i}",
                settings=s.consumer,
                redis=self.redis,
                store=store,
                publisher=self.publisher,
                readside=readside,
                dead=dead,
                metrics=self.metrics,
                health=self.health,
            )
            await consumer.start()
            self.consumers.append(consumer)
        if s.consumer.rating_history:
            self.rating_history = RatingHistoryConsumer(
                name=f"{s.consumer.consumer}-ratings",
                settings=s.consumer,
                redis=self.redis,
                pool=self.pool,
                metrics=self.metrics,
                health=self.health,
            )
            await self.rating_history.start()
        self.lag_monitor.start()
        log.info("persistence_started", consumers=[c.name for c in self.consumers])

    async def stop(self) -> None:
        """Idempotent: consumers finish their batches, then clients close in reverse order."""
        if self._stopping:
            return
        self._stopping = True
        stopping = [c.stop() for c in self.consumers] + [self.lag_monitor.stop()]
        if self.rating_history is not None:
            stopping.append(self.rating_history.stop())
        await asyncio.gather(*stopping)
        if self.publisher is not None:
            await self.publisher.close()
        if self.pool is not None:
            try:
                await within(self.pool.close(), POOL_CLOSE_TIMEOUT_S)
            except TimeoutError:
                self.pool.terminate()
        if self.redis is not None:
            await self.redis.aclose()
        log.info("persistence_stopped")

    async def readiness(self) -> str | None:
        """None when ready, else why not."""
        if self._stopping:
            return "stopping"
        loops: list[OutboxConsumer | RatingHistoryConsumer] = [*self.consumers]
        if self.rating_history is not None:
            loops.append(self.rating_history)
        stopped = [loop.name for loop in loops if not loop.alive]
        if stopped:
            return f"consumers stopped: {', '.join(stopped)}"
        down = self.health.down
        if down:
            return "; ".join(f"{dep}: {reason}" for dep, reason in down.items())
        probes: dict[str, Callable[[], Any]] = {
            "redis": self._probe_redis,
            "postgres": self._probe_postgres,
            "kafka": self._probe_kafka,
        }
        results = await asyncio.gather(
            *(within(probe(), PROBE_TIMEOUT_S) for probe in probes.values()), return_exceptions=True
        )
        reasons = [f"{name}: {describe(r)}" for name, r in zip(probes, results, strict=True) if r is not None]
        return "; ".join(reasons) or None

    async def _probe_redis(self) -> None:
        assert self.redis is not None
        await self.redis.ping()

    async def _probe_postgres(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def _probe_kafka(self) -> None:
        assert self.publisher is not None
        await self.publisher.ping()


SERVICE_KEY = web.AppKey("service", PersistenceService)


def build_app(settings: PersistenceSettings, metrics: PersistenceMetrics | None = None) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(_service_context(settings, metrics))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def _service_context(settings: PersistenceSettings, metrics: PersistenceMetrics | None) -> Any:
    async def context(app: web.Application) -> AsyncIterator[None]:
        service = PersistenceService(settings, metrics)
        try:
            await service.start()
            app[SERVICE_KEY] = service
            yield
        finally:
            await service.stop()

    return context


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    reason = await request.app[SERVICE_KEY].readiness()
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


async def _metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[SERVICE_KEY].metrics.registry)
