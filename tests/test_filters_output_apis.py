"""Output filters on the model listener for Anthropic Messages and OpenAI Responses clients.

The filters are called on the client's API path with the answer in its shape, and every
error — a block, a filter failing closed, an upstream error status, a broken stream — comes
back in the client API's own envelope (JSON) or in-stream error event (SSE), so the
official SDKs raise their typed errors. Real sockets: the ``anthropic`` / ``openai`` SDKs →
plano (real process) → a mock OpenAI upstream, with a real HTTP filter service.
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.http_filter_mock import HttpFilterMock
from tests.support.mock_openai_wire import MockOpenAI, Turn


@pytest.fixture(scope="module")
def filt():
    f = HttpFilterMock().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def upstream():
    oa = MockOpenAI().start()
    yield oa
    oa.stop()


def _gateway(name, output, filt, upstream, tmp_path_factory):
    port = free_port()
    config = {
        "version": "v0.4.0",
        "filters": [
            {"id": "guard_out", "type": "http", "url": f"{filt.url}/guard"},
            {"id": "dead_closed", "type": "http", "url": f"http://127.0.0.1:{free_port()}", "on_error": "fail_closed"},
        ],
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-up", "base_url": f"{upstream.url}/v1",
                             "default": True}],
        "state_storage": {"type": "memory"},
        "listeners": [{"type": "model", "name": name, "port": port, "address": "127.0.0.1",
                       "output_filters": output}],
    }
    g = Gateway(config, tmp_path_factory.mktemp(f"filters-output-{name}"),
                env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))}).start()
    return g, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gw(filt, upstream, tmp_path_factory):
    guarded, guarded_url = _gateway("guarded", ["guard_out"], filt, upstream, tmp_path_factory)
    closed, closed_url = _gateway("closed", ["dead_closed"], filt, upstream, tmp_path_factory)
    guarded.urls = {"guarded": guarded_url, "closed": closed_url}
    yield guarded
    guarded.stop()
    closed.stop()


@pytest.fixture(autouse=True)
def clean(filt, upstream):
    filt.reset()
    upstream.reset()


def ac(gw, name):
    return anthropic.Anthropic(base_url=gw.urls[name], api_key="sk-client", max_retries=0, timeout=20)


def oc(gw, name):
    return openai.OpenAI(base_url=f"{gw.urls[name]}/v1", api_key="sk-client", max_retries=0, timeout=20)


def user(text):
    return [{"role": "user", "content": text}]


# ------------------------------------------------------------------ filters see the client's API


def test_messages_answer_filtered_on_the_messages_path(gw, filt):
    msg = ac(gw, "guarded").messages.create(model="gpt-4o", max_tokens=32, messages=user("all fine"))
    assert msg.content[0].text == "echo: all fine"
    paths = [c.path for c in filt.calls]
    assert paths and all(p == "/guard/v1/messages" for p in paths)
    assert filt.calls[-1].body["type"] == "message"  # the Anthropic-shaped answer


def test_responses_answer_filtered_on_the_responses_path(gw, filt):
    resp = oc(gw, "guarded").responses.create(model="gpt-4o", input="all fine")
    assert resp.output_text == "echo: all fine"
    assert filt.calls and filt.calls[-1].path == "/guard/v1/responses"
    assert filt.calls[-1].body["object"] == "response"


# ------------------------------------------------------------------ a block


def test_messages_block_is_anthropic_shaped(gw):
    with pytest.raises(anthropic.BadRequestError) as info:
        ac(gw, "guarded").messages.create(model="gpt-4o", max_tokens=32, messages=user("how to hack"))
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "blocked by filter 'guard_out'" in body["error"]["message"]


def test_messages_stream_block_is_an_anthropic_error_event(gw, upstream):
    # The mock streams its text in 3 equal pieces: each "hack" whole, so the per-event filter sees it.
    upstream.enqueue(Turn(text="hackhackhack"), Turn(text="hackhackhack"))
    with pytest.raises(anthropic.APIStatusError) as info:
        with ac(gw, "guarded").messages.stream(model="gpt-4o", max_tokens=32, messages=user("hack")) as s:
            for _ in s:
                pass
    assert "blocked by filter 'guard_out'" in str(info.value)
    raw = httpx.post(f"{gw.urls['guarded']}/v1/messages", timeout=20, json={
        "model": "gpt-4o", "max_tokens": 32, "stream": True, "messages": user("hack")})
    assert "event: error\n" in raw.text and '"type":"error"' in raw.text
    assert "data: {\"error\"" not in raw.text and "[DONE]" not in raw.text  # no OpenAI chat framing


def test_responses_block_is_openai_shaped(gw):
    with pytest.raises(openai.BadRequestError) as info:
        oc(gw, "guarded").responses.create(model="gpt-4o", input="how to hack")
    assert info.value.body["code"] == "filter_blocked"


def test_responses_stream_block_is_a_responses_error_event(gw, upstream):
    upstream.enqueue(Turn(text="hackhackhack"), Turn(text="hackhackhack"))
    with pytest.raises(openai.APIError) as info:
        for _ in oc(gw, "guarded").responses.create(model="gpt-4o", input="hack", stream=True):
            pass
    assert "blocked by filter 'guard_out'" in str(info.value)
    raw = httpx.post(f"{gw.urls['guarded']}/v1/responses", timeout=20, json={
        "model": "gpt-4o", "stream": True, "input": "hack"})
    assert "event: error\n" in raw.text and "[DONE]" not in raw.text


# ------------------------------------------------------------------ a filter failing closed, upstream errors


def test_messages_filter_failing_closed_is_anthropic_shaped(gw):
    with pytest.raises(anthropic.APIStatusError) as info:
        ac(gw, "closed").messages.create(model="gpt-4o", max_tokens=32, messages=user("hello"))
    assert info.value.status_code == 502
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "api_error"
    assert "dead_closed" in info.value.body["error"]["message"]


def test_messages_upstream_error_through_filters_is_anthropic_shaped(gw, upstream):
    upstream.enqueue(Turn(status=429, error={"error": {"message": "quota", "type": "rate_limit", "code": "rl"}}))
    with pytest.raises(anthropic.RateLimitError) as info:
        ac(gw, "guarded").messages.create(model="gpt-4o", max_tokens=32, messages=user("hello"))
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "rate_limit_error"
    assert "quota" in info.value.body["error"]["message"]


def test_responses_upstream_error_in_stream_through_filters(gw, upstream):
    upstream.enqueue(Turn(status=503, error={"error": {"message": "down", "type": "server_error"}}))
    r = httpx.post(f"{gw.urls['guarded']}/v1/responses", timeout=20,
                   json={"model": "gpt-4o", "stream": True, "input": "hello"})
    assert r.status_code == 503 and r.json()["error"]["message"].endswith("down")
