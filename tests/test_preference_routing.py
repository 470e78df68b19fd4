"""Preference routing on the model listener (Plano §4.10): the official openai SDK -> plano -> mock
providers, with a mock router model speaking the Plano-Orchestrator protocol on loopback."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_router import MockRouter, models_dev

CODE_ROUTE = "code generation"
WRITING_ROUTE = "writing"
CODE_PROMPT = "Write a Python function that reverses a linked list"
# A prompt the embedded classifier (the fallback) sends to the code route on its own.
FALLBACK_CODE_PROMPT = "generate boilerplate code for a Flask app with one endpoint"


@pytest.fixture(scope="module")
def router():
    mock = MockRouter({CODE_ROUTE: ["python function", "boilerplate", "code"],
                       WRITING_ROUTE: ["essay", "poem", "email"],
                       "poetry": ["poem"]}).start()
    mock.prices = models_dev({"openai/gpt-4o": (2.5, 10.0, 1.25), "openai/gpt-4o-mini": (0.15, 0.6, 0.075),
                              "openai/gpt-4.1-nano": (0.1, 0.4, 0.025)})
    mock.latencies = {"gpt-4o": 0.9, "gpt-4o-mini": 0.2}
    yield mock
    mock.stop()


def config(mock_llm, router_url: str, port: int) -> dict:
    base = f"{mock_llm.url}/v1"
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "timeout": "30s"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-test", "base_url": base, "default": True},
            {"model": "openai/gpt-4o-mini", "access_key": "sk-test", "base_url": base},
            {"model": "openai/gpt-4.1-nano", "access_key": "sk-test", "base_url": base},
            {"model": "openai/code-model-a", "access_key": "sk-test", "base_url": base},
            {"model": "openai/code-model-b", "access_key": "sk-test", "base_url": base},
            {"model": "openai/unpriced-model", "access_key": "sk-test", "base_url": base},
            {"model": "openai/router-model", "access_key": "sk-router", "base_url": f"{router_url}/v1"},
        ],
        "routing_preferences": [
            {"name": CODE_ROUTE, "models": ["openai/code-model-a", "openai/code-model-b"],
             "description": "generating new code snippets, functions or boilerplate from a description"},
            {"name": WRITING_ROUTE, "models": ["openai/gpt-4o", "openai/unpriced-model", "openai/gpt-4.1-nano",
                                                "openai/gpt-4o-mini"],
             "description": "writing and editing prose: essays, emails, poems, summaries",
             "selection_policy": {"prefer": "cheapest"}},
            {"name": "fast answers", "models": ["openai/unpriced-model", "openai/gpt-4o", "openai/gpt-4o-mini"],
             "description": "quick factual lookups where speed matters", "selection_policy": {"prefer": "fastest"}},
        ],
        "model_metrics_sources": [
            {"type": "cost", "provider": "models.dev", "url": f"{router_url}/pricing.json"},
            {"type": "latency", "provider": "prometheus", "url": router_url, "query": "avg(llm_latency) by (model)"},
        ],
        "overrides": {"llm_routing_model": "openai/router-model", "agent_orchestration_timeout": "1s"},
    }


@pytest.fixture(scope="module")
def proxy(mock_llm, router, tmp_path_factory):
    gw = Gateway(config(mock_llm, router.url, free_port()), tmp_path_factory.mktemp("prefs")).start()
    yield gw
    gw.stop()


@pytest.fixture
def rt(router):
    router.reset()
    yield router
    router.reset()


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url()}/v1", api_key="sk-client", max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


def chat(client, text, *, model="openai/gpt-4o-mini", stream=False, **kw):
    """(answer text, response headers) of a chat completion through the SDK."""
    if stream:
        with client.chat.completions.with_streaming_response.create(model=model, messages=user(text), stream=True,
                                                                    **kw) as resp:
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
            return text, resp.headers
    raw = client.chat.completions.with_raw_response.create(model=model, messages=user(text), **kw)
    return raw.parse().choices[0].message.content, raw.headers


# -- the model listener ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_code_prompt_goes_to_the_code_routes_first_model(client, llm, rt, stream):
    text, headers = chat(client, CODE_PROMPT, stream=stream)
    assert text == f"echo: {CODE_PROMPT}"
    assert llm.last.body["model"] == "code-model-a"  # models[0] of the route, not the requested gpt-4o-mini
    assert headers["x-plano-route"] == CODE_ROUTE
    assert rt.routing_calls() == 1
    assert set(rt.routes_seen[0]) == {CODE_ROUTE, WRITING_ROUTE, "fast answers"}
    assert "routing_preferences" not in llm.last.body
    # the router model got its own key, not the client's
    asked = next(r for r in rt.requests if r.path.endswith("/chat/completions"))
    assert asked.headers["authorization"] == "Bearer sk-router" and asked.body["model"] == "router-model"


@pytest.mark.parametrize("stream", [False, True])
def test_greeting_matches_no_route_and_keeps_the_requested_model(client, llm, rt, stream):
    text, headers = chat(client, "Hi there!", stream=stream)
    assert text == "echo: Hi there!"
    assert llm.last.body["model"] == "gpt-4o-mini"
    assert headers["x-plano-route"] == "none"
    assert rt.routing_calls() == 1


def test_selection_policy_cheapest_ranks_by_the_cost_source(client, llm, rt):
    chat(client, "Please write an essay about rivers")
    assert llm.last.body["model"] == "gpt-4.1-nano"  # 0.5 $/M beats gpt-4o-mini 0.75 and gpt-4o 12.5


@pytest.mark.parametrize("mode", ["error", "hang", "garbage"])
def test_router_model_failing_falls_back_to_the_embedded_classifier(client, llm, rt, mode):
    rt.mode = mode
    text, headers = chat(client, FALLBACK_CODE_PROMPT)
    assert text == f"echo: {FALLBACK_CODE_PROMPT}"
    assert rt.routing_calls() >= 1  # the router model was asked first
    assert llm.last.body["model"] == "code-model-a"
    assert headers["x-plano-route"] == CODE_ROUTE
    text, headers = chat(client, "Hi there!")
    assert llm.last.body["model"] == "gpt-4o-mini" and headers["x-plano-route"] == "none"


def test_inline_routing_preferences_override_the_config(client, llm, rt):
    prefs = [{"name": "poetry", "description": "writing poems and verse", "models": ["openai/gpt-4.1-nano"]}]
    text, headers = chat(client, "write a poem about the sea", extra_body={"routing_preferences": prefs})
    assert llm.last.body["model"] == "gpt-4.1-nano"
    assert headers["x-plano-route"] == "poetry"
    assert rt.routes_seen[-1] == ["poetry"]  # the router saw the request's routes only
    assert "routing_preferences" not in llm.last.body


@pytest.mark.parametrize("prefs", [
    [{"name": "broken", "description": "no models"}],
    [{"name": "ghost", "description": "a model nobody configured", "models": ["openai/not-configured"]}],
    "not a list",
])
def test_invalid_inline_preferences_are_ignored_and_stripped(client, llm, rt, prefs):
    text, headers = chat(client, CODE_PROMPT, extra_body={"routing_preferences": prefs})
    assert text == f"echo: {CODE_PROMPT}"
    assert llm.last.body["model"] == "code-model-a"  # the config's routes decided
    assert headers["x-plano-route"] == CODE_ROUTE
    assert "routing_preferences" not in llm.last.body


def test_affinity_pins_a_conversation_to_its_first_decision(client, llm, rt):
    headers = {"X-Model-Affinity": "conv-pin-1"}
    chat(client, CODE_PROMPT, extra_headers=headers)
    assert llm.last.body["model"] == "code-model-a"
    calls = rt.routing_calls()
    text, got = chat(client, "Hi there!", extra_headers=headers)  # would be "no route" on its own
    assert llm.last.body["model"] == "code-model-a"
    assert got["x-plano-session"] == "pinned" and got["x-plano-route"] == CODE_ROUTE
    assert rt.routing_calls() == calls  # a pinned session does not ask the router
    chat(client, "Hi there!", extra_headers={"X-Model-Affinity": "conv-pin-2"})  # another session decides afresh
    assert llm.last.body["model"] == "gpt-4o-mini"


def test_messages_client_is_routed_too(proxy, llm, rt):
    r = httpx.post(f"{proxy.url()}/v1/messages", headers={"anthropic-version": "2023-06-01", "x-api-key": "k"},
                   json={"model": "openai/gpt-4o-mini", "max_tokens": 50,
                         "messages": [{"role": "user", "content": [{"type": "text", "text": CODE_PROMPT}]}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-plano-route"] == CODE_ROUTE
    assert llm.last.body["model"] == "code-model-a"
    assert r.json()["type"] == "message"


# -- the Routing API ---------------------------------------------------------------------------


def routing(proxy, path, body, **kw):
    return httpx.post(f"{proxy.url()}/routing/v1/{path}", json=body, **kw)


def test_routing_api_code_prompt(proxy, llm, rt):
    r = routing(proxy, "chat/completions", {"model": "openai/gpt-4o-mini", "messages": user(CODE_PROMPT)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["models"] == ["openai/code-model-a", "openai/code-model-b"]
    assert body["route"] == CODE_ROUTE
    assert body["pinned"] is False and body["switched"] is False
    assert len(body["trace_id"]) == 32 and int(body["trace_id"], 16) >= 0
    assert "session_id" not in body
    assert llm.requests == []  # no model was called


def test_routing_api_greeting_is_no_route(proxy, rt):
    body = routing(proxy, "chat/completions", {"model": "gpt-4o", "messages": user("hello!")}).json()
    assert body["models"] == ["none"] and body["route"] is None


def test_routing_api_ranks_by_selection_policy(proxy, rt):
    body = routing(proxy, "chat/completions", {"messages": user("write an email to my landlord")}).json()
    # cheapest: nano 0.5, mini 0.75, gpt-4o 12.5; the unpriced model last
    assert body["models"] == ["openai/gpt-4.1-nano", "openai/gpt-4o-mini", "openai/gpt-4o", "openai/unpriced-model"]
    rt.keywords["fast answers"] = ["quick"]
    try:
        body = routing(proxy, "chat/completions", {"messages": user("quick: capital of Peru?")}).json()
    finally:
        del rt.keywords["fast answers"]
    assert body["route"] == "fast answers"
    # fastest: gpt-4o-mini 0.2 s, gpt-4o 0.9 s; the model without latency data last
    assert body["models"] == ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/unpriced-model"]


def test_routing_api_messages_and_responses_shapes(proxy, rt):
    body = routing(proxy, "messages", {"model": "claude", "max_tokens": 10, "system": "be brief",
                                       "messages": [{"role": "user", "content": CODE_PROMPT}]}).json()
    assert body["route"] == CODE_ROUTE and body["models"][0] == "openai/code-model-a"
    body = routing(proxy, "responses", {"model": "gpt-4o", "input": CODE_PROMPT}).json()
    assert body["route"] == CODE_ROUTE
    body = routing(proxy, "responses", {"model": "gpt-4o", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hey, good morning"}]}]}).json()
    assert body["route"] is None and body["models"] == ["none"]


def test_routing_api_trace_id_from_traceparent(proxy, rt):
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = routing(proxy, "chat/completions", {"messages": user("hi")},
                headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert r.json()["trace_id"] == trace


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"messages": "nope"}'])
def test_routing_api_bad_request_is_400_invalid_request(proxy, rt, raw):
    r = httpx.post(f"{proxy.url()}/routing/v1/chat/completions", content=raw,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "InvalidRequest" and error["message"]
    assert rt.routing_calls() == 0


def test_routing_api_router_down_is_an_embedded_decision(proxy, rt):
    rt.mode = "error"
    r = routing(proxy, "chat/completions", {"messages": user(FALLBACK_CODE_PROMPT)})
    assert r.status_code == 200
    assert r.json()["route"] == CODE_ROUTE
    assert rt.routing_calls() >= 1


def test_routing_api_session_pins_and_reports_session_id(proxy, rt):
    h = {"X-Model-Affinity": "api-session-1"}
    first = routing(proxy, "chat/completions", {"messages": user(CODE_PROMPT)}, headers=h).json()
    assert first["session_id"] == "api-session-1" and first["pinned"] is False
    second = routing(proxy, "chat/completions", {"messages": user("write an essay on tea")}, headers=h).json()
    assert second["pinned"] is True and second["switched"] is False
    assert second["route"] == CODE_ROUTE and second["models"][0] == "openai/code-model-a"


def test_routing_api_inline_preferences(proxy, rt):
    prefs = [{"name": "poetry", "description": "poems", "models": ["openai/gpt-4o-mini", "openai/gpt-4.1-nano"],
              "selection_policy": {"prefer": "cheapest"}}]
    body = routing(proxy, "chat/completions", {"messages": user("a poem please"), "routing_preferences": prefs}).json()
    assert body["route"] == "poetry" and body["models"] == ["openai/gpt-4.1-nano", "openai/gpt-4o-mini"]


# -- router model unreachable ------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_router_down(mock_llm, tmp_path_factory):
    dead = free_port()  # nothing listens here
    cfg = config(mock_llm, f"http://127.0.0.1:{dead}", free_port())
    cfg["model_metrics_sources"] = [{"type": "cost", "provider": "models.dev", "url": f"http://127.0.0.1:{dead}/p"},
                                    {"type": "latency", "provider": "prometheus", "url": f"http://127.0.0.1:{dead}",
                                     "query": "x"}]
    gw = Gateway(cfg, tmp_path_factory.mktemp("prefs-down")).start()
    yield gw
    gw.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_router_model_down_embedded_decides_200(proxy_router_down, llm, stream):
    client = openai.OpenAI(base_url=f"{proxy_router_down.url()}/v1", api_key="k", max_retries=0)
    text, headers = chat(client, FALLBACK_CODE_PROMPT, stream=stream)
    assert text == f"echo: {FALLBACK_CODE_PROMPT}"
    assert llm.last.body["model"] == "code-model-a" and headers["x-plano-route"] == CODE_ROUTE
    r = routing(proxy_router_down, "chat/completions", {"messages": user(FALLBACK_CODE_PROMPT)})
    assert r.status_code == 200 and r.json()["route"] == CODE_ROUTE
    body = routing(proxy_router_down, "chat/completions", {"messages": user("Hi there!")}).json()
    assert body == {**body, "models": ["none"], "route": None}


# -- tracing -----------------------------------------------------------------------------------


def test_routing_span_names_the_route(mock_llm, router, tmp_path):
    from tests.support.otlp import OTLPReceiver
    from tests.support.telemetry_checks import gateway_env

    receiver = OTLPReceiver()
    router.reset()
    try:
        cfg = config(mock_llm, router.url, free_port())
        cfg["tracing"] = {"random_sampling": 100, "opentracing_grpc_endpoint": receiver.endpoint}
        with Gateway(cfg, tmp_path, env=gateway_env()) as gw:
            client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
            chat(client, CODE_PROMPT)
            router.mode = "error"
            chat(client, FALLBACK_CODE_PROMPT)
            spans = []
            for _ in range(100):  # the spans ship in batches
                spans = [s for s in receiver.wait_for(1) if "plano.route.name" in s.attributes]
                if len(spans) >= 2:
                    break
                time.sleep(0.1)
        by_strategy = {s.attributes["routing.strategy"]: s for s in spans}
        assert by_strategy["llm"].attributes["plano.route.name"] == CODE_ROUTE
        assert by_strategy["llm"].attributes["route.selected_model"] == "openai/code-model-a"
        assert by_strategy["llm"].attributes["routing.is_fallback"] is False
        fallback = by_strategy["embedded"]
        assert fallback.attributes["plano.route.name"] == CODE_ROUTE and fallback.attributes["routing.is_fallback"]
        assert "500" in fallback.attributes["routing.fallback_reason"]
        # the router model's own call is a child of the routing span
        child = [s for s in receiver.spans() if s.parent_id == by_strategy["llm"].span_id]
        assert child and child[0].attributes.get("llm.model") == "router-model"
    finally:
        receiver.stop()
