"""deploy/k8s, offline: each overlay rendered (kubectl and kustomize are not on these machines, so
a small loader below does what the kustomizations use, and refuses anything else), every object
validated against the Kubernetes schemas (kubernetes-validate), the directory checked by checkov,
and the deployment's own invariants: probes and a locked-down securityContext on every container,
the nodes' drain and grace, a Service and an Ingress path per node, the monitoring copies."""

from __future__ import annotations

import configparser
import copy
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gameserver.settings import NodeSettings, RaceSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.30.0"  # a schema version kubernetes-validate ships
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"  # made by `make setup`
NAMESPACE = "typogram-arena"
CRDS = {("monitoring.coreos.com/v1", "PrometheusRule")}  # not in the core schemas: checked below
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "patches", "configMapGenerator"}
Obj = dict[str, Any]


# ---- the loader: what these kustomizations use, nothing more ---------------------------


def build(directory: Path) -> list[Obj]:
    """Render a kustomization: resources (files or kustomization directories), then JSON 6902
    patches with a target, configMapGenerator (no name hash)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - KUSTOMIZE_KEYS
    assert not unknown, f"{directory}: the test's loader does not implement {unknown}"
    objects: list[Obj] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        objects += build(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in k.get("configMapGenerator", []):
        assert generator["options"]["disableNameSuffixHash"] is True, "the loader adds no name hash"
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        meta = {"name": generator["name"], "namespace": generator["namespace"]}
        meta["labels"] = dict(generator["options"].get("labels", {}))
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    for patch in k.get("patches", []):
        obj = one(objects, patch["target"]["kind"], patch["target"]["name"])
        for op in yaml.safe_load((directory / patch["path"]).read_text()):
            apply_op(obj, op)
    return objects


def apply_op(obj: Obj, op: Obj) -> None:
    """One JSON patch operation: add (a "-" appends) or replace, on an existing parent."""
    assert op["op"] in ("add", "replace"), f"the loader does not implement {op}"
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(op["value"])
    if op["op"] == "add" and isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), value)
    elif op["op"] in ("add", "replace") and isinstance(node, dict):
        assert op["op"] == "add" or last in node, f"replace of a missing {op['path']}"
        node[last] = value
    elif op["op"] == "replace" and isinstance(node, list):
        node[int(last)] = value
    else:
        raise AssertionError(f"the loader does not implement {op}")


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def containers(obj: Obj, *, init: bool = False) -> list[Obj]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return list(spec["containers"]) + (list(spec.get("initContainers", [])) if init else [])


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    return build(K8S / "overlays" / request.param)


# ---- schemas and the static checker ---------------------------------------------------


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: list[Obj]) -> None:
    kinds = set()
    for obj in rendered:
        kinds.add(obj["kind"])
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises ValidationError
        assert obj["metadata"]["namespace" if obj["kind"] != "Namespace" else "name"] == NAMESPACE
    # Every process and every object the brief names is there.
    assert {"StatefulSet", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress"} <= kinds
    assert {"Service", "ConfigMap", "NetworkPolicy", "PrometheusRule", "ServiceAccount"} <= kinds


def test_the_loader_renders_names_uniquely(rendered: list[Obj]) -> None:
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered]
    assert len(names) == len(set(names))


def test_checkov_passes_with_every_skip_justified() -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make setup` (it makes .venv-checkov)"
    result = subprocess.run(
        # --skip-download: no call to the vendor's platform (tests send traffic to 127.0.0.1 only).
        [str(CHECKOV), "-d", str(K8S), "--framework", "kubernetes", "--quiet", "--compact", "-o", "json"]
        + ["--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    passed = sum(report.get("summary", {}).get("passed", 0) for report in reports)
    assert passed > 100, result.stdout[-2000:]  # it did check something
    for report in reports:
        for skipped in report.get("results", {}).get("skipped_checks", []):
            assert len(skipped.get("suppress_comment") or "") > 30, skipped["check_id"]  # a reason, said


# ---- invariants -----------------------------------------------------------------------


def test_every_container_has_probes_resources_and_a_locked_down_security_context(
    rendered: list[Obj],
) -> None:
    workloads = [o for o in rendered if pod_spec(o) is not None]
    assert {o["metadata"]["name"] for o in workloads} == {
        "gameserver",
        "lobby",
        "matchmaker",
        "persistence",
        "tournaments",
    }
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in containers(obj, init=True):
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), where
            assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), where
            assert c["image"].startswith("registry.example.com/typogram-arena:"), where
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], where  # read-only root
        for c in containers(obj):  # init containers run to completion: no probes
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where


def test_the_nodes_drain_before_stopping_within_their_grace(rendered: list[Obj]) -> None:
    sts = one(rendered, "StatefulSet", "gameserver")
    spec = pod_spec(sts)
    assert spec is not None
    [node] = spec["containers"]
    env = {e["name"]: e for e in node["env"]}
    # Node id = pod name: the Ingress path and the per-pod Service follow from it.
    assert env["ARENA_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    command = " ".join(node["lifecycle"]["preStop"]["exec"]["command"])
    assert "arena-admin drain" in command and "$ARENA_NODE_ID" in command
    # The drain command's own deadline ends inside the grace (else the kubelet kills the node).
    drain_timeout = float(command.rsplit("--timeout", 1)[1].strip(' "'))
    # The settings the node reads from this environment, as it would read them.
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    settings = NodeSettings(
        shutdown_grace_s=float(values["ARENA_NODE_SHUTDOWN_GRACE_S"]),
        results_write_s=float(values["ARENA_NODE_RESULTS_WRITE_S"]),
    )
    race = RaceSettings()
    assert settings.shutdown_grace_s >= race.longest_race_s >= race.marathon_limit_s == 900
    grace = spec["terminationGracePeriodSeconds"]
    # ARCHITECTURE "Drain": grace + the write phase + ~15 s for sockets and tasks.
    assert grace >= settings.shutdown_grace_s + settings.results_write_s + 15
    assert grace >= race.marathon_limit_s
    assert race.longest_race_s <= drain_timeout < grace
    pdb = one(rendered, "PodDisruptionBudget", "gameserver")
    assert pdb["spec"]["selector"] == sts["spec"]["selector"] and pdb["spec"]["maxUnavailable"] == 1


def test_the_ingress_routes_each_node_to_its_own_pod(rendered: list[Obj]) -> None:
    replicas = one(rendered, "StatefulSet", "gameserver")["spec"]["replicas"]
    nodes = [f"gameserver-{i}" for i in range(replicas)]
    ingress = one(rendered, "Ingress", "gameserver-ws")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"] == "/ws"
    [rule] = ingress["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert routes == {f"/ws/{n}": n for n in nodes}
    for n in nodes:
        svc = one(rendered, "Service", n)
        assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == n
        assert svc["spec"]["publishNotReadyAddresses"] is True  # a draining node's players resume
    # The lobby's public paths only: /metrics stays internal, as in ops/nginx.py.
    [lobby_rule] = one(rendered, "Ingress", "lobby")["spec"]["rules"]
    assert {p["path"] for p in lobby_rule["http"]["paths"]} == {"/", "/static", "/v1"}


def test_replica_counts_and_autoscaler(rendered: list[Obj]) -> None:
    assert one(rendered, "Deployment", "matchmaker")["spec"]["replicas"] == 2
    assert one(rendered, "Deployment", "tournaments")["spec"]["replicas"] == 2
    hpa = one(rendered, "HorizontalPodAutoscaler", "lobby")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lobby"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_secrets_come_from_the_secret(rendered: list[Obj]) -> None:
    secret_names = {"ARENA_TOKEN_SECRET", "ARENA_ADMIN_TOKEN", "ARENA_REDIS_URL", "ARENA_POSTGRES_DSN"}
    config = one(rendered, "ConfigMap", "arena-config")["data"]
    assert not secret_names & config.keys()
    for obj in rendered:
        for c in containers(obj, init=True):
            for e in c.get("env", []):
                if e["name"] in secret_names:
                    assert e["valueFrom"]["secretKeyRef"] == {"name": "arena-secrets", "key": e["name"]}


def test_kafka_topics_layout_per_overlay() -> None:
    def config(overlay: str) -> dict[str, str]:
        data: dict[str, str] = one(build(K8S / "overlays" / overlay), "ConfigMap", "arena-config")["data"]
        return data

    prod = config("prod")
    assert (prod["ARENA_KAFKA_REPLICATION_FACTOR"], prod["ARENA_KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert config("dev")["ARENA_ENV"] == "development" and prod["ARENA_ENV"] == "production"
    persistence = one(build(K8S / "overlays" / "prod"), "Deployment", "persistence")
    spec = pod_spec(persistence)
    assert spec is not None
    commands = [c["command"] for c in spec["initContainers"]]
    assert commands == [["arena-migrate"], ["python", "-m", "ops.topics"]]


def test_monitoring_ships_the_sources_unchanged(rendered: list[Obj]) -> None:
    source = yaml.safe_load((ROOT / "ops" / "monitoring" / "alerts.yml").read_text())
    rule = one(rendered, "PrometheusRule", "arena-alerts")
    assert rule["spec"]["groups"] == source["groups"]
    dashboard = one(rendered, "ConfigMap", "arena-dashboard")
    assert dashboard["data"]["dashboard.json"] == (ROOT / "ops" / "monitoring" / "dashboard.json").read_text()
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_loader_refuses_what_it_does_not_implement() -> None:
    with pytest.raises(AssertionError):
        apply_op({"a": {}}, {"op": "remove", "path": "/a"})
    with pytest.raises(AssertionError):
        apply_op({"a": {}}, {"op": "replace", "path": "/a/missing", "value": 1})


def test_every_command_is_a_console_script_or_a_module_of_the_image(rendered: list[Obj]) -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entries = cfg["options.entry_points"]["console_scripts"].split("\n")
    scripts = {line.split("=")[0].strip() for line in entries if line.strip()}
    for obj in rendered:
        for c in containers(obj, init=True):
            command = c["command"]
            if command[:2] == ["python", "-m"]:
                assert importlib.util.find_spec(command[2]) is not None, command
            else:
                assert command[0] in scripts, command
        for c in containers(obj):
            hook = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            if hook:
                assert hook[-1].split()[1] in scripts, hook  # "exec arena-admin ..."


def test_the_dockerfile_builds_from_the_lock_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "pip install --require-hashes --no-deps -r /tmp/lock.txt" in text
    assert "pip install --no-deps --no-build-isolation ." in text
    froms = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(froms) >= 2 and lines[froms[-1]].endswith("AS runtime")
    final = lines[froms[-1] :]
    assert not any("apt-get" in line or "build-essential" in line for line in final)
    [user] = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000  # numeric: runAsNonRoot can verify it
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and "!requirements/lock.txt" in ignore  # nothing goes in unless named
