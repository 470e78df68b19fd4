"""/v1/messages and /v1/messages/count_tokens end to end, and chat completions to an Anthropic upstream.

Real sockets: the official ``anthropic`` and ``openai`` SDKs → the gateway process → mock
upstreams that speak OpenAI's and Anthropic's wire formats (tests/support).
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_anthropic import MockAnthropic
from tests.support.mock_openai_wire import MockOpenAI, Turn

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def mocks():
    oa, an = MockOpenAI().start(), MockAnthropic().start()
    yield oa, an
    oa.stop()
    an.stop()


@pytest.fixture(scope="module")
def gw(mocks, tmp_path_factory):
    oa, an = mocks
    dead = free_port()
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "openai/gpt-4o", "access_key": "sk-openai", "base_url": f"{oa.url}/v1", "default": True},
            {"model": "anthropic/claude-sonnet-4-6", "access_key": "sk-ant-provider", "base_url": an.url},
            {"model": "anthropic/claude-down", "access_key": "sk-ant", "base_url": f"http://127.0.0.1:{dead}",
             "fallback_models": ["openai/gpt-4o"]},
            {"model": "groq/llama-3", "access_key": "sk-groq", "base_url": f"{oa.url}/groq/v1"},
        ],
        "model_aliases": {"arch.summarize.v1": {"target": "openai/gpt-4o"}},
    }
    g = Gateway(config, tmp_path_factory.mktemp("anthropic-gw"), env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))})
    g.start()
    yield g
    g.stop()


@pytest.fixture
def up(mocks):
    oa, an = mocks
    oa.reset()
    an.reset()
    return oa, an


@pytest.fixture
def ac(gw):
    return anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0)


@pytest.fixture
def oc(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0)


# ------------------------------------------------------------------ Anthropic client → OpenAI upstream


def test_messages_create_translated_to_openai(ac, up):
    oa, an = up
    msg = ac.messages.create(model="gpt-4o", max_tokens=100, system=[{"type": "text", "text": "be brief"}],
                             messages=[{"role": "user", "content": "hello there"}], stop_sequences=["END"])
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 11 and msg.usage.output_tokens == 7
    seen = oa.last
    assert seen.path == "/v1/chat/completions" and an.requests == []
    assert seen.headers["authorization"] == "Bearer sk-openai"
    assert not any(k.startswith("anthropic-") for k in seen.headers) and "x-api-key" not in seen.headers
    assert seen.body["messages"] == [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "hello there"}]
    assert seen.body["model"] == "gpt-4o" and seen.body["max_completion_tokens"] == 100
    assert seen.body["stop"] == ["END"]


def test_alias_via_anthropic_sdk_exact_text(ac, up):
    up[0].enqueue(Turn(text="Hello from alias arch.summarize.v1 via Anthropic!"))
    msg = ac.messages.create(model="arch.summarize.v1", max_tokens=500,
                             messages=[{"role": "user", "content": "respond with exactly: ..."}])
    assert msg.content[0].text == "Hello from alias arch.summarize.v1 via Anthropic!"


def test_messages_stream_translated_to_openai(ac, up):
    oa, _ = up
    up[0].enqueue(Turn(text="Hello from streaming alias via Anthropic!"))
    kinds = []
    with ac.messages.stream(model="arch.summarize.v1", max_tokens=50,
                            messages=[{"role": "user", "content": "stream please"}]) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    assert text == "Hello from streaming alias via Anthropic!"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 7
    assert oa.last.body["stream"] is True and oa.last.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_tools_translated_to_openai(ac, up, stream):
    oa, _ = up
    oa.enqueue(Turn(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]))
    kwargs = dict(model="gpt-4o", max_tokens=200, tools=[WEATHER], tool_choice={"type": "any"},
                  messages=[{"role": "user", "content": "weather in Paris and Rome?"}])
    if stream:
        with ac.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = ac.messages.create(**kwargs)
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    assert msg.stop_reason == "tool_use" and all(u.id for u in uses)
    body = oa.last.body
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                               "parameters": WEATHER["input_schema"]}}]
    assert body["tool_choice"] == "required"


def test_thinking_from_openai_reasoning_content(ac, up):
    up[0].enqueue(Turn(text="42", reasoning="adding numbers"))
    with ac.messages.stream(model="gpt-4o", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                            messages=[{"role": "user", "content": "6*7?"}]) as s:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in s]
        final = s.get_final_message()
    assert ("content_block_delta", "thinking_delta") in kinds and ("content_block_delta", "text_delta") in kinds
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "adding numbers" and final.content[1].text == "42"


# ------------------------------------------------------------------ Anthropic client → Anthropic upstream (native)


def test_messages_native_passthrough_injects_key_and_version(gw, up):
    _, an = up
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi claude"}],
            "metadata": {"user_id": "u1"}, "vendor_extra": {"x": 1}}
    r = httpx.post(f"{gw.url()}/v1/messages?beta=true", json=body,
                   headers={"x-api-key": "sk-client", "anthropic-version": "2023-06-01",
                            "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [{"type": "text", "text": "echo: hi claude"}]
    assert r.json()["id"] == "msg_01mock" and r.headers["request-id"] == "req_mock"
    seen = an.last
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == "sk-ant-provider"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "authorization" not in seen.headers
    assert seen.body == body  # untouched, model included (already the provider's id)


def test_anthropic_sdk_thinking_stream_native(ac, up):
    with ac.messages.stream(model="claude-sonnet-4-6", max_tokens=2048,
                            thinking={"type": "enabled", "budget_tokens": 1024},
                            messages=[{"role": "user", "content": "think"}]) as s:
        starts = [e.content_block.type for e in s if e.type == "content_block_start"]
        final = s.get_final_message()
    assert starts == ["thinking", "text"]
    assert final.content[0].type == "thinking" and final.content[0].signature == "sig-abc123"
    assert final.content[1].text == "echo: think"


def test_count_tokens_native_and_estimated(ac, up):
    _, an = up
    messages = [{"role": "user", "content": "count me " * 50}]
    native = ac.messages.count_tokens(model="claude-sonnet-4-6", messages=messages)
    assert native.input_tokens == 1000 + len(json.dumps(messages)) // 10
    assert an.last.path == "/v1/messages/count_tokens" and an.last.headers["x-api-key"] == "sk-ant-provider"
    estimated = ac.messages.count_tokens(model="gpt-4o", messages=messages, system="sys",
                                         tools=[WEATHER])
    assert 100 < estimated.input_tokens < 400  # 450 characters of text plus a tool definition
    assert len(an.requests) == 1 and up[0].requests == []


# ------------------------------------------------------------------ a Claude Code-shaped session


CC_SYSTEM = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
             {"type": "text", "text": "Use tools to answer.", "cache_control": {"type": "ephemeral"}}]
CC_TOOLS = [{"name": "Bash", "description": "Run a command",
             "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
            {"name": "Read", "description": "Read a file",
             "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o"])
def test_claude_code_shaped_session(ac, up, model):
    oa, an = up
    native = model.startswith("claude")
    mock = an if native else oa
    mock.enqueue(Turn(tool_calls=[("Bash", {"command": "ls"})], reasoning="I should list files"),
                 Turn(text="There are 3 files."))
    first_user = {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>context</system-reminder>"},
        {"type": "text", "text": "what files are here?"}]}
    kwargs = dict(model=model, max_tokens=4096, system=CC_SYSTEM, tools=CC_TOOLS, metadata={"user_id": "session-1"})
    if native:
        kwargs["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    assert ac.messages.count_tokens(model=model, system=CC_SYSTEM, tools=CC_TOOLS,
                                    messages=[first_user]).input_tokens > 0
    with ac.messages.stream(messages=[first_user], **kwargs) as s:
        turn1 = s.get_final_message()
    assert turn1.stop_reason == "tool_use"
    assert [b.type for b in turn1.content] == ["thinking", "tool_use"]
    use = turn1.content[1]
    assert use.name == "Bash" and use.input == {"command": "ls"}
    history = [first_user, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in turn1.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": "a.py\nb.py\nc.py"}]}]
    with ac.messages.stream(messages=history, **kwargs) as s:
        text = "".join(s.text_stream)
    assert text == "There are 3 files."
    seen = mock.last.body
    if native:
        assert seen["messages"][1]["content"][0] == {"type": "thinking", "thinking": "I should list files",
                                                     "signature": "sig-abc123"}
        assert seen["system"] == CC_SYSTEM and seen["tools"] == CC_TOOLS
    else:
        assert seen["messages"][0]["role"] == "system" and "Claude Code" in json.dumps(seen["messages"][0])
        assistant, tool = seen["messages"][2], seen["messages"][3]
        assert assistant["tool_calls"][0]["id"] == use.id
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"command": "ls"}
        assert tool == {"role": "tool", "tool_call_id": use.id, "content": "a.py\nb.py\nc.py"}
        assert seen["user"] == "session-1" and [t["function"]["name"] for t in seen["tools"]] == ["Bash", "Read"]


# ------------------------------------------------------------------ OpenAI chat client → Anthropic upstream


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_translated_to_anthropic(oc, up, stream):
    _, an = up
    messages = [{"role": "system", "content": "sys prompt"}, {"role": "user", "content": "hi from chat"}]
    if stream:
        chunks = list(oc.chat.completions.create(model="claude-sonnet-4-6", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 7
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    else:
        resp = oc.chat.completions.create(model="claude-sonnet-4-6", messages=messages)
        text = resp.choices[0].message.content
        assert resp.choices[0].finish_reason == "stop" and resp.usage.total_tokens == 18
    assert text == "echo: hi from chat"
    seen = an.last
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == "sk-ant-provider"
    assert seen.body["system"] == [{"type": "text", "text": "sys prompt"}]
    assert seen.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi from chat"}]}]
    assert seen.body["max_tokens"] == 4096 and seen.body["model"] == "claude-sonnet-4-6"


def test_chat_tools_and_thinking_blocks_round_trip_to_anthropic(oc, up):
    _, an = up
    an.enqueue(Turn(tool_calls=[("get_weather", {"city": "Seattle"})], reasoning="need weather"),
               Turn(text="It is 12C."))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    messages = [{"role": "user", "content": "What's the weather in Seattle?"}]
    resp = oc.chat.completions.create(model="claude-sonnet-4-6", messages=messages, tools=tools,
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                      parallel_tool_calls=False)
    message = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Seattle"}
    assert an.last.body["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    extra = message.model_extra
    assert extra["thinking_blocks"][0]["signature"] == "sig-abc123"
    messages += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()],
                  "thinking_blocks": extra["thinking_blocks"]},
                 {"role": "tool", "tool_call_id": call.id, "content": "{\"temp\": 12}"}]
    final = oc.chat.completions.create(model="claude-sonnet-4-6", messages=messages, tools=tools)
    assert final.choices[0].message.content == "It is 12C."
    sent = an.last.body["messages"]
    assert sent[1]["content"][0] == {"type": "thinking", "thinking": "need weather", "signature": "sig-abc123"}
    assert sent[1]["content"][1] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                     "input": {"city": "Seattle"}}
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                    "content": "{\"temp\": 12}"}]}


def test_failover_across_apis(oc, ac, gw, up):
    oa, _ = up
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "anthropic/claude-down",
                                                            "messages": [{"role": "user", "content": "fail over"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-plano-model"] == "openai/gpt-4o"
    assert r.json()["choices"][0]["message"]["content"] == "echo: fail over"
    assert oa.last.body["model"] == "gpt-4o" and oa.last.body["messages"][0]["content"] == "fail over"
    msg = ac.messages.create(model="anthropic/claude-down", max_tokens=10,
                             messages=[{"role": "user", "content": "to openai"}])
    assert msg.content[0].text == "echo: to openai"
    assert oa.last.path == "/v1/chat/completions"


# ------------------------------------------------------------------ errors in Anthropic's shape


def _anthropic_error(r, status, kind):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert "request_id" in body
    return body


@pytest.mark.parametrize("raw, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1]", "JSON object"),
    (b'{"model": "gpt-4o", "max_tokens": 5}', "messages"),
    (b'{"model": "gpt-4o", "max_tokens": 5, "messages": "hi"}', "messages"),
    (b'{"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}', "role"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": "gpt-4o", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": 5, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
])
def test_bad_messages_requests_get_anthropic_400(gw, up, raw, fragment):
    r = httpx.post(f"{gw.url()}/v1/messages", content=raw, headers={"content-type": "application/json"})
    body = _anthropic_error(r, 400, "invalid_request_error")
    assert fragment in body["error"]["message"]
    assert up[0].requests == [] and up[1].requests == []


def test_sdk_typed_errors(ac, up):
    with pytest.raises(anthropic.NotFoundError) as exc:
        ac.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "not_found_error"
    up[0].enqueue(Turn(status=429, error={"error": {"message": "slow down", "type": "rate_limit_exceeded",
                                                    "code": "rl", "param": None}}))
    with pytest.raises(anthropic.RateLimitError) as exc:
        ac.messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "rate_limit_error"
    assert "slow down" in exc.value.body["error"]["message"]


def test_native_anthropic_error_passes_verbatim(gw, up):
    up[1].enqueue(Turn(status=529))
    r = httpx.post(f"{gw.url()}/v1/messages", json={"model": "claude-sonnet-4-6", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 529
    assert r.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_anthropic_error_reaches_chat_client_in_openai_shape(oc, up):
    up[1].enqueue(Turn(status=400, error={"type": "error", "error": {"type": "invalid_request_error",
                                                                      "message": "prompt is too long"}}))
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}])
    assert "prompt is too long" in exc.value.message
    assert set(exc.value.body) >= {"message", "type", "code"}


def test_upstream_garbage_and_unreachable_in_anthropic_shape(gw, up):
    up[0].enqueue(Turn(kind="garbage"))
    r = httpx.post(f"{gw.url()}/v1/messages", json={"model": "gpt-4o", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "x"}]})
    _anthropic_error(r, 502, "api_error")
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "claude-sonnet-4-6",
                                                            "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200  # the mock is fine; now a garbage answer from Anthropic to a chat client
    up[1].enqueue(Turn(kind="garbage"))
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "claude-sonnet-4-6",
                                                            "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid_response"


@pytest.mark.parametrize("kind", ["broken_sse", "bad_event"])
def test_broken_upstream_stream_ends_with_anthropic_error_event(ac, up, kind):
    up[0].enqueue(Turn(text="a fairly long answer that is cut", kind=kind))
    with pytest.raises(anthropic.APIStatusError) as exc:
        with ac.messages.stream(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            for _ in s:
                pass
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize("kind", ["broken_sse", "bad_event"])
def test_broken_anthropic_stream_ends_chat_stream_with_openai_error(oc, up, kind):
    up[1].enqueue(Turn(text="a fairly long answer that is cut", kind=kind))
    with pytest.raises(openai.APIError):
        for _ in oc.chat.completions.create(model="claude-sonnet-4-6", stream=True,
                                            messages=[{"role": "user", "content": "x"}]):
            pass


def test_unknown_messages_paths_and_methods_in_anthropic_shape(gw):
    _anthropic_error(httpx.get(f"{gw.url()}/v1/messages"), 405, "invalid_request_error")
    _anthropic_error(httpx.post(f"{gw.url()}/v1/messages/batches", json={}), 404, "not_found_error")
    r = httpx.get(f"{gw.url()}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"  # OpenAI's shape elsewhere
