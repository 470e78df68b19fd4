"""Routing sessions (Plano §4.11): route_on_user_only replays, the switch budget and its header,
tenant-scoped keys, the Redis session cache (shared, surviving a restart) and failing open."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_router import MockRouter, models_dev
from tests.support.shared_state import clear_redis_prefix, redis_url

CODE_PROMPT = "Write a Python function that reverses a linked list"
SYSTEM = "You are a careful coding assistant."


@pytest.fixture(scope="module")
def router():
    mock = MockRouter({"code": ["python function", "code"], "writing": ["essay"], "translation": ["translate"],
                       "summaries": ["summarize"]}).start()
    # USD per 1M tokens: (input, output, cached read)
    mock.prices = models_dev({"openai/code-model-a": (3.0, 15.0, 0.3), "openai/gpt-4o": (2.5, 10.0, 1.25),
                              "openai/gpt-4.1-mini": (0.4, 1.6, 0.1), "openai/gpt-4.1-nano": (0.1, 0.4, 0.025)})
    yield mock
    mock.stop()


def config(mock_llm, router_url: str, *, routing: dict) -> dict:
    base = f"{mock_llm.url}/v1"
    models = ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1-mini", "openai/gpt-4.1-nano",
              "openai/code-model-a"]
    return {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}],
        "model_providers": [{"model": m, "access_key": "sk-test", "base_url": base} for m in models]
        + [{"model": "openai/router-model", "access_key": "sk-router", "base_url": f"{router_url}/v1"}],
        "routing_preferences": [
            {"name": "code", "description": "writing new code", "models": ["openai/code-model-a"]},
            {"name": "writing", "description": "essays", "models": ["openai/gpt-4o"]},
            {"name": "translation", "description": "translating text", "models": ["openai/gpt-4.1-mini"]},
            {"name": "summaries", "description": "summaries", "models": ["openai/gpt-4.1-nano"]},
        ],
        "model_metrics_sources": [{"type": "cost", "provider": "models.dev", "url": f"{router_url}/pricing.json"}],
        "overrides": {"llm_routing_model": "openai/router-model", "agent_orchestration_timeout": "2s"},
        "routing": routing,
    }


@pytest.fixture(scope="module")
def gw(mock_llm, router, tmp_path_factory):
    cfg = config(mock_llm, router.url, routing={
        "route_on_user_only": True, "routing_budget": {"max_switch_spend_pct": 0},
        "session_cache": {"type": "memory", "tenant_header": "x-tenant"}})
    gateway = Gateway(cfg, tmp_path_factory.mktemp("sessions")).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def rt(router):
    router.reset()
    yield router
    router.reset()


def decide(gw, text, session=None, **headers):
    if session:
        headers["X-Model-Affinity"] = session
    r = httpx.post(f"{gw.url()}/routing/v1/chat/completions", json={"model": "openai/gpt-4o-mini",
                                                                    "messages": [{"role": "user", "content": text}]},
                   headers={k.replace("_", "-"): v for k, v in headers.items()})
    assert r.status_code == 200, r.text
    return r.json()


# -- the switch budget -------------------------------------------------------------------------


def test_budget_retains_the_anchor_when_a_switch_costs_more_than_allowed(gw, rt):
    first = decide(gw, CODE_PROMPT, "budget-1")
    assert first["models"] == ["openai/code-model-a"] and first["pinned"] is False
    # writing -> gpt-4o: 2.5 $/M uncached vs the anchor's 0.3 cached read: a cost, and the cap is 0 %
    second = decide(gw, "an essay on rivers please", "budget-1")
    assert second["pinned"] is True and second["switched"] is False
    assert second["models"][0] == "openai/code-model-a" and second["route"] == "code"
    assert rt.routing_calls() == 2  # the router was asked; the budget kept the session where it was


def test_budget_allows_a_free_switch(gw, rt):
    decide(gw, CODE_PROMPT, "budget-2")
    # summaries -> gpt-4.1-nano: 0.1 $/M uncached is below the anchor's 0.3 cached: free
    moved = decide(gw, "summarize the meeting notes", "budget-2")
    assert moved["switched"] is True and moved["pinned"] is False
    assert moved["models"] == ["openai/gpt-4.1-nano"] and moved["route"] == "summaries"
    again = decide(gw, "summarize it shorter", "budget-2")
    assert again["switched"] is False and again["models"] == ["openai/gpt-4.1-nano"]


def test_spend_header_overrides_the_configured_cap(gw, rt):
    # translation -> gpt-4.1-mini: 0.4 uncached vs 0.3 cached costs 0.1/M per token: over a 0 % cap ...
    decide(gw, CODE_PROMPT, "budget-3")
    kept = decide(gw, "translate this paragraph to French", "budget-3")
    assert kept["pinned"] is True and kept["models"][0] == "openai/code-model-a"
    # ... but within 100 % of the never-switch baseline (this turn's cached read at 0.3/M)
    decide(gw, CODE_PROMPT, "budget-4", x_plano_max_switch_spend_pct="100")
    moved = decide(gw, "translate this paragraph to French", "budget-4", x_plano_max_switch_spend_pct="100")
    assert moved["switched"] is True and moved["models"] == ["openai/gpt-4.1-mini"]


def test_sessions_are_scoped_by_tenant(gw, rt):
    decide(gw, CODE_PROMPT, "shared-id", x_tenant="acme")
    other = decide(gw, "an essay on tea", "shared-id", x_tenant="globex")
    assert other["pinned"] is False and other["route"] == "writing"  # a new session for this tenant
    same = decide(gw, "an essay on tea", "shared-id", x_tenant="acme")
    assert same["pinned"] is True and same["route"] == "code"


# -- route_on_user_only ------------------------------------------------------------------------


def test_non_user_turns_replay_the_bound_model(gw, mock_llm, rt):
    mock_llm.reset()
    client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
    turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": CODE_PROMPT}]
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=turns)
    assert mock_llm.last.body["model"] == "code-model-a"
    calls = rt.routing_calls()
    turns += [{"role": "assistant", "content": None, "tool_calls": [
                  {"id": "call_1", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "an essay of test output"}]
    raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=turns)
    assert mock_llm.last.body["model"] == "code-model-a"
    assert raw.headers["x-plano-session"] == "pinned"
    turns += [{"role": "assistant", "content": "tests pass"},
              {"role": "user", "content": "<system-reminder>the todo list is empty</system-reminder>"}]
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=turns)
    assert mock_llm.last.body["model"] == "code-model-a"
    assert rt.routing_calls() == calls  # neither the tool result nor the envelope asked the router
    turns += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "now summarize what we did"}]
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=turns)
    assert rt.routing_calls() == calls + 1  # a fresh user turn is routed (and the switch to nano is free)
    assert mock_llm.last.body["model"] == "gpt-4.1-nano"


def test_non_user_turn_of_an_unknown_session_is_routed(gw, mock_llm, rt):
    mock_llm.reset()
    r = httpx.post(f"{gw.url()}/routing/v1/chat/completions", json={"messages": [
        {"role": "system", "content": "a system prompt never seen " + uuid.uuid4().hex},
        {"role": "user", "content": "write an essay"}, {"role": "assistant", "content": "which topic?"},
        {"role": "tool", "tool_call_id": "x", "content": "result"}]})
    assert r.status_code == 200 and r.json()["pinned"] is False
    assert rt.routing_calls() == 1


# -- the Redis session cache -------------------------------------------------------------------


def test_redis_sessions_survive_a_restart(mock_llm, router, tmp_path):
    url = redis_url()
    session = "redis-pin-" + uuid.uuid4().hex[:8]
    cfg = config(mock_llm, router.url, routing={"session_cache": {"type": "redis", "url": url}})
    try:
        with Gateway(cfg, tmp_path) as first:
            assert decide(first, CODE_PROMPT, session)["route"] == "code"
        import redis

        client = redis.Redis.from_url(url)
        assert client.exists(f"plano:affinity:{session}") == 1
        assert 0 < client.ttl(f"plano:affinity:{session}") <= 600
        client.close()
        with Gateway(cfg, tmp_path) as second:  # a new process: the binding came from Redis
            again = decide(second, "an essay on tea", session)
            assert again["pinned"] is True and again["models"][0] == "openai/code-model-a"
    finally:
        clear_redis_prefix(url, f"plano:affinity:{session}")


def test_unreachable_session_cache_fails_open(mock_llm, router, tmp_path):
    dead = free_port()
    cfg = config(mock_llm, router.url, routing={"session_cache": {"type": "redis", "url": f"redis://127.0.0.1:{dead}/0"}})
    with Gateway(cfg, tmp_path) as gw:
        first = decide(gw, CODE_PROMPT, "fail-open")
        assert first["route"] == "code"
        second = decide(gw, "an essay on tea", "fail-open")  # nothing remembered, nothing failed
        assert second["route"] == "writing" and second["pinned"] is False
        client = openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="k", max_retries=0)
        out = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                             extra_headers={"X-Model-Affinity": "fail-open"})
        assert out.choices[0].message.content == "echo: hi"
