"""The alert rules and the dashboard in ops/monitoring: valid PromQL (parsed by promql-parser,
the Rust parser of GreptimeDB) over metrics the services really export."""

import json
import re
from pathlib import Path

import promql_parser
import yaml
from prometheus_client import CollectorRegistry

from gameserver.metrics import NodeMetrics
from lobby.metrics import LobbyMetrics
from matchmaker.metrics import MatchmakerMetrics
from persistence.metrics import PersistenceMetrics
from tournaments.metrics import DirectorMetrics, LiveMetrics

MONITORING = Path(__file__).resolve().parents[2] / "ops" / "monitoring"
# Redis is watched through oliver006/redis_exporter: these are its names.
REDIS_EXPORTER = {"redis_memory_used_bytes", "redis_memory_max_bytes"}
METRIC = re.compile(r"\b((?:arena|redis)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def exported() -> set[str]:
    """Every sample name the services' registries expose (histogram _bucket etc. included)."""
    names = set(REDIS_EXPORTER)
    services = (NodeMetrics, LobbyMetrics, MatchmakerMetrics, PersistenceMetrics)
    for make in (*services, DirectorMetrics, LiveMetrics):
        registry = CollectorRegistry()
        make(registry=registry)
        for family in registry.collect():
            names.add(family.name)
            names.update(f"{family.name}{suffix}" for suffix in SUFFIXES)
    return names


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_names_exported_metrics_and_has_a_severity() -> None:
    names = exported()
    all_rules = rules()
    assert len(all_rules) >= 10
    for rule in all_rules:
        promql_parser.parse(str(rule["expr"]))  # valid PromQL: raises ValueError otherwise
        used = set(METRIC.findall(str(rule["expr"])))
        assert used, rule
        assert used <= names, (rule["alert"], used - names)
        labels = rule["labels"]
        assert isinstance(labels, dict) and labels["severity"] in ("critical", "warning"), rule
        assert rule["annotations"], rule


def test_the_seeds_thresholds_are_the_alerts_thresholds() -> None:
    by_name = {str(r["alert"]): str(r["expr"]) for r in rules()}
    assert by_name["ArenaMatchingSlow"].rstrip().endswith("> 10")
    assert by_name["ArenaQueueDepthHigh"].rstrip().endswith("> 10000")
    assert by_name["ArenaWebSocketFailures"].rstrip().endswith("> 0.01")
    assert by_name["ArenaProgressLatencyHigh"].rstrip().endswith("> 0.2")
    assert "> 0.8" in by_name["ArenaRedisMemoryHigh"]
    assert by_name["ArenaResultsBacklogHigh"].rstrip().endswith("> 100000")


def test_the_dashboard_queries_exported_metrics() -> None:
    names = exported()
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(dashboard["panels"]) >= 10 and exprs
    for expr in exprs:
        promql_parser.parse(expr)
        used = set(METRIC.findall(expr))
        assert used and used <= names, (expr, used - names)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
