"""The docker-compose observability stack (config/): files parse and reference each other consistently.

Docker is not run here; these checks catch the mistakes that make ``docker compose up``
come up half-broken: a mounted file that does not exist, Prometheus scraping the wrong
port, a dashboard querying metrics plano does not export, a datasource uid mismatch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from gateway.config import load_config
from gateway.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"


def compose() -> dict:
    return yaml.safe_load((CONFIG / "docker-compose.yaml").read_text())


def exported_metric_names() -> set[str]:
    names = set()
    for family in Metrics(registry=CollectorRegistry()).registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_compose_services_and_mounts():
    c = compose()
    services = c["services"]
    assert {"plano", "jaeger", "prometheus", "grafana"} <= set(services)
    assert services["plano"]["build"]["context"] == ".."
    assert (CONFIG / services["plano"]["build"]["context"] / services["plano"]["build"]["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in (c.get("volumes") or {}):
                continue  # a named volume (e.g. Postgres data), not a file of the repo
            assert (CONFIG / source).exists(), f"{name} mounts missing {source}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    jaeger_ports = {p.split(":")[-1] for p in services["jaeger"]["ports"]}
    assert {"16686", "4317"} <= jaeger_ports


def test_plano_config_points_at_the_stack():
    c = compose()
    mount = next(v for v in c["services"]["plano"]["volumes"] if v.split(":")[1] == "/etc/plano/plano.yaml")
    config = load_config(CONFIG / mount.split(":")[0], env={"OPENAI_API_KEY": "sk-test"})
    assert config.tracing.opentracing_grpc_endpoint == "http://jaeger:4317"
    assert config.admin.address == "0.0.0.0"
    assert all(listener.address == "0.0.0.0" for listener in config.listeners)
    published = {p.split(":")[-1] for p in c["services"]["plano"]["ports"]}
    assert str(config.admin.port) in published
    assert {str(listener.port) for listener in config.listeners} <= published

    prometheus = yaml.safe_load((CONFIG / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"plano:{config.admin.port}" in targets
    assert prometheus["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_grafana_provisioning_and_dashboard():
    c = compose()
    grafana_mounts = dict(v.split(":")[:2] for v in c["services"]["grafana"]["volumes"])
    datasources = yaml.safe_load((CONFIG / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    prom = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prom["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((CONFIG / "grafana/provisioning/dashboards/plano.yaml").read_text())
    dashboards_path = providers["providers"][0]["options"]["path"]
    assert grafana_mounts["./grafana/dashboards"] == dashboards_path

    dashboard = json.loads((CONFIG / "grafana/dashboards/plano.json").read_text())
    exported = exported_metric_names()
    used = set()
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"].lower())
        assert panel["datasource"]["uid"] == prom["uid"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == prom["uid"]
            for name in re.findall(r"\bplano_[a-z_]+", target["expr"]):
                assert name in exported, f"dashboard queries {name}, which plano does not export"
                used.add(name)
    for wanted in ("requests", "latency", "in-flight", "tokens", "first token", "router", "filter", "agent"):
        assert any(wanted in title for title in titles), wanted
    assert {"plano_http_request_duration_seconds_bucket", "plano_llm_time_to_first_token_seconds_bucket",
            "plano_llm_tokens_total", "plano_router_decisions_total", "plano_filter_executions_total",
            "plano_agent_calls_total", "plano_http_in_flight_requests"} <= used
    quantiles = {float(q) for p in dashboard["panels"] for t in p["targets"]
                 for q in re.findall(r"histogram_quantile\((0\.\d+)", t["expr"])}
    assert {0.5, 0.95, 0.99} <= quantiles


def test_dockerfile_runs_plano_in_the_foreground():
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install" in text and "'plano[examples]'" in text
    assert 'CMD ["plano", "up", "/etc/plano/plano.yaml", "--foreground"]' in text
    assert "USER plano" in text
