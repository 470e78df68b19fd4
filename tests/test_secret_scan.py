"""Secret scan (issue 5 acceptance): credentials that pass through plano never reach its logs, access log,
exported spans or ``/metrics``.

One real gateway with everything on — tracing at 100% into a real OTLP/gRPC receiver
(``span_attributes.header_prefixes: [x-]``, so every ``x-`` header is a candidate span
attribute), the admin port, the access log in a file, ``LOG_LEVEL=debug`` — and providers
keyed by a literal ``access_key``, by an environment variable, and by the client's own key
(``passthrough_auth``). Every request carries an ``Authorization`` bearer, an ``x-api-key``
and a webhook secret header; some succeed (JSON and streaming), some fail (unknown model,
upstream 401 that echoes the key, upstream unreachable, orchestrator 401). The upstream
mocks are *supposed* to see the provider / client keys (checked, as a positive control);
nothing else may.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.agent_mocks import chat_posts, route_reply
from tests.support.gateway import Gateway, free_port
from tests.support.http_filter_mock import HttpFilterMock
from tests.support.mock_llm import MockLLM, Reply
from tests.support.otlp import OTLPReceiver
from tests.support.telemetry_checks import (
    access_lines,
    describe,
    export_bytes,
    gateway_env,
    metric_sum,
    parse_samples,
    scrape,
    span_strings,
    spans_when,
    wait_until,
)

PROVIDER_KEY = "sk-SECRET-provider-0123456789"  # literal access_key in the config
ENV_KEY = "sk-SECRET-envprovider-5550001"  # access_key: $SECRET_SCAN_ENV_KEY
CLIENT_BEARER = "sk-SECRET-client-abcdef"  # Authorization: Bearer ... (forwarded upstream by passthrough_auth)
XAPI_KEY = "sk-SECRET-xapi-999"  # x-api-key (too short for the sk- key shape: only header hygiene catches it)
WEBHOOK_SECRET = "whsec_SECRET_42"  # x-webhook-secret: a stand-in for a webhook signing secret
MODEL_FIELD_KEY = "sk-SECRET-in-model-field-777"  # a key pasted into the `model` field (client-controlled text)

#: secret -> a distinctive fragment that must not survive either (half-redacted values)
SECRETS = {
    PROVIDER_KEY: "provider-0123456789",
    ENV_KEY: "envprovider-5550001",
    CLIENT_BEARER: "SECRET-client-abcdef",
    XAPI_KEY: "SECRET-xapi-999",
    WEBHOOK_SECRET: "SECRET_42",
    MODEL_FIELD_KEY: "in-model-field-777",
}

CLIENT_HEADERS = {
    "Authorization": f"Bearer {CLIENT_BEARER}",
    "x-api-key": XAPI_KEY,
    "x-webhook-secret": WEBHOOK_SECRET,
    "x-tenant-id": "acme",  # an ordinary x- header: it may become a span attribute
}


def openai_401(key: str) -> Reply:
    """What a provider answers for a bad key; this one echoes the key back whole (worst case)."""
    return Reply("error", status=401, body={"error": {
        "message": f"Incorrect API key provided: {key}. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})


@pytest.fixture
def world(tmp_path):
    receiver = OTLPReceiver()
    provider, orch, agent_a, agent_b = (MockLLM().start() for _ in range(4))
    filt = HttpFilterMock().start()
    ports = {"models": free_port(), "desk": free_port()}
    admin = free_port()
    dead = free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "a", "url": agent_a.url}, {"id": "b", "url": agent_b.url}],
        "filters": [{"id": "echo_filter", "type": "http", "url": f"{filt.url}/echo"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": PROVIDER_KEY, "base_url": f"{provider.url}/v1",
             "default": True},
            {"model": "openai/gpt-4o-mini", "access_key": "$SECRET_SCAN_ENV_KEY", "base_url": f"{provider.url}/v1"},
            {"model": "openai/pt-model", "passthrough_auth": True, "base_url": f"{provider.url}/v1"},
            {"model": "openai/dead-model", "access_key": PROVIDER_KEY, "base_url": f"http://127.0.0.1:{dead}/v1"},
            {"model": "openai/orch", "access_key": "$SECRET_SCAN_ENV_KEY", "base_url": f"{orch.url}/v1"},
        ],
        "overrides": {"agent_orchestration_model": "openai/orch"},
        "listeners": [
            {"type": "model", "name": "models", "port": ports["models"], "address": "127.0.0.1"},
            {"type": "agent", "name": "desk", "port": ports["desk"], "address": "127.0.0.1", "agents": [
                {"id": "a", "description": "Weather: current conditions and forecasts for cities.",
                 "input_filters": ["echo_filter"]},
                {"id": "b", "description": "Flight search: flights, airlines and fares between cities."},
            ]},
        ],
        "tracing": {
            "random_sampling": 100,
            "opentracing_grpc_endpoint": receiver.endpoint,
            "span_attributes": {"header_prefixes": ["x-"], "static": {"deployment.environment": "secret-scan"}},
        },
        "admin": {"address": "127.0.0.1", "port": admin},
    }
    access_log = tmp_path / "access.log"
    gw = Gateway(config, tmp_path, env=gateway_env(
        PLANO_ADMIN_PORT="", PLANO_ACCESS_LOG=str(access_log), LOG_LEVEL="debug", SECRET_SCAN_ENV_KEY=ENV_KEY))
    try:
        gw.start()
        yield {"gw": gw, "receiver": receiver, "provider": provider, "orch": orch, "filt": filt,
               "models": f"http://127.0.0.1:{ports['models']}", "desk": f"http://127.0.0.1:{ports['desk']}",
               "admin": admin, "access_log": access_log}
    finally:
        gw.stop()
        for mock in (provider, orch, agent_a, agent_b):
            mock.stop()
        filt.stop()
        receiver.stop()


def post(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=CLIENT_HEADERS if headers is None else headers,
                      timeout=30)


def chat(model: str | None, text: str, stream: bool = False) -> dict:
    body = {"messages": [{"role": "user", "content": text}], "stream": stream}
    if model is not None:
        body["model"] = model
    return body


def test_no_secret_reaches_logs_access_log_spans_or_metrics(world):
    models, desk, provider, orch = world["models"], world["desk"], world["provider"], world["orch"]
    sent = 0

    def expect(response: httpx.Response, status: int | tuple) -> None:
        nonlocal sent
        sent += 1
        allowed = status if isinstance(status, tuple) else (status,)
        assert response.status_code in allowed, response.text

    # model listener: successes, JSON and streaming, each kind of provider credential
    for stream in (False, True):
        expect(post(models, chat("gpt-4o", "hello literal", stream)), 200)
        expect(post(models, chat("gpt-4o-mini", "hello env", stream)), 200)
    expect(post(models, chat("pt-model", "hello passthrough bearer")), 200)
    only_xapi = {k: v for k, v in CLIENT_HEADERS.items() if k != "Authorization"}
    expect(post(models, chat("pt-model", "hello passthrough x-api-key", True), only_xapi), 200)
    # failures: unknown model (one named like a key), upstream 401 echoing the key, upstream unreachable
    expect(post(models, chat("no-such-model", "nope")), (400, 404))
    expect(post(models, chat(MODEL_FIELD_KEY, "oops, pasted my key as the model")), (400, 404))
    provider.enqueue(openai_401(PROVIDER_KEY))
    expect(post(models, chat("gpt-4o", "bad key")), 401)
    provider.enqueue(openai_401(ENV_KEY))
    expect(post(models, chat("gpt-4o-mini", "bad key, streaming", True)), 401)
    provider.enqueue(openai_401(CLIENT_BEARER))
    expect(post(models, chat("pt-model", "bad client key")), 401)
    expect(post(models, chat("dead-model", "anyone there?")), (502, 503, 504))
    expect(post(models, chat("dead-model", "anyone there? streaming", True)), (502, 503, 504))
    model_requests = sent

    # agent listener: the orchestrator's provider rejects its key (fallback), then a normal chain
    orch.enqueue(openai_401(ENV_KEY))
    expect(post(desk, chat(None, "What's the weather in Paris?")), 200)
    orch.enqueue(route_reply("a", "b"))
    expect(post(desk, chat(None, "Weather in Paris and flights there from NYC?", True)), 200)
    orch.enqueue(openai_401(ENV_KEY))
    expect(post(desk, chat(None, "Flights from NYC to Paris?", True)), 200)
    agent_requests = sent - model_requests

    # positive control: the credentials really were in play (upstreams got the keys they should get)
    auths = [r.headers.get("authorization") for r in chat_posts(provider)]
    assert f"Bearer {PROVIDER_KEY}" in auths and f"Bearer {ENV_KEY}" in auths
    assert f"Bearer {CLIENT_BEARER}" in auths and f"Bearer {XAPI_KEY}" in auths
    assert all(r.headers.get("authorization") == f"Bearer {ENV_KEY}" for r in chat_posts(orch))

    # collect every sink while the gateway runs: /metrics, exported spans
    admin = world["admin"]

    def counted():
        s = parse_samples(scrape(admin))
        return (metric_sum(s, "plano_http_requests_total", listener="models") >= model_requests
                and metric_sum(s, "plano_http_requests_total", listener="desk") >= agent_requests)

    wait_until(counted, 10.0)
    metrics_text = scrape(admin)
    parse_samples(metrics_text)  # valid exposition
    receiver = world["receiver"]
    spans = spans_when(receiver, lambda ss: sum(1 for s in ss if s.parent_id is None) >= sent)
    world["gw"].stop()  # flush: remaining spans, access-log lines, log records
    spans = receiver.spans()
    raw_spans = export_bytes(receiver)
    gateway_log = world["gw"].log()
    access = world["access_log"].read_text() if world["access_log"].exists() else ""

    # the sinks are not trivially empty
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) >= sent, f"expected a root span per request ({sent}):\n{describe(spans)}"
    assert len(access_lines(world["access_log"])) == sent, access
    assert "plano_http_requests_total" in metrics_text
    assert "[DEBUG]" in gateway_log, gateway_log[-2000:]  # LOG_LEVEL=debug took effect
    assert "orchestrator" in gateway_log  # the orchestrator's failure (with the echoing body) was logged

    sinks = {
        "gateway log (stderr)": gateway_log,
        "access log": access,
        "/metrics": metrics_text,
    }
    for span in spans:
        sinks[f"span {span.service} {span.name!r}"] = "\n".join(span_strings(span))
    leaks = []
    for sink, text in sinks.items():
        for secret, fragment in SECRETS.items():
            for needle in (secret, fragment):
                if needle in text:
                    at = text.index(needle)
                    leaks.append(f"{needle!r} in {sink}: …{text[max(0, at - 120):at + 60]!r}…")
                    break
    for secret, fragment in SECRETS.items():  # whatever the decoding above missed: the raw OTLP bytes
        for needle in (secret, fragment):
            if needle.encode() in raw_spans:
                leaks.append(f"{needle!r} in the exported OTLP bytes")
                break
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)

    # the span attributes taken from x- headers kept the harmless one and none of the credentials
    with_tenant = [s for s in roots if s.attributes.get("tenant.id") == "acme"]
    assert with_tenant, json.dumps([s.attributes for s in roots[:3]], default=str)[:2000]
    for span in spans:
        for key in span.attributes:
            assert "api.key" not in key and "webhook" not in key and "authorization" not in key, (span, key)
