"""Operational tooling: backing services and the local-cluster launcher."""
