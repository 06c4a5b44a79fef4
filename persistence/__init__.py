"""Persistence: finished matches from the Redis outbox into PostgreSQL and Kafka (docs/PERSISTENCE.md)."""
