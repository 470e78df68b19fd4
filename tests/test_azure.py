"""Azure OpenAI deployments end to end: the ``openai`` and ``anthropic`` SDKs → the gateway → a mock
Azure OpenAI resource (deployment paths, ``api-version``, the ``api-key`` header, Azure's error
envelope and content-filter additions). Real sockets on loopback only (tests/support/mock_azure.py).
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_azure import MockAzure
from tests.support.mock_openai_wire import Turn

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                           "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def az():
    mock = MockAzure(keys={"az-key"}, deployments={"gpt-4o-deploy", "pinned-version"}).start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def gw(az, tmp_path_factory):
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "azure_openai/gpt-4o-deploy", "access_key": "az-key", "base_url": az.url, "default": True},
            {"model": "azure_openai/pinned-version", "access_key": "az-key",
             "base_url": f"{az.url}?api-version=2024-10-21"},
            {"model": "azure/missing-deploy", "access_key": "az-key", "base_url": az.url},
            {"model": "azure_openai/wrong-key", "access_key": "not-the-key", "base_url": az.url},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("azure-gw"), env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))})
    g.start()
    yield g
    g.stop()


@pytest.fixture
def up(az):
    az.reset()
    return az


@pytest.fixture
def oc(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)


@pytest.fixture
def ac(gw):
    return anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0, timeout=20)


def test_chat_json_deployment_path_version_and_key(oc, up):
    resp = oc.chat.completions.create(model="gpt-4o-deploy", messages=[{"role": "user", "content": "hello azure"}])
    assert resp.choices[0].message.content == "echo: hello azure" and resp.usage.total_tokens == 18
    assert resp.model_extra["prompt_filter_results"][0]["prompt_index"] == 0  # Azure's additions pass through
    seen = up.last
    assert seen.path == "/openai/deployments/gpt-4o-deploy/chat/completions"
    assert up.queries[-1] == {"api-version": "2025-01-01-preview"}
    assert seen.headers["api-key"] == "az-key" and "authorization" not in seen.headers
    assert seen.body == {"model": "gpt-4o-deploy", "messages": [{"role": "user", "content": "hello azure"}]}


def test_api_version_from_base_url(oc, up):
    oc.chat.completions.create(model="pinned-version", messages=[{"role": "user", "content": "x"}])
    assert up.queries[-1] == {"api-version": "2024-10-21"}
    assert up.last.path == "/openai/deployments/pinned-version/chat/completions"


def test_chat_stream_passthrough_with_azure_first_event(oc, up):
    up.enqueue(Turn(text="streamed by azure in pieces"))
    chunks = list(oc.chat.completions.create(model="gpt-4o-deploy", stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "s"}]))
    assert chunks[0].choices == [] and chunks[0].model_extra["prompt_filter_results"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed by azure in pieces"
    assert chunks[-1].usage.completion_tokens == 7


@pytest.mark.parametrize("stream", [False, True])
def test_tools(oc, up, stream):
    up.enqueue(Turn(tool_calls=[("lookup", {"word": "azure"})]))
    kwargs = dict(model="gpt-4o-deploy", messages=[{"role": "user", "content": "define azure"}], tools=TOOLS,
                  tool_choice="required")
    if stream:
        name, args, finish = "", "", None
        for chunk in oc.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or ():
                    name += tc.function.name or ""
                    args += tc.function.arguments or ""
    else:
        message = oc.chat.completions.create(**kwargs).choices[0]
        finish, call = message.finish_reason, message.message.tool_calls[0]
        name, args = call.function.name, call.function.arguments
    assert finish == "tool_calls" and name == "lookup" and json.loads(args) == {"word": "azure"}
    assert up.last.body["tools"] == TOOLS and up.last.body["tool_choice"] == "required"


def test_anthropic_sdk_to_azure(ac, up):
    msg = ac.messages.create(model="gpt-4o-deploy", max_tokens=50, system="brief",
                             messages=[{"role": "user", "content": "via messages"}])
    assert msg.content[0].text == "echo: via messages" and msg.stop_reason == "end_turn"
    assert up.last.body["messages"][0] == {"role": "system", "content": "brief"}
    assert up.last.body["max_tokens"] == 50 and up.last.headers["api-key"] == "az-key"
    up.enqueue(Turn(text="streamed to claude"))
    with ac.messages.stream(model="gpt-4o-deploy", max_tokens=50, messages=[{"role": "user", "content": "s"}]) as s:
        assert "".join(s.text_stream) == "streamed to claude"


def test_azure_errors_in_client_envelopes(oc, ac, up):
    with pytest.raises(openai.NotFoundError) as exc:
        oc.chat.completions.create(model="missing-deploy", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "DeploymentNotFound"
    with pytest.raises(openai.AuthenticationError) as exc:
        oc.chat.completions.create(model="wrong-key", messages=[{"role": "user", "content": "x"}])
    assert "Access denied" in exc.value.body["message"]
    up.enqueue(Turn(status=429))
    with pytest.raises(anthropic.RateLimitError) as exc:
        ac.messages.create(model="gpt-4o-deploy", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "error" and "call rate limit" in exc.value.body["error"]["message"]


@pytest.mark.parametrize("kind", ["broken_sse", "bad_event"])
def test_broken_azure_stream_ends_cleanly(oc, ac, up, kind):
    up.enqueue(Turn(text="a fairly long answer that is cut", kind=kind))
    # Chat to Azure is passthrough: a cut stream ends with plano's error event; an event that is not JSON
    # reaches the SDK as the upstream sent it (the fast path does not parse events), and the SDK raises.
    with pytest.raises(openai.APIError if kind == "broken_sse" else ValueError):
        for _ in oc.chat.completions.create(model="gpt-4o-deploy", stream=True,
                                            messages=[{"role": "user", "content": "x"}]):
            pass
    up.enqueue(Turn(text="a fairly long answer that is cut", kind=kind))
    with pytest.raises(anthropic.APIStatusError):
        with ac.messages.stream(model="gpt-4o-deploy", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            for _ in s:
                pass


def test_garbage_answer_is_a_502(gw, up):
    up.enqueue(Turn(kind="garbage"))
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "gpt-4o-deploy",
                                                            "messages": [{"role": "user", "content": "x"}]}, timeout=20)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid_response"
