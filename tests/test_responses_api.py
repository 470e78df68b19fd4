"""/v1/responses end to end: the official ``openai`` SDK → the gateway process → mock upstreams.

Native Responses upstreams (openai/) pass through; OpenAI-compatible chat upstreams (groq/) and
Anthropic are translated, with plano keeping the conversation for ``previous_response_id`` in
the configured store (memory, SQLite, Postgres — the last when PLANO_TEST_POSTGRES_DSN is set).
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_anthropic import MockAnthropic
from tests.support.mock_openai_wire import MockOpenAI, Turn

ECHO_TOOL = {"type": "function", "name": "echo_tool", "description": "Echo text",
             "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}
TRANSLATED = ["groq/llama-3", "claude-sonnet-4-6"]


@pytest.fixture(scope="module")
def mocks():
    oa, an = MockOpenAI().start(), MockAnthropic().start()
    yield oa, an
    oa.stop()
    an.stop()


def _config(mocks, storage: dict | None) -> dict:
    oa, an = mocks
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-openai", "base_url": f"{oa.url}/v1", "default": True},
            {"model": "anthropic/claude-sonnet-4-6", "access_key": "sk-ant", "base_url": an.url},
            {"model": "groq/llama-3", "access_key": "sk-groq", "base_url": f"{oa.url}/groq/v1"},
        ],
    }
    if storage is not None:
        config["state_storage"] = storage
    return config


def _postgres_dsn() -> str | None:
    return os.environ.get("PLANO_TEST_POSTGRES_DSN")


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def gw(request, mocks, tmp_path_factory):
    kind = request.param
    home = tmp_path_factory.mktemp(f"home-{kind}")
    storage = None  # sqlite: the default when state_storage is omitted
    if kind == "memory":
        storage = {"type": "memory", "ttl": "1h", "max_entries": 100}
    elif kind == "postgres":
        dsn = _postgres_dsn()
        if not dsn:
            pytest.skip("PLANO_TEST_POSTGRES_DSN is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
        storage = {"type": "postgres", "connection_string": dsn}
    g = Gateway(_config(mocks, storage), tmp_path_factory.mktemp(f"resp-{kind}"), env={"PLANO_HOME": str(home)})
    g.start()
    g.kind, g.home = kind, home
    yield g
    g.stop()


@pytest.fixture
def up(mocks):
    for m in mocks:
        m.reset()
    return mocks


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0)


def _mock_for(up, model):
    return up[1] if model.startswith("claude") else up[0]


def _stream_text(events):
    kinds, text, final = [], [], None
    for event in events:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    return kinds, "".join(text), final


# ------------------------------------------------------------------ native passthrough


def test_native_responses_pass_through(client, up, gw):
    if gw.kind != "memory":
        pytest.skip("store-independent")
    oa = up[0]
    resp = client.responses.create(model="gpt-4o", input="hello native", previous_response_id="resp_upstream_kept")
    assert resp.id == "resp_mocknative1" and resp.output_text == "echo: hello native"
    seen = oa.last
    assert seen.path == "/v1/responses" and seen.headers["authorization"] == "Bearer sk-openai"
    assert seen.body == {"model": "gpt-4o", "input": "hello native", "previous_response_id": "resp_upstream_kept"}
    kinds, text, final = _stream_text(client.responses.create(model="gpt-4o", input="stream native", stream=True))
    assert text == "echo: stream native" and kinds[-1] == "response.completed" and final.id == "resp_mocknative1"


# ------------------------------------------------------------------ translated: chat and Anthropic upstreams


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_non_stream(client, up, gw, model):
    resp = client.responses.create(model=model, input="hello there", instructions="be brief", max_output_tokens=64)
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "echo: hello there"
    assert resp.usage.input_tokens == 11 and resp.usage.output_tokens == 7
    seen = _mock_for(up, model).last
    if model.startswith("claude"):
        assert seen.path == "/v1/messages" and seen.body["system"] == [{"type": "text", "text": "be brief"}]
        assert seen.body["max_tokens"] == 64
    else:
        assert seen.path == "/groq/v1/chat/completions"
        assert seen.body["messages"] == [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "hello there"}]
        assert seen.body["max_tokens"] == 64


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_stream_event_sequence(client, up, gw, model):
    kinds, text, final = _stream_text(client.responses.create(model=model, input="stream it", stream=True))
    assert text == "echo: stream it"
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert final.output_text == "echo: stream it" and final.usage.total_tokens == 18


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_stream_helper_accumulates(client, up, gw, model):
    with client.responses.stream(model=model, input="helper path") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "echo: helper path"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_tools(client, up, gw, model, stream):
    mock = _mock_for(up, model)
    mock.enqueue(Turn(tool_calls=[("echo_tool", {"text": "hi"})]))
    if stream:
        events = list(client.responses.create(model=model, input="call echo_tool", tools=[ECHO_TOOL], stream=True))
        assert any(e.type == "response.function_call_arguments.delta" for e in events)
        final = [e for e in events if e.type == "response.completed"][0].response
    else:
        final = client.responses.create(model=model, input="call echo_tool", tools=[ECHO_TOOL], tool_choice="required")
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "echo_tool" and json.loads(calls[0].arguments) == {"text": "hi"}
    sent = mock.last.body
    if model.startswith("claude"):
        assert sent["tools"][0]["name"] == "echo_tool" and sent["tools"][0]["input_schema"] == ECHO_TOOL["parameters"]
    else:
        assert sent["tools"][0] == {"type": "function", "function": {
            "name": "echo_tool", "description": "Echo text", "parameters": ECHO_TOOL["parameters"]}}
    # the tool's output goes back as the next turn's input
    follow = client.responses.create(model=model, previous_response_id=final.id, input=[
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "hi"}])
    assert follow.output_text == "echo: hi"


@pytest.mark.parametrize("model", TRANSLATED)
def test_mixed_content_input(client, up, gw, model):
    resp = client.responses.create(model=model, input=[
        {"role": "developer", "content": "You are a weather bot."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Seattle"}]}])
    assert resp.id and resp.output_text == "echo: What is the weather in Seattle"


# ------------------------------------------------------------------ state: previous_response_id


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", TRANSLATED)
def test_two_turn_conversation(client, up, gw, model, stream):
    mock = _mock_for(up, model)
    mock.enqueue(Turn(text="Nice to meet you, Alice."), Turn(text="You said: Alice, pizza."))

    def ask(**kw):
        if not stream:
            return client.responses.create(model=model, **kw)
        return _stream_text(client.responses.create(model=model, stream=True, **kw))[2]

    first = ask(input="My name is Alice and I like pizza.")
    second = ask(input="Please list all the messages you have received.", previous_response_id=first.id)
    assert second.id != first.id and "alice" in second.output_text.lower()
    sent = json.dumps(mock.last.body)
    assert "My name is Alice and I like pizza." in sent and "Nice to meet you, Alice." in sent
    assert "Please list all the messages" in sent
    stored = client.responses.retrieve(second.id)
    assert stored.id == second.id and stored.output_text == "You said: Alice, pizza."


def test_get_delete_and_unknown_ids(client, up, gw):
    resp = client.responses.create(model="groq/llama-3", input="keep me")
    items = httpx.get(f"{gw.url()}/v1/responses/{resp.id}/input_items").json()
    assert items["object"] == "list" and items["data"][0]["content"] == "keep me"
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model="groq/llama-3", input="x", previous_response_id=f"resp_{uuid.uuid4().hex}")
    assert exc.value.body["param"] == "previous_response_id" and exc.value.body["type"] == "invalid_request_error"
    r = httpx.delete(f"{gw.url()}/v1/responses/resp_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"


def test_store_false_is_honoured(client, up, gw):
    resp = client.responses.create(model="claude-sonnet-4-6", input="forget me", store=False)
    assert resp.output_text == "echo: forget me"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="claude-sonnet-4-6", input="again", previous_response_id=resp.id)


def test_state_survives_a_restart(client, up, gw):
    if gw.kind == "memory":
        pytest.skip("the memory store is per process")
    first = client.responses.create(model="groq/llama-3", input="remember the code 7781")
    gw.stop()
    gw.start()
    second = client.responses.create(model="groq/llama-3", input="what was the code?", previous_response_id=first.id)
    assert "7781" in json.dumps(up[0].last.body) and second.output_text == "echo: what was the code?"
    if gw.kind == "sqlite":
        assert (gw.home / "state" / "responses.sqlite3").exists()


# ------------------------------------------------------------------ bad input and broken upstreams


@pytest.mark.parametrize("raw, param", [
    (b"{nope", None), (b'{"model": "gpt-4o"}', "input"), (b'{"model": "gpt-4o", "input": 5}', "input"),
    (b'{"model": "gpt-4o", "input": "x", "stream": "yes"}', "stream"),
    (b'{"model": "gpt-4o", "input": "x", "previous_response_id": 3}', "previous_response_id"),
])
def test_bad_requests_get_openai_400(gw, up, raw, param):
    if gw.kind != "memory":
        pytest.skip("store-independent")
    r = httpx.post(f"{gw.url()}/v1/responses", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert up[0].requests == [] and up[1].requests == []


def test_unknown_model_and_upstream_errors(client, up, gw):
    if gw.kind != "memory":
        pytest.skip("store-independent")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")
    up[1].enqueue(Turn(status=529))
    with pytest.raises(openai.APIStatusError) as exc:
        client.responses.create(model="claude-sonnet-4-6", input="x")
    assert exc.value.status_code == 529 and "Overloaded" in exc.value.message
    assert exc.value.body["type"] != "error"  # OpenAI's envelope, not Anthropic's
    up[0].enqueue(Turn(text="a long answer that breaks", kind="broken_sse"))
    with pytest.raises(openai.APIError):
        for _ in client.responses.create(model="groq/llama-3", input="x", stream=True):
            pass
