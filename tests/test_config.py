"""Tests for gateway.config: schema, env substitution, Plano's validation rules, locations."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from gateway.config import (
    ConfigError,
    ConfigIssue,
    find_config_file,
    load_config,
    load_config_text,
    parse_duration,
    parse_size,
)
from gateway.config.jsonschema import SCHEMA_PATH, render_schema

ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant"}


def load(text: str, env: dict | None = None, **kw):
    return load_config_text(textwrap.dedent(text), env=ENV if env is None else env, **kw)


def errors_of(text: str, env: dict | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as ei:
        load(text, env)
    return ei.value.issues


def marked_line(text: str) -> int:
    """1-based line of the ``# <-`` marker in ``text`` (after dedent)."""
    lines = textwrap.dedent(text).splitlines()
    hits = [i + 1 for i, l in enumerate(lines) if "# <-" in l]
    assert len(hits) == 1, "exactly one '# <-' marker expected"
    return hits[0]


# --------------------------------------------------------------------------- happy paths

TRAVEL = """\
version: v0.3.0
agents:
  - id: weather_agent
    url: http://localhost:10510
  - id: flight_agent
    url: http://localhost:10520
model_providers:
  - model: openai/gpt-5.2
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
listeners:
  - type: agent
    name: travel_booking_service
    port: 8001
    router: plano_orchestrator_v1
    agents:
      - id: weather_agent
        description: |
          Real-time weather + multi-day forecasts for any city (Open-Meteo) ...
          When a query mixes weather and flights, answers ONLY the weather part.
      - id: flight_agent
        description: |
          Live flight info between airports (FlightAware) ... answers ONLY the flight part.
tracing:
  random_sampling: 100
  span_attributes:
    header_prefixes: [x-acme-]
"""


def test_travel_agent_config():
    cfg = load(TRAVEL)
    assert cfg.version == "v0.3.0"
    assert [a.id for a in cfg.agents] == ["weather_agent", "flight_agent"]
    (al,) = cfg.agent_listeners
    assert (al.name, al.port, al.address, al.timeout) == ("travel_booking_service", 8001, "0.0.0.0", 30.0)
    assert al.agents[0].description.startswith("Real-time weather")
    assert cfg.agent_by_id("flight_agent").url == "http://localhost:10520"
    assert cfg.agent_by_id("nope") is None
    # implicit model listener appended
    ml = cfg.model_listener
    assert (ml.name, ml.port, ml.address, ml.timeout, ml.implicit) == ("egress_traffic", 12000, "0.0.0.0", 300.0, True)
    assert ml.max_body_bytes == 10 * 1024 * 1024
    p = cfg.model_providers[0]
    assert p.access_key == "sk-openai" and p.default and p.access_key_env_missing is None
    assert (p.prefix, p.provider, p.interface, p.model_id, p.effective_name) == (
        "openai", "openai", "openai", "gpt-5.2", "openai/gpt-5.2")
    assert cfg.default_provider is p
    assert cfg.tracing.random_sampling == 100
    assert cfg.tracing.span_attributes.header_prefixes == ["x-acme-"]
    assert cfg.warnings == []


def test_local_orchestrator_variant():
    text = TRAVEL.replace(
        "model_providers:\n",
        "model_providers:\n  - model: plano/katanemo/Plano-Orchestrator-4B\n    base_url: http://localhost:8000\n",
    )
    cfg = load(text + "overrides:\n  agent_orchestration_model: plano/katanemo/Plano-Orchestrator-4B\n")
    p = cfg.provider_by_name("plano/katanemo/Plano-Orchestrator-4B")
    assert p.model_id == "katanemo/Plano-Orchestrator-4B" and p.provider == "plano"
    assert cfg.overrides.agent_orchestration_model == "plano/katanemo/Plano-Orchestrator-4B"
    assert not [w for w in cfg.warnings if "orchestration" in w.path]


ROUTING_V4 = """\
version: v0.4.0
listeners:
  - type: model
    name: model_listener
    port: 12000
model_providers:
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-6
    access_key: $ANTHROPIC_API_KEY
routing_preferences:
  - name: complex_reasoning
    description: complex reasoning tasks, multi-step analysis, or detailed explanations
    models: [openai/gpt-4o, openai/gpt-4o-mini]
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [anthropic/claude-sonnet-4-6, openai/gpt-4o]
"""


def test_model_listener_with_routing_preferences():
    cfg = load(ROUTING_V4)
    assert len(cfg.listeners) == 1
    ml = cfg.model_listener
    assert ml.name == "model_listener" and ml.timeout == 300.0 and not ml.implicit
    assert [r.name for r in cfg.routing_preferences] == ["complex_reasoning", "code_generation"]
    assert cfg.routing_preferences[1].models == ["anthropic/claude-sonnet-4-6", "openai/gpt-4o"]
    assert cfg.model_providers[2].access_key == "sk-ant"
    assert cfg.model_providers[2].interface == "anthropic"
    assert cfg.routing.session_ttl_seconds == 600 and cfg.routing.session_cache.type == "memory"


MODEL_FILTERS = """\
version: v0.3.0
filters:
  - id: content_guard
    url: http://localhost:10500
    type: http
  - id: output_redactor
    url: http://localhost:10501
    type: http
    timeout: 2s
    on_error: fail_open
model_providers:
  - model: openai/gpt-4o-mini
    access_key: local-demo-key
    base_url: http://fake-provider:10501/v1
    default: true
listeners:
  - type: model
    name: llm_gateway
    port: 12000
    input_filters: [content_guard]
    output_filters: [output_redactor]
    max_body_bytes: 1MiB
"""


def test_model_listener_with_filters():
    cfg = load(MODEL_FILTERS)
    ml = cfg.model_listener
    assert ml.input_filters == ["content_guard"] and ml.output_filters == ["output_redactor"]
    assert ml.max_body_bytes == 1024 * 1024
    f = cfg.filter_by_id("content_guard")
    assert (f.type, f.tool, f.timeout, f.on_error, f.transport) == ("http", "content_guard", 5.0, None, "streamable-http")
    g = cfg.filter_by_id("output_redactor")
    assert (g.timeout, g.on_error) == (2.0, "fail_open")
    assert cfg.model_providers[0].base_url == "http://fake-provider:10501/v1"


ALIASES = """\
version: v0.1.0
listeners:
  egress_traffic:
    address: 0.0.0.0
    port: 12000
    message_format: openai
    timeout: 30s
model_providers:
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/*
    access_key: $OPENAI_API_KEY
  - model: anthropic/*
    access_key: $ANTHROPIC_API_KEY
  - model: anthropic/claude-sonnet-4-6
    access_key: $ANTHROPIC_API_KEY
  - model: azure_openai/gpt-5-mini
    access_key: $AZURE_API_KEY
    base_url: https://example.openai.azure.com
  - model: amazon_bedrock/us.amazon.nova-premier-v1:0
    access_key: $AWS_BEARER_TOKEN_BEDROCK
    base_url: https://bedrock-runtime.us-west-2.amazonaws.com
  - model: ollama/llama3.2
    base_url: http://localhost:11434
  - model: xai/grok-4-0709
    access_key: $GROK_API_KEY
model_aliases:
  arch.summarize.v1:
    target: gpt-5-mini-2025-08-07
  arch.v1:
    target: o3
  creative-model:
    target: claude-sonnet-4-6
  coding-model:
    target: us.amazon.nova-premier-v1:0
  arch.grok.v1:
    target: grok-4-0709
"""


def test_alias_config_with_wildcards_and_missing_keys():
    cfg = load(ALIASES)
    wild = cfg.model_providers[1]
    assert wild.is_wildcard and wild.model_id == "*" and wild.provider == "openai"
    bedrock = cfg.model_providers[5]
    assert bedrock.model_id == "us.amazon.nova-premier-v1:0" and bedrock.interface == "amazon_bedrock"
    assert cfg.model_aliases["arch.grok.v1"].target == "grok-4-0709"
    # credentials whose variables are unset: warnings + None + variable name recorded
    azure = cfg.model_providers[4]
    assert azure.access_key is None and azure.access_key_env_missing == "AZURE_API_KEY"
    missing = {w.path: w for w in cfg.warnings if "is not set" in w.message}
    assert set(missing) == {
        "model_providers[4].access_key", "model_providers[5].access_key", "model_providers[7].access_key"}
    assert missing["model_providers[4].access_key"].line == 19
    assert missing["model_providers[4].access_key"].severity == "warning"
    # legacy listener object -> model listener with the given timeout
    assert len(cfg.listeners) == 1
    assert (cfg.model_listener.name, cfg.model_listener.timeout) == ("egress_traffic", 30.0)


def test_legacy_listener_object_form():
    cfg = load("""\
        version: v0.1
        listeners:
          ingress_traffic:
            address: 0.0.0.0
            port: 10000
            message_format: openai
            timeout: 5s
          egress_traffic:
            address: 127.0.0.1
            port: 12001
            message_format: openai
            timeout: 5m
        llm_providers:
          - model: openai/gpt-4o
            access_key: $OPENAI_API_KEY
    """)
    assert [(l.name, l.type, l.address, l.port, l.timeout) for l in cfg.listeners] == [
        ("ingress_traffic", "prompt", "0.0.0.0", 10000, 5.0),
        ("egress_traffic", "model", "127.0.0.1", 12001, 300.0),
    ]


def test_legacy_listener_defaults_and_error_location():
    cfg = load("""\
        version: v0.1
        listeners:
          ingress_traffic: {}
        model_providers:
          - model: openai/gpt-4o
    """)
    assert [(l.name, l.type, l.port) for l in cfg.listeners] == [
        ("ingress_traffic", "prompt", 10000), ("egress_traffic", "model", 12000)]
    (err,) = errors_of("""\
        version: v0.1
        listeners:
          ingress_traffic:
            port: 10000
          egress_traffic:
            port: 10000   # <-
        model_providers:
          - model: openai/gpt-4o
    """)
    assert (err.path, err.line) == ("listeners.egress_traffic.port", 6)
    assert "already used" in err.message


def test_llm_providers_alias():
    cfg = load("""\
        version: v0.3.0
        listeners:
          - type: model
            name: m
        llm_providers:
          - model: openai/gpt-4o
            access_key: $OPENAI_API_KEY
            default: true
    """)
    assert cfg.llm_providers is None
    assert [p.model for p in cfg.model_providers] == ["openai/gpt-4o"]
    assert any("deprecated" in w.message and w.path == "llm_providers" for w in cfg.warnings)


def test_llm_providers_errors_point_at_llm_providers():
    (err,) = errors_of("""\
        version: v0.3.0
        listeners: []
        llm_providers:
          - model: openai/gpt-4o
          - model: openai/gpt-4o   # <-
    """)
    assert err.path == "llm_providers[1].model" and err.line == 5
    assert "Duplicate model_provider name" in err.message


def test_agent_listener_with_filter_chain_extensions():
    cfg = load("""\
        version: v0.3.0
        agents:
          - id: rag
            url: http://localhost:10505
            timeout: 1m
        filters:
          - id: input_guards
            url: http://localhost:10500
          - id: query_rewriter
            url: http://localhost:10501/mcp
            type: mcp
            tool: rewrite
        listeners:
          - type: agent
            name: agents
            port: 8001
            timeout: 90s
            agents:
              - id: rag
                description: answers questions
                default: true
                filter_chain: [input_guards, query_rewriter]
                output_filters: [input_guards]
        admin:
          port: 9999
    """, env={})
    ag = cfg.agent_listeners[0].agents[0]
    assert ag.input_filters == ["input_guards", "query_rewriter"] and ag.filter_chain is None
    assert ag.output_filters == ["input_guards"] and ag.default
    assert cfg.agents[0].timeout == 60.0 and cfg.agent_listeners[0].timeout == 90.0
    assert cfg.filter_by_id("query_rewriter").tool == "rewrite"
    assert cfg.filter_by_id("input_guards").type == "mcp"
    assert (cfg.admin.address, cfg.admin.port) == ("127.0.0.1", 9999)
    # no providers + only agent listeners is fine; implicit model listener answers 404
    assert cfg.model_providers == [] and cfg.model_listener.implicit


def test_full_feature_config_loads():
    cfg = load("""\
        version: v0.4.0
        listeners:
          - {type: model, name: m, port: 12000, max_retries: 2, address: 127.0.0.1}
        endpoints:
          weather_api:
            endpoint: api.weather.local:8080
            protocol: https
            connect_timeout: 0.5s
            prefix_affinity: true
        model_providers:
          - model: openai/gpt-4o
            access_key: $OPENAI_API_KEY
            timeout: 120
            connect_timeout: 2s
            headers: {X-Team: core}
          - model: custom/llama
            base_url: https://llm.local/v2
            provider_interface: openai
            passthrough_auth: true
          - model: kimi/k2
            base_url: https://kimi.local
            provider_interface: claude
        model_metrics_sources:
          - {type: cost, provider: models.dev}
          - {type: latency, provider: prometheus, url: "http://prom:9090", query: "x", refresh_interval: 30}
        routing_preferences:
          - name: cheap
            description: cheap stuff
            models: [gpt-4o, custom/llama]
            selection_policy: {prefer: cheapest}
        routing:
          session_cache: {type: redis, url: "redis://localhost:6379", tenant_header: x-tenant}
          routing_budget: {max_switch_spend_pct: 25}
        prompt_caching: {enabled: true}
        overrides: {upstream_connect_timeout: 10s, llm_routing_model: openai/gpt-4o}
        state_storage: {type: postgres, connection_string: "postgres://u:p@db/x"}
        tracing:
          opentracing_grpc_endpoint: http://otel:4317
          otlp_http_endpoint: http://otel:4318/v1/traces
          capture_content: true
          exporters:
            - {type: posthog, url: "https://us.i.posthog.com", api_key: $POSTHOG_KEY}
        ratelimits:
          - model: openai/gpt-4o
            selector: {key: x-user, value: alice}
            limit: {tokens: 1000, unit: minute}
        mode: llm
    """, env={"OPENAI_API_KEY": "k"})
    p = cfg.model_providers[0]
    assert (p.timeout, p.connect_timeout, p.headers) == (120.0, 2.0, {"X-Team": "core"})
    custom = cfg.model_providers[1]
    assert (custom.prefix, custom.provider, custom.interface, custom.is_builtin) == ("custom", "custom", "openai", False)
    assert cfg.model_providers[2].interface == "anthropic"
    assert cfg.endpoints["weather_api"].connect_timeout == 0.5
    assert cfg.overrides.upstream_connect_timeout == 10.0
    assert cfg.routing.routing_budget.cache_read_discount == 0.1
    assert cfg.prompt_caching.affinity_active and cfg.prompt_caching.inject_active
    assert cfg.model_listener.max_retries == 2 and cfg.model_listener.address == "127.0.0.1"
    ex = cfg.tracing.exporters[0]
    assert ex.api_key is None and ex.api_key_env_missing == "POSTHOG_KEY"
    assert cfg.tracing.capture_content is True
    assert cfg.model_metrics_sources[1].refresh_interval == 30
    assert cfg.ratelimits[0].limit.unit == "minute"
    assert not any(w.severity == "error" for w in cfg.warnings)
    # secrets are never part of the serialised form's private bookkeeping
    assert "access_key_env_missing" not in p.model_dump()


# --------------------------------------------------------------------------- env substitution


def test_env_substitution_forms():
    cfg = load("""\
        version: v0.3.0
        listeners:
          - type: model
            name: ${LNAME}
            port: ${PORT:-12345}
            address: ${ADDR:-127.0.0.2}
        model_providers:
          - model: $PROVIDER/gpt-4o
            access_key: "Bearer-${TOKEN}-$$literal"
            base_url: ${BASE:-http://default.local}
            http_host: ${EMPTY:-fallback}
            headers:
              X-Price: "costs $ 5 and $5"
    """, env={"LNAME": "main", "PROVIDER": "openai", "TOKEN": "t0k", "ADDR": "", "EMPTY": ""})
    ml = cfg.model_listener
    assert (ml.name, ml.port, ml.address) == ("main", 12345, "127.0.0.2")
    p = cfg.model_providers[0]
    assert p.model == "openai/gpt-4o"
    assert p.access_key == "Bearer-t0k-$literal"
    assert p.base_url == "http://default.local"
    assert p.http_host == "fallback"
    assert p.headers == {"X-Price": "costs $ 5 and $5"}


def test_env_unset_is_error_with_name_path_and_line():
    text = """\
        version: v0.3.0
        listeners: []
        model_providers:
          - model: ollama/llama3
            base_url: $FOO_URL   # <-
    """
    with pytest.raises(ConfigError) as ei:
        load_config_text(textwrap.dedent(text), env={})
    (err,) = ei.value.issues
    assert (err.path, err.line) == ("model_providers[0].base_url", marked_line(text))
    assert "'FOO_URL' is not set" in err.message
    assert str(ei.value) == (
        "plano.yaml:5: model_providers[0].base_url: environment variable 'FOO_URL' is not set")


def test_env_unset_credential_is_warning_and_none():
    cfg = load("""\
        version: v0.3.0
        listeners: []
        model_providers:
          - model: openai/gpt-4o
            access_key: $OPENAI_API_KEY
          - model: anthropic/claude-sonnet-4-6
            access_key: ${ANTHROPIC_API_KEY}
    """, env={"ANTHROPIC_API_KEY": "present"})
    a, b = cfg.model_providers
    assert a.access_key is None and a.access_key_env_missing == "OPENAI_API_KEY"
    assert b.access_key == "present" and b.access_key_env_missing is None
    (w,) = cfg.warnings
    assert (w.path, w.line, w.severity) == ("model_providers[0].access_key", 5, "warning")
    assert "OPENAI_API_KEY" in w.message


def test_env_invalid_reference_is_error():
    (err,) = errors_of("""\
        version: v0.3.0
        listeners:
          - {type: agent, name: "${1BAD}", port: 8001}
    """)
    assert err.path == "listeners[0].name" and "invalid environment variable reference" in err.message


def test_dotenv_fallback_and_process_env_wins(tmp_path: Path):
    (tmp_path / ".env").write_text(
        "# comment\nexport OPENAI_API_KEY='from-dotenv'\nBASE=http://dotenv.local  # trailing\nPORT=\"12001\"\n"
    )
    cfg_file = tmp_path / "plano.yaml"
    cfg_file.write_text(textwrap.dedent("""\
        version: v0.3.0
        listeners:
          - {type: model, name: m, port: $PORT}
        model_providers:
          - model: ollama/llama3
            base_url: $BASE
            access_key: $OPENAI_API_KEY
    """))
    cfg = load_config(cfg_file, env={"PORT": "12002"})
    assert cfg.model_listener.port == 12002  # process env wins
    p = cfg.model_providers[0]
    assert (p.base_url, p.access_key) == ("http://dotenv.local", "from-dotenv")
    assert cfg.base_dir == tmp_path.resolve()


def test_secret_values_not_echoed():
    errs = errors_of("""\
        version: v0.3.0
        listeners: []
        model_providers:
          - model: openai/gpt-4o
            access_key: [sk-super-secret]
            headers:
              Authorization: [Bearer sk-other-secret]
    """)
    assert {e.path for e in errs} == {"model_providers[0].access_key", "model_providers[0].headers.Authorization"}
    text = "\n".join(e.message for e in errs)
    assert "secret" not in text and "expected a string" in text


# --------------------------------------------------------------------------- negative: one case per rule

BASE = """\
version: v0.4.0
listeners:
  - type: model
    name: m
"""

RULE_CASES = [
    # rule 1 (schema): unknown key, wrong types, enums, required
    ("unknown-top-key", BASE + "listen: 1   # <-\n", "listen", "unknown field 'listen'"),
    ("unknown-nested-key", """\
version: v0.4.0
listeners:
  - type: model
    name: m
    prot: 12000   # <-
""", "listeners[0].prot", "unknown field 'prot' (allowed: name, type, port"),
    ("wrong-int", """\
version: v0.4.0
listeners:
  - type: model
    name: m
    port: abc   # <-
""", "listeners[0].port", "expected an integer, got 'abc'"),
    ("bad-version", "version: v9   # <-\nlisteners: []\n", "version", "must be one of 'v0.1'"),
    ("missing-listeners", "version: v0.4.0   # <-\n", "listeners", "required field is missing"),
    ("bad-listener-type", """\
version: v0.4.0
listeners:
  - type: mdoel   # <-
    name: m
""", "listeners[0].type", "must be one of 'agent', 'model' or 'prompt'"),
    ("missing-agent-description", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - id: a   # <-
""", "listeners[0].agents[0].description", "required field is missing"),
    ("bad-duration", """\
version: v0.4.0
listeners:
  - type: model
    name: m
    timeout: 10 parsecs   # <-
""", "listeners[0].timeout", "invalid duration '10 parsecs'"),
    ("bad-size", """\
version: v0.4.0
listeners:
  - type: model
    name: m
    max_body_bytes: lots   # <-
""", "listeners[0].max_body_bytes", "invalid size"),
    ("bad-metrics-type", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources:
  - type: carbon   # <-
    provider: x
""", "model_metrics_sources[0]", "'type' must be one of 'cost', 'latency'"),
    ("bad-metrics-field", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources:
  - type: cost
    provider: aws   # <-
""", "model_metrics_sources[0].provider", "must be one of 'digitalocean' or 'models.dev'"),
    ("yaml-syntax", "version: v0.4.0\nlisteners: [\n  - a: b   # <-\n", "", "invalid YAML"),
    # rule 2
    ("rule2-both-providers", BASE + """\
model_providers: [{model: openai/gpt-4o}]
llm_providers:   # <-
  - model: openai/gpt-4o-mini
""", "llm_providers", "Please provide either llm_providers or model_providers"),
    # rule 3
    ("rule3-wildcard-prefs", """\
version: v0.3.0
listeners: []
model_providers:
  - model: openai/*
    routing_preferences:   # <-
      - {name: code, description: code}
""", "model_providers[0].routing_preferences", "Models with routing preferences cannot be wildcards"),
    # rule 4
    ("rule4-duplicate-agent-filter-id", """\
version: v0.4.0
listeners: []
agents:
  - {id: shared, url: "http://a:1"}
filters:
  - id: shared   # <-
    url: http://b:2
""", "filters[0].id", "Duplicate agent id"),
    # rule 5
    ("rule5-unknown-endpoint", """\
version: v0.1
listeners: []
model_providers: [{model: openai/gpt-4o}]
prompt_targets:
  - name: weather
    description: w
    endpoint:
      name: nowhere   # <-
      path: /weather
""", "prompt_targets[0].endpoint.name", "Unknown endpoint"),
    # rule 6
    ("rule6-otlp-scheme", BASE + """\
model_providers: [{model: openai/gpt-4o}]
tracing:
  opentracing_grpc_endpoint: https://otel:4317   # <-
""", "tracing.opentracing_grpc_endpoint", "Invalid opentracing_grpc_endpoint"),
    ("rule6-otlp-path", BASE + """\
model_providers: [{model: openai/gpt-4o}]
tracing:
  opentracing_grpc_endpoint: http://otel:4317/v1   # <-
""", "tracing.opentracing_grpc_endpoint", "path must be empty"),
    # rule 7
    ("rule7-duplicate-pref", BASE + """\
model_providers: [{model: openai/gpt-4o}]
routing_preferences:
  - {name: a, description: x, models: [openai/gpt-4o]}
  - name: a   # <-
    description: y
    models: [openai/gpt-4o]
""", "routing_preferences[1].name", "Duplicate routing preference name"),
    # rule 8
    ("rule8-duplicate-name", BASE + """\
model_providers:
  - {name: p, model: openai/gpt-4o}
  - name: p   # <-
    model: openai/gpt-4o-mini
""", "model_providers[1].name", "Duplicate model_provider name"),
    ("rule8-duplicate-model", BASE + """\
model_providers:
  - {name: a, model: openai/gpt-4o}
  - name: b
    model: openai/gpt-4o   # <-
""", "model_providers[1].model", "Duplicate model name"),
    ("rule8-duplicate-model-id", BASE + """\
model_providers:
  - model: openai/gpt-4o
  - model: mistral/gpt-4o   # <-
""", "model_providers[1].model", "Duplicate model_id"),
    # rule 9
    ("rule9-invalid-model-name", BASE + """\
model_providers:
  - model: gpt-4o   # <-
""", "model_providers[0].model", "Invalid model name"),
    # rule 10
    ("rule10-default-wildcard", BASE + """\
model_providers:
  - model: openai/*
    default: true   # <-
""", "model_providers[0].default", "Default models cannot be wildcards"),
    # rule 11
    ("rule11-base-url-required", BASE + """\
model_providers:
  - model: azure_openai/gpt-4o   # <-
""", "model_providers[0].model", "Provider 'azure_openai' requires 'base_url'"),
    # rule 12
    ("rule12-unknown-provider", BASE + """\
model_providers:
  - model: custom/gpt-4o   # <-
""", "model_providers[0].model", "Must provide base_url and provider_interface"),
    # rule 13
    ("rule13-interface-on-builtin", BASE + """\
model_providers:
  - model: openai/gpt-4o
    provider_interface: openai   # <-
""", "model_providers[0].provider_interface", "Please provide provider interface as part of model name"),
    ("unknown-provider-interface", BASE + """\
model_providers:
  - model: custom/x
    base_url: http://x
    provider_interface: cobol   # <-
""", "model_providers[0].provider_interface", "unknown provider_interface 'cobol'"),
    # rule 14
    ("rule14-base-url-scheme", BASE + """\
model_providers:
  - model: openai/gpt-4o
    base_url: localhost:8000   # <-
""", "model_providers[0].base_url", "Please provide a valid URL with scheme"),
    # rule 15
    ("rule15-alias-target", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_aliases:
  fast:
    target: gpt-5   # <-
""", 'model_aliases.fast.target', "which is not defined as a model"),
    ("rule15-alias-dotted-key", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_aliases:
  arch.fast.v1:
    target: anthropic/claude   # <-
""", 'model_aliases["arch.fast.v1"].target', "which is not defined as a model"),
    # rule 16
    ("rule16-prefs-need-v04", """\
version: v0.3.0
listeners: []
model_providers: [{model: openai/gpt-4o}]
routing_preferences:   # <-
  - {name: a, description: x, models: [openai/gpt-4o]}
""", "routing_preferences", "require version v0.4.0"),
    ("rule16-pref-unknown-model", BASE + """\
model_providers: [{model: openai/gpt-4o}]
routing_preferences:
  - name: a
    description: x
    models:
      - openai/gpt-4o
      - anthropic/claude-sonnet-4-6   # <-
""", "routing_preferences[0].models[1]", "references model 'anthropic/claude-sonnet-4-6'"),
    # rule 17
    ("rule17-two-cost-sources", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources:
  - {type: cost, provider: digitalocean}
  - type: cost   # <-
    provider: models.dev
""", "model_metrics_sources[1].type", "only one 'cost' model_metrics_sources"),
    ("rule17-cheapest-needs-cost", BASE + """\
model_providers: [{model: openai/gpt-4o}]
routing_preferences:
  - name: a
    description: x
    models: [openai/gpt-4o]
    selection_policy:
      prefer: cheapest   # <-
""", "routing_preferences[0].selection_policy.prefer", "requires a model_metrics_sources entry with type: cost"),
    ("rule17-fastest-needs-latency", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources: [{type: cost, provider: digitalocean}]
routing_preferences:
  - name: a
    description: x
    models: [openai/gpt-4o]
    selection_policy:
      prefer: fastest   # <-
""", "routing_preferences[0].selection_policy.prefer", "type: latency"),
    ("rule17-budget-needs-cost", BASE + """\
model_providers: [{model: openai/gpt-4o}]
routing:
  routing_budget:   # <-
    max_switch_spend_pct: 10
""", "routing.routing_budget", "routing_budget requires a model_metrics_sources entry with type: cost"),
    ("rule17-spend-pct-range", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources: [{type: cost, provider: digitalocean}]
routing:
  routing_budget:
    max_switch_spend_pct: 101   # <-
""", "routing.routing_budget.max_switch_spend_pct", "max_switch_spend_pct must be between 0 and 100"),
    ("rule17-discount-range", BASE + """\
model_providers: [{model: openai/gpt-4o}]
model_metrics_sources: [{type: cost, provider: digitalocean}]
routing:
  routing_budget:
    max_switch_spend_pct: 10
    cache_read_discount: -0.5   # <-
""", "routing.routing_budget.cache_read_discount", "cache_read_discount must be between 0 and 1"),
    # rule 18
    ("rule18-no-providers", BASE + "model_providers: []   # <-\n", "model_providers", "There must be at least one LLM Provider"),
    ("rule18-no-providers-key", "version: v0.4.0\nlisteners:   # <-\n  - {type: model, name: m}\n",
     "listeners", "There must be at least one LLM Provider"),
    ("rule18-two-defaults", BASE + """\
model_providers:
  - {model: openai/gpt-4o, default: true}
  - model: openai/gpt-4o-mini
    default: true   # <-
""", "model_providers[1].default", "more than one default model provider"),
    # rule 19
    ("rule19-postgres-needs-connection-string", BASE + """\
model_providers: [{model: openai/gpt-4o}]
state_storage:   # <-
  type: postgres
""", "state_storage.connection_string", "connection_string is required"),
    ("rule19-redis-needs-url", BASE + """\
model_providers: [{model: openai/gpt-4o}]
routing:
  session_cache:   # <-
    type: redis
""", "routing.session_cache.url", "url is required"),
    # listeners
    ("two-model-listeners", """\
version: v0.4.0
model_providers: [{model: openai/gpt-4o}]
listeners:
  - {type: model, name: a, port: 12000}
  - type: model   # <-
    name: b
    port: 12001
""", "listeners[1].type", "only one model listener"),
    ("duplicate-listener-name", """\
version: v0.4.0
model_providers: [{model: openai/gpt-4o}]
listeners:
  - {type: model, name: a, port: 12000}
  - type: agent
    name: a   # <-
    port: 8001
""", "listeners[1].name", "duplicate listener name 'a'"),
    ("duplicate-listener-port", """\
version: v0.4.0
model_providers: [{model: openai/gpt-4o}]
listeners:
  - {type: model, name: a, port: 8001}
  - type: agent
    name: b
    port: 8001   # <-
""", "listeners[1].port", "port 8001 is already used"),
    ("implicit-model-listener-port-clash", """\
version: v0.4.0
listeners:
  - type: agent
    name: b
    port: 12000   # <-
""", "listeners[0].port", "implicit model listener"),
    ("port-range", """\
version: v0.4.0
model_providers: [{model: openai/gpt-4o}]
listeners:
  - type: model
    name: a
    port: 70000   # <-
""", "listeners[0].port", "port must be between 1 and 65535"),
    ("agent-listener-needs-port", """\
version: v0.4.0
listeners:
  - type: agent   # <-
    name: a
""", "listeners[0].port", "requires 'port'"),
    ("unknown-input-filter", (BASE + """\
model_providers: [{model: openai/gpt-4o}]
filters: [{id: f, url: "http://f"}]
""").replace("    name: m\n", "    name: m\n    input_filters: [f, nope]   # <-\n"),
     "listeners[0].input_filters[1]", "references input_filters id 'nope' which is not defined in agents or filters"),
    ("unknown-output-filter", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - id: a
        description: d
        output_filters:
          - missing_output_guard   # <-
""", "listeners[0].agents[0].output_filters[0]", "references output_filters id 'missing_output_guard'"),
    ("unknown-filter-chain-id", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - id: a
        description: d
        filter_chain:
          - ghost   # <-
""", "listeners[0].agents[0].filter_chain[0]", "references input_filters id 'ghost'"),
    ("filter-chain-and-input-filters", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - id: a
        description: d
        input_filters: []
        filter_chain: []   # <-
""", "listeners[0].agents[0].filter_chain", "not both"),
    ("listener-agent-undefined", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - id: b   # <-
        description: d
""", "listeners[0].agents[0].id", "agent 'b' is not defined in agents"),
    ("two-default-agents", """\
version: v0.4.0
agents: [{id: a, url: "http://a"}, {id: b, url: "http://b"}]
listeners:
  - type: agent
    name: l
    port: 8001
    agents:
      - {id: a, description: d, default: true}
      - id: b
        description: d
        default: true   # <-
""", "listeners[0].agents[1].default", "only one agent can be default"),
    # agents / filters / misc
    ("agent-url", """\
version: v0.4.0
listeners: []
agents:
  - id: a
    url: localhost:8000   # <-
""", "agents[0].url", "Please provide a valid URL with scheme"),
    ("filter-url-no-host", """\
version: v0.4.0
listeners: []
filters:
  - id: f
    url: "http://"   # <-
""", "filters[0].url", "URL has no host"),
    ("filter-on-error", """\
version: v0.4.0
listeners: []
filters:
  - id: f
    url: http://f
    on_error: ignore   # <-
""", "filters[0].on_error", "must be one of 'fail_closed' or 'fail_open'"),
    ("random-sampling", BASE + """\
model_providers: [{model: openai/gpt-4o}]
tracing:
  random_sampling: 101   # <-
""", "tracing.random_sampling", "random_sampling must be between 0 and 100"),
    ("exporter-url", BASE + """\
model_providers: [{model: openai/gpt-4o}]
tracing:
  exporters:
    - type: posthog
      url: posthog.local   # <-
      api_key: k
""", "tracing.exporters[0].url", "Please provide a valid URL with scheme"),
    ("endpoint-name", BASE + """\
model_providers: [{model: openai/gpt-4o}]
endpoints:
  1bad:   # <-
    endpoint: x:80
""", 'endpoints["1bad"]', "invalid endpoint name"),
    ("admin-port-clash", BASE + """\
model_providers: [{model: openai/gpt-4o}]
admin:
  port: 12000   # <-
""", "admin.port", "already used by a listener"),
]


@pytest.mark.parametrize("text,path,substring", [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES])
def test_rule_errors(text, path, substring):
    with pytest.raises(ConfigError) as ei:
        load_config_text(text, source="cfg.yaml", env=ENV)
    issues = ei.value.issues
    matching = [i for i in issues if substring in i.message]
    assert matching, f"no issue containing {substring!r}: {[str(i) for i in issues]}"
    issue = matching[0]
    assert issue.path == path
    assert issue.line == marked_line(text)
    assert issue.severity == "error"
    assert f"cfg.yaml:{issue.line}: " in str(ei.value)


def test_all_errors_collected_in_one_pass():
    text = """\
        version: v0.4.0
        listeners:
          - {type: model, name: m, port: abc}
        agents:
          - {id: a, url: "ftp://a"}
        model_providers:
          - model: gpt-4o
          - model: openai/*
            default: true
          - model: openai/gpt-4o
            default: notabool
        tracing:
          random_sampling: 500
    """
    errs = errors_of(text)
    assert [(e.path, e.line) for e in errs] == [
        ("listeners[0].port", 3),
        ("agents[0].url", 5),
        ("model_providers[0].model", 7),
        ("model_providers[1].default", 9),
        ("model_providers[2].default", 11),
        ("tracing.random_sampling", 13),
    ]
    assert "expected a boolean" in errs[4].message
    assert len(str(ConfigError(errs)).splitlines()) == 6


def test_partial_section_does_not_cascade():
    # provider[0] is invalid; the alias targeting it must not produce a bogus error
    errs = errors_of("""\
        version: v0.4.0
        listeners: []
        model_providers:
          - model: openai/gpt-4o
            default: maybe
        model_aliases:
          fast: {target: gpt-4o}
    """)
    assert [e.path for e in errs] == ["model_providers[0].default"]


def test_index_paths_survive_dropped_items():
    # item 0 fails schema validation; the duplicate among items 1/2 keeps its real index
    errs = errors_of("""\
        version: v0.4.0
        listeners: []
        model_providers:
          - model: 42x
            bogus: 1
          - model: openai/gpt-4o
          - model: openai/gpt-4o
    """)
    assert [(e.path, e.line) for e in errs] == [
        ("model_providers[0].bogus", 5), ("model_providers[2].model", 7)]


# --------------------------------------------------------------------------- warnings


def test_warnings():
    cfg = load("""\
        version: v0.4.0
        listeners: []
        model_providers:
          - model: openai/gpt-4o
            access_key: k
            passthrough_auth: true
        overrides:
          llm_routing_model: plano/Plano-Orchestrator
        prompt_targets: []
        system_prompt: hi
        routing:
          route_on_user_only: true
    """)
    by_path = {w.path: w for w in cfg.warnings}
    assert "passthrough_auth" in by_path["model_providers[0].access_key"].message
    assert by_path["model_providers[0].access_key"].line == 5
    assert "does not match any model" in by_path["overrides.llm_routing_model"].message
    assert "not supported" in by_path["prompt_targets"].message
    assert "not supported" in by_path["system_prompt"].message
    assert "tenant_header" in by_path["routing"].message
    assert all(w.severity == "warning" for w in cfg.warnings)


def test_duplicate_yaml_key_warns():
    cfg = load("""\
        version: v0.4.0
        listeners: []
        listeners: []
    """)
    (w,) = cfg.warnings
    assert (w.path, w.line) == ("listeners", 3) and "duplicate key" in w.message


# --------------------------------------------------------------------------- inline routing preference migration

INLINE = """\
version: v0.3.0
listeners: []
model_providers:
  - model: openai/gpt-4o-mini
    default: true
  - model: openai/gpt-4o
    routing_preferences:
      - {name: code understanding, description: explains code}
      - {name: reasoning, description: deep reasoning}
  - model: openai/gpt-4.1
    name: big
    routing_preferences:
      - name: code understanding
        description: generates code
"""


def test_inline_prefs_migrated_and_merged():
    cfg = load(INLINE)
    assert cfg.version == "v0.4.0"
    prefs = {r.name: r for r in cfg.routing_preferences}
    assert prefs["code understanding"].models == ["openai/gpt-4o", "big"]
    assert prefs["code understanding"].description == "explains code"  # first wins
    assert prefs["reasoning"].models == ["openai/gpt-4o"]
    assert all(p.routing_preferences is None for p in cfg.model_providers)
    desc = [w for w in cfg.warnings if "different descriptions" in w.message]
    assert len(desc) == 1 and desc[0].path == "model_providers[2].routing_preferences[0].description"
    assert desc[0].line == 14
    assert any("version bumped" in w.message for w in cfg.warnings)


def test_inline_prefs_top_level_wins():
    cfg = load(INLINE + """\
routing_preferences:
  - name: code understanding
    description: top-level
    models: [openai/gpt-4o-mini]
""")
    prefs = {r.name: r for r in cfg.routing_preferences}
    assert prefs["code understanding"].description == "top-level"
    assert prefs["code understanding"].models == ["openai/gpt-4o-mini"]
    assert list(prefs) == ["code understanding", "reasoning"]


def test_inline_prefs_noop_for_v04():
    cfg = load(INLINE.replace("v0.3.0", "v0.4.0"))
    assert cfg.version == "v0.4.0" and cfg.routing_preferences == []
    assert any("ignored" in w.message for w in cfg.warnings)


def test_no_migration_keeps_version():
    cfg = load("version: v0.3.0\nlisteners: []\n")
    assert cfg.version == "v0.3.0"


def test_migrated_pref_error_points_at_inline_entry():
    text = """\
        version: v0.3.0
        listeners: []
        model_providers:
          - model: openai/gpt-4o
            routing_preferences:
              - {name: a, description: x}
              - {name: a, description: y}   # <-
    """
    errs = errors_of(text)
    assert [(e.path, e.line) for e in errs] == [
        ("model_providers[0].routing_preferences[1].name", marked_line(text))]
    assert "Duplicate routing preference name" in errs[0].message


# --------------------------------------------------------------------------- helpers / misc


@pytest.mark.parametrize("value,expected", [
    ("30s", 30.0), ("300s", 300.0), ("5m", 300.0), ("100ms", 0.1), ("1h", 3600.0),
    ("1m30s", 90.0), (2, 2.0), (0.25, 0.25), ("15", 15.0), (" 2 s ", 2.0),
])
def test_parse_duration(value, expected):
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["abc", "5 days", "-1s", -3, True, "", None])
def test_parse_duration_invalid(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value,expected", [
    (1024, 1024), ("10MB", 10_000_000), ("512KiB", 524_288), ("10MiB", 10_485_760), ("10M", 10_485_760),
    ("2GB", 2_000_000_000), ("100", 100), ("100b", 100),
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["ten", "-5", -5, "1.5XB", True])
def test_parse_size_invalid(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_model_provider_properties():
    cfg = load("""\
        version: v0.4.0
        listeners: []
        model_providers:
          - model: together/meta-llama/Llama-3-70b
            name: llama
          - model: google/gemini-2.5-pro
    """)
    a, b = cfg.model_providers
    assert (a.prefix, a.provider, a.model_id, a.effective_name, a.is_wildcard) == (
        "together", "together_ai", "meta-llama/Llama-3-70b", "llama", False)
    assert a.spec.name == "together_ai"
    assert (b.provider, b.interface) == ("gemini", "gemini")
    assert cfg.provider_by_name("llama") is a
    assert cfg.provider_by_name("together/meta-llama/Llama-3-70b") is a


def test_find_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="no config file found"):
        find_config_file(None, tmp_path)
    (tmp_path / "plano_config.yaml").write_text("x")
    assert find_config_file(None, tmp_path).name == "plano_config.yaml"
    (tmp_path / "config.yaml").write_text("x")
    assert find_config_file(None, tmp_path).name == "config.yaml"
    (tmp_path / "plano.yaml").write_text("x")
    assert find_config_file(None, tmp_path).name == "plano.yaml"
    (tmp_path / "other.yml").write_text("x")
    assert find_config_file("other.yml", tmp_path) == tmp_path / "other.yml"
    with pytest.raises(ConfigError, match="not found"):
        find_config_file("missing.yaml", tmp_path)


def test_load_config_errors_name_the_file(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("version: v0.4.0\nlisteners:\n  - {type: model, name: m, port: x}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={})
    assert str(ei.value).startswith(f"{f}:3: listeners[0].port: expected an integer")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_non_mapping_root():
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_text("- a\n- b\n")


def test_json_schema_is_up_to_date():
    assert SCHEMA_PATH.exists(), "run: python -m gateway.config.jsonschema"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), "run: python -m gateway.config.jsonschema"
    schema = json.loads(render_schema())
    assert {"version", "listeners"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert "LegacyListeners" in schema["$defs"]
    assert "access_key_env_missing" not in json.dumps(schema)


def test_load_is_fast():
    text = ALIASES + "\n" + "tracing: {random_sampling: 10}\n"
    load_config_text(text, env=ENV)  # warm up
    t0 = time.perf_counter()
    for _ in range(10):
        load_config_text(text, env=ENV)
    assert (time.perf_counter() - t0) / 10 < 0.05


def test_gateway_wildcards_with_passthrough_are_valid():
    cfg = load("""
        version: v0.4.0
        listeners:
          - {type: model, name: llm, port: 12000}
        model_providers:
          - {model: vercel/*, passthrough_auth: true}
          - {model: openrouter/*, passthrough_auth: true}
          - {model: edenai/*, passthrough_auth: true}
    """)
    assert [p.provider for p in cfg.model_providers] == ["vercel", "openrouter", "edenai"]
    assert all(p.is_wildcard and p.passthrough_auth for p in cfg.model_providers)
