"""A model listener without ``auth`` runs no edge middleware (its hot path pays for none), so the
request-shape limits and the secret scrub that the edge gives other listeners must hold inside it:

- a JSON body nested deeper than ``max_json_depth`` is a 400 ``json_too_deep`` in the client API's
  own envelope (OpenAI for chat, Anthropic for ``/v1/messages``), whether the body came in one
  read or chunked, on every POST endpoint that reads JSON (chat, messages, count_tokens, the
  Routing API); brackets inside strings do not count, and nothing reaches the provider;
- an upstream error that echoes the provider key plano sent it reaches the client scrubbed.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM, Reply
from tests.support.telemetry_checks import gateway_env

PROVIDER_KEY = "sk-limits-provider-7f3a9c1e55"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    llm = MockLLM().start()
    port = free_port()
    config = {
        "version": "v0.4.0",
        "model_providers": [
            {"model": "openai/mock-model", "access_key": PROVIDER_KEY, "base_url": f"{llm.url}/v1", "default": True},
        ],
        "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "max_json_depth": 8}],
    }
    gw = Gateway(config, tmp, env=gateway_env(PLANO_ADMIN_PORT=""))
    try:
        gw.start()
        yield {"url": f"http://127.0.0.1:{port}", "llm": llm}
    finally:
        gw.stop()
        llm.stop()


def _deep(levels: int) -> str:
    return '{"model": "mock-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "x": ' \
        + "[" * levels + "]" * levels + "}"


def test_too_deep_chat_body_is_an_openai_400_and_never_sent(world):
    before = len(world["llm"].requests)
    r = httpx.post(world["url"] + "/v1/chat/completions", content=_deep(20), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "json_too_deep"
    assert "8 levels" in r.json()["error"]["message"]
    assert len(world["llm"].requests) == before


def test_too_deep_body_on_the_routing_api_is_its_400(world):
    r = httpx.post(world["url"] + "/routing/v1/chat/completions", content=_deep(20),
                   headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequest"  # the Routing API's own envelope (Plano's)
    assert "8 levels" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_too_deep_messages_body_is_an_anthropic_400(world, path):
    r = httpx.post(world["url"] + path, content=_deep(20),
                   headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "deeper" in body["error"]["message"]


def test_a_chunked_too_deep_body_is_refused_too(world):
    data = _deep(20).encode()

    def pieces():
        for i in range(0, len(data), 7):
            yield data[i:i + 7]

    r = httpx.post(world["url"] + "/v1/chat/completions", content=pieces(), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "json_too_deep"


def test_depth_at_the_limit_and_brackets_in_strings_pass(world):
    world["llm"].enqueue(Reply("echo"), Reply("echo"))
    at_limit = _deep(6)  # the object plus 6 arrays: 7 levels, under the limit of 8
    r = httpx.post(world["url"] + "/v1/chat/completions", content=at_limit, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    in_string = '{"model": "mock-model", "messages": [{"role": "user", "content": "' + "[" * 50 + '"}]}'
    r = httpx.post(world["url"] + "/v1/chat/completions", content=in_string, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_an_upstream_error_echoing_the_provider_key_is_scrubbed(world):
    world["llm"].enqueue(Reply("error", status=401, body={"error": {
        "message": f"Incorrect API key provided: {PROVIDER_KEY}.", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    r = httpx.post(world["url"] + "/v1/chat/completions",
                   json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401
    assert PROVIDER_KEY not in r.text and "7f3a9c1e55" not in r.text
    assert "[REDACTED]" in r.json()["error"]["message"]
    assert int(r.headers["content-length"]) == len(r.content)
