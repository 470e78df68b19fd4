"""HTTP filter chains end to end: openai SDK / httpx -> plano (real process) -> a real HTTP
filter service and mock agents / a mock provider, all on loopback.

Input filters on the model listener and on agents: rewrites reach the agent or the LLM,
4xx blocks with the filter's message before anything is called, and every failure mode
(hang, garbage, wrong shape, 5xx, nobody listening) follows the filter's policy.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from gateway.filters import FilterRun, shapes
from gateway.filters.chain import ChainEntry
from gateway.filters.outcome import FilterBlocked, FilterFailed
from gateway.filters.spec import FilterSpec
from gateway.listeners.errors import GatewayError
from tests.support.agent_mocks import assert_openai_error, chat_posts
from tests.support.gateway import Gateway, free_port
from tests.support.http_filter_mock import HttpFilterMock
from tests.support.mock_llm import MockLLM

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: agent listeners: name -> input_filters of their one agent
AGENT_CHAINS = {
    "rewrite": ["guard", "rewrite"],
    "order": ["tag_a", "tag_b"],
    "hang_closed": ["hang_closed"],
    "hang_open": ["hang_open"],
    "garbage": ["garbage"],
    "garbage_open": ["garbage_open"],
    "wrongshape": ["wrongshape"],
    "error500": ["error500"],
    "error500_open": ["error500_open"],
    "unreachable": ["unreachable"],
    "unreachable_open": ["unreachable_open"],
}


@pytest.fixture(scope="module")
def filt():
    f = HttpFilterMock().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def agent():
    a = MockLLM().start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def gw(filt, agent, mock_llm, tmp_path_factory):
    dead = free_port()
    ports = {name: free_port() for name in [*AGENT_CHAINS, "model"]}

    def http(fid, path, **extra):
        return {"id": fid, "type": "http", "url": f"{filt.url}/{path}", **extra}

    config = {
        "version": "v0.4.0",
        "agents": [{"id": "agent", "url": agent.url}],
        "filters": [
            http("rewrite", "rewrite"),
            http("guard", "guard"),
            http("tag_a", "tag/A"),
            http("tag_b", "tag/B"),
            http("hang_closed", "hang", timeout="1s"),
            http("hang_open", "hang", timeout="1s", on_error="fail_open"),
            http("garbage", "garbage"),
            http("garbage_open", "garbage", on_error="fail_open"),
            http("wrongshape", "wrongshape"),
            http("error500", "error500"),
            http("error500_open", "error500", on_error="fail_open"),
            {"id": "unreachable", "type": "http", "url": f"http://127.0.0.1:{dead}/x"},
            {"id": "unreachable_open", "type": "http", "url": f"http://127.0.0.1:{dead}/x", "on_error": "fail_open"},
        ],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-provider-secret", "base_url": f"{mock_llm.url}/v1",
             "default": True},
            {"model": "openai/gpt-4o-mini", "access_key": "sk-provider-secret", "base_url": f"{mock_llm.url}/v1"},
        ],
        "listeners": [
            *({"type": "agent", "name": name, "port": ports[name], "address": "127.0.0.1",
               "agents": [{"id": "agent", "description": "answers", "input_filters": chain}]}
              for name, chain in AGENT_CHAINS.items()),
            {"type": "model", "name": "llm", "port": ports["model"], "address": "127.0.0.1",
             "input_filters": ["guard", "rewrite"]},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("filters-http")).start()
    g.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(filt, agent, mock_llm):
    filt.reset()
    agent.reset()
    mock_llm.reset()


def sdk(gw, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.urls[name]}/v1", api_key="sk-client-key", max_retries=0)


def post(gw, name: str, text: str, **extra) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{gw.urls[name]}/v1/chat/completions", json=body, timeout=20)


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# -- model listener ---------------------------------------------------------------------


def test_model_listener_rewrite_reaches_the_llm_and_may_change_the_model(gw, filt, mock_llm):
    client = sdk(gw, "model")
    reply = client.chat.completions.create(model="cheap", messages=user("What colour is the sky?"),
                                           extra_headers={"x-request-id": "req-filter-1", "traceparent": TRACEPARENT})
    assert reply.choices[0].message.content == "echo: What color is the sky?"
    seen = mock_llm.last.body
    assert seen["model"] == "gpt-4o-mini"  # "cheap" is no configured model: only the filter's rewrite resolves
    assert seen["messages"][1]["content"] == "What color is the sky?"
    assert [c.behaviour for c in filt.calls] == ["guard", "rewrite"]
    call = filt.calls_to("rewrite")[0]
    assert call.path == "/rewrite/v1/chat/completions"
    assert call.body["model"] == "cheap" and call.body["messages"][1]["content"] == "What colour is the sky?"
    assert call.headers["x-request-id"] == "req-filter-1" and call.headers["traceparent"] == TRACEPARENT
    assert call.headers["content-type"].startswith("application/json") and call.headers["accept"] == "application/json"
    assert "authorization" not in call.headers and "sk-client-key" not in json.dumps(call.headers)
    assert "sk-provider-secret" not in json.dumps(call.headers)


@pytest.mark.parametrize("stream", [False, True])
def test_model_listener_block_never_calls_the_llm(gw, filt, mock_llm, stream):
    client = sdk(gw, "model")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=user("how do I hack my neighbour's wifi"),
                                       stream=stream, extra_headers={"x-request-id": f"req-block-{stream}"})
    err = caught.value
    assert err.status_code == 400
    assert err.code == "filter_blocked"
    assert "Request blocked by content safety filter (matched: 'hack')." in err.message
    assert "'guard'" in err.message
    assert mock_llm.requests == []
    assert [c.behaviour for c in filt.calls] == ["guard"]  # the chain stops at the block
    log = gw.log()
    assert f"request_id=req-block-{stream} filter=guard stage=input blocked status=400" in log
    assert "neighbour" not in log  # decisions are logged, payloads never


# -- agent listener ---------------------------------------------------------------------


def test_agent_sees_the_rewrite(gw, agent, filt):
    reply = sdk(gw, "rewrite").chat.completions.create(
        model="gpt-4o", messages=user("my favourite colour is blue"), extra_headers={"x-request-id": "req-agent-1"})
    assert reply.choices[0].message.content == "echo: my favourite color is blue"
    sent = chat_posts(agent)[0].body
    assert sent["messages"][-1]["content"] == "my favourite color is blue"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    call = filt.calls_to("rewrite")[0]
    assert set(call.body) == {"model", "messages"}  # agents' filters get {model, messages}
    assert call.headers["x-request-id"] == "req-agent-1"
    assert call.headers["x-arch-agent-listener-name"] == "rewrite"


def test_agent_block_with_filter_status_and_message(gw, agent):
    resp = post(gw, "rewrite", "please hack the mainframe", stream=True)
    err = assert_openai_error(resp, 400, "filter_blocked")
    assert "matched: 'hack'" in err["message"] and "'guard'" in err["message"]
    assert chat_posts(agent) == []


def test_chain_order_each_filter_sees_the_previous_output(gw, agent, filt):
    reply = sdk(gw, "order").chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert reply.choices[0].message.content == "echo: hi [A] [B]"
    a, b = filt.calls_to("tag")
    assert a.path.startswith("/tag/A/") and b.path.startswith("/tag/B/")
    assert a.body["messages"][-1]["content"] == "hi"
    assert b.body["messages"][-1]["content"] == "hi [A]"


@pytest.mark.parametrize("listener, status, code", [
    ("hang_closed", 504, "filter_timeout"),
    ("garbage", 502, "filter_invalid_response"),
    ("wrongshape", 502, "filter_invalid_response"),
    ("error500", 502, "filter_error"),
    ("unreachable", 502, "filter_error"),
])
def test_fail_closed_policies(gw, agent, listener, status, code):
    started = time.monotonic()
    resp = post(gw, listener, "hello there")
    took = time.monotonic() - started
    err = assert_openai_error(resp, status, code)
    assert f"Filter '{listener}'" in err["message"]
    assert chat_posts(agent) == []  # fail closed: the agent is never called
    if listener == "hang_closed":
        assert 0.9 <= took < 4, took  # the filter's 1s timeout, not the listener's 30s
    if listener == "wrongshape":
        assert "'messages'" in err["message"]


@pytest.mark.parametrize("listener", ["hang_open", "garbage_open", "error500_open", "unreachable_open"])
def test_fail_open_policies_pass_the_request_unchanged(gw, agent, listener):
    started = time.monotonic()
    resp = post(gw, listener, "hello there")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "echo: hello there"
    assert chat_posts(agent)[0].body["messages"][-1]["content"] == "hello there"
    if listener == "hang_open":
        assert 0.9 <= time.monotonic() - started < 4


# -- policy outcomes, in process ------------------------------------------------------------


class _Fake:
    """A filter client answering from a script: a payload, or an exception to raise."""

    def __init__(self, answer) -> None:
        self.answer = answer

    async def call(self, payload, path, headers, limit=None):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(payload), 200


@pytest.mark.parametrize("answer, stage, on_error, outcome, status", [
    (lambda p: p, "input", None, "passed", None),
    (lambda p: {**p, "messages": [{"role": "user", "content": "x"}]}, "input", None, "modified", None),
    (FilterBlocked(403, "no"), "input", None, "blocked", 403),
    (FilterFailed("timeout", "did not answer within 1s"), "input", None, "error_fail_closed", 504),
    (FilterFailed("status", "answered HTTP 500", 500), "output", None, "error_fail_open", None),
    (lambda p: {"messages": []}, "input", "fail_open", "error_fail_open", None),
    (lambda p: {"messages": []}, "input", None, "error_fail_closed", 502),
    (RuntimeError("bug"), "output", "fail_closed", "error_fail_closed", 502),
])
def test_policy_outcomes_are_recorded(answer, stage, on_error, outcome, status):
    spec = FilterSpec("f1", "http", "http://x", "f1", 1.0, on_error, "event", 256)
    entry = ChainEntry(spec, _Fake(answer), stage)
    run = FilterRun("rid-1", {})
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    check = shapes.chat_request if stage == "input" else None
    if status is None:
        out = asyncio.run(entry.apply(payload, "/v1/chat/completions", run, check))
        assert (out is payload) == (outcome != "modified")
    else:
        with pytest.raises(GatewayError) as caught:
            asyncio.run(entry.apply(payload, "/v1/chat/completions", run, check))
        assert caught.value.status == status and "'f1'" in caught.value.message
    (record,) = run.outcomes
    assert (record.filter_id, record.stage, record.outcome) == ("f1", stage, outcome)
    assert record.duration_ms >= 0
