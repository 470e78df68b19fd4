"""Native Gemini upstream end to end: the official ``openai`` and ``anthropic`` SDKs → the gateway →
a mock speaking the Gemini API's ``generateContent`` / ``streamGenerateContent`` wire format.

Real sockets on loopback only (tests/support/mock_gemini.py).
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_gemini import MockGemini
from tests.support.mock_openai_wire import MockOpenAI, Turn

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                  "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": WEATHER_SCHEMA, "strict": True}}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def mocks():
    gm, oa = MockGemini().start(), MockOpenAI().start()
    yield gm, oa
    gm.stop()
    oa.stop()


@pytest.fixture(scope="module")
def gw(mocks, tmp_path_factory):
    gm, oa = mocks
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            {"model": "gemini/gemini-2.5-flash", "access_key": "g-key", "base_url": gm.url, "default": True},
            {"model": "google/gemini-2.5-pro", "access_key": "bad", "base_url": gm.url},
            {"model": "gemini/gemini-compat", "access_key": "g-compat", "base_url": f"{oa.url}/v1beta/openai"},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("gemini-gw"), env={"PLANO_HOME": str(tmp_path_factory.mktemp("home"))})
    g.start()
    yield g
    g.stop()


@pytest.fixture
def up(mocks):
    for m in mocks:
        m.reset()
    return mocks


@pytest.fixture
def oc(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)


@pytest.fixture
def ac(gw):
    return anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0, timeout=20)


# ------------------------------------------------------------------ openai SDK → Gemini


def test_chat_json_to_generate_content(oc, up):
    gm, _ = up
    resp = oc.chat.completions.create(
        model="gemini-2.5-flash", max_tokens=256, temperature=0.2, stop=["END"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello gemini"}])
    assert resp.choices[0].message.content == "echo: hello gemini"
    assert resp.choices[0].finish_reason == "stop" and resp.model == "gemini-2.5-flash"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (11, 7, 18)
    seen = gm.last
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == "g-key" and "authorization" not in seen.headers
    assert seen.body == {"contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}],
                         "systemInstruction": {"parts": [{"text": "be brief"}]},
                         "generationConfig": {"maxOutputTokens": 256, "temperature": 0.2, "stopSequences": ["END"]}}


def test_chat_stream_to_stream_generate_content(oc, up):
    gm, _ = up
    gm.enqueue(Turn(text="streaming from gemini, piece by piece", usage=(30, 9, 12)))
    chunks = list(oc.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "stream please"}]))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "streaming from gemini, piece by piece" and len(deltas) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (30, 9)
    assert usage.prompt_tokens_details.cached_tokens == 12
    seen = gm.last
    assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert "stream" not in seen.body and "stream_options" not in seen.body


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip_with_thought_signature(oc, up, stream):
    gm, _ = up
    gm.enqueue(Turn(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]),
               Turn(text="Paris 20C, Rome 25C."))
    messages = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    kwargs = dict(model="gemini-2.5-flash", tools=TOOLS, tool_choice={"type": "function",
                                                                       "function": {"name": "get_weather"}})
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in oc.chat.completions.create(messages=messages, stream=True, **kwargs):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or ():
                    entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] += tc.id or ""
                    entry["name"] += (tc.function.name or "") if tc.function else ""
                    entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
        tool_calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                      for _, c in sorted(calls.items())]
    else:
        resp = oc.chat.completions.create(messages=messages, **kwargs)
        finish = resp.choices[0].finish_reason
        tool_calls = [c.model_dump(exclude_none=True) for c in resp.choices[0].message.tool_calls]
    assert finish == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tool_calls] == \
        [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    assert len({c["id"] for c in tool_calls}) == 2
    sent = gm.last.body
    decl = sent["tools"][0]["functionDeclarations"][0]
    assert decl == {"name": "get_weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    # Second turn: the calls and their results go back; the first call's thoughtSignature with it.
    for c in tool_calls:
        c.pop("extra_content", None)  # a client that drops extensions: the id still carries the signature
    messages += [{"role": "assistant", "content": None, "tool_calls": tool_calls},
                 {"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "{\"temp\": 20}"},
                 {"role": "tool", "tool_call_id": tool_calls[1]["id"], "content": "25 degrees"}]
    final = oc.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "Paris 20C, Rome 25C."
    contents = gm.last.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": MockGemini.signature},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "25 degrees"}}}]


def test_images_reasoning_and_usage_details(oc, up):
    gm, _ = up
    gm.enqueue(Turn(text="a red pixel", reasoning="looking at the image", usage=(300, 4, 200)))
    resp = oc.chat.completions.create(
        model="gemini-2.5-flash", reasoning_effort="low",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}}]}])
    assert resp.choices[0].message.content == "a red pixel"
    parts = gm.last.body["contents"][0]["parts"]
    assert parts == [{"text": "what is this?"}, {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
                     {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}}]
    assert gm.last.body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}}
    usage = resp.usage
    assert usage.prompt_tokens == 300 and usage.prompt_tokens_details.cached_tokens == 200
    assert usage.completion_tokens == 4 + 5 and usage.completion_tokens_details.reasoning_tokens == 5


@pytest.mark.parametrize("kind, finish", [("max_tokens", "length"), ("safety", "content_filter")])
def test_finish_reasons(oc, up, kind, finish):
    up[0].enqueue(Turn(text="cut", kind=kind))
    resp = oc.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].finish_reason == finish


def test_gemini_openai_compatible_base_url_passes_through(oc, up):
    gm, oa = up
    resp = oc.chat.completions.create(model="gemini-compat", messages=[{"role": "user", "content": "compat"}])
    assert resp.choices[0].message.content == "echo: compat"
    assert oa.last.path == "/v1beta/openai/chat/completions" and gm.requests == []
    assert oa.last.headers["authorization"] == "Bearer g-compat" and "x-goog-api-key" not in oa.last.headers


# ------------------------------------------------------------------ anthropic SDK → Gemini


def test_anthropic_sdk_create_and_stream_to_gemini(ac, up):
    gm, _ = up
    msg = ac.messages.create(model="gemini-2.5-flash", max_tokens=100, system="answer in one line",
                             messages=[{"role": "user", "content": "hi from claude code"}])
    assert msg.type == "message" and msg.content[0].text == "echo: hi from claude code"
    assert msg.stop_reason == "end_turn" and (msg.usage.input_tokens, msg.usage.output_tokens) == (11, 7)
    assert gm.last.body["systemInstruction"] == {"parts": [{"text": "answer in one line"}]}
    assert gm.last.body["generationConfig"] == {"maxOutputTokens": 100}
    assert not any(k.startswith("anthropic-") for k in gm.last.headers)
    gm.enqueue(Turn(text="streamed through two translators"))
    with ac.messages.stream(model="gemini-2.5-flash", max_tokens=50,
                            messages=[{"role": "user", "content": "stream"}]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert final.content[0].text == "streamed through two translators"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
    assert gm.last.path.endswith(":streamGenerateContent")


def test_anthropic_sdk_tools_to_gemini(ac, up):
    gm, _ = up
    gm.enqueue(Turn(tool_calls=[("get_weather", {"city": "Oslo"})]), Turn(text="Oslo is cold."))
    tool = {"name": "get_weather", "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    with ac.messages.stream(model="gemini-2.5-flash", max_tokens=200, tools=[tool], tool_choice={"type": "any"},
                            messages=[{"role": "user", "content": "weather in Oslo?"}]) as s:
        first = s.get_final_message()
    use = [b for b in first.content if b.type == "tool_use"][0]
    assert first.stop_reason == "tool_use" and use.name == "get_weather" and use.input == {"city": "Oslo"}
    assert gm.last.body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    msg = ac.messages.create(model="gemini-2.5-flash", max_tokens=200, tools=[tool], messages=[
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "-3C"}]}])
    assert msg.content[0].text == "Oslo is cold."
    contents = gm.last.body["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == MockGemini.signature
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"content": "-3C"}}}]


def test_responses_client_to_gemini(oc, up):
    gm, _ = up
    resp = oc.responses.create(model="gemini-2.5-flash", input="hello responses", store=False)
    assert resp.output_text == "echo: hello responses"
    assert gm.last.body["contents"] == [{"role": "user", "parts": [{"text": "hello responses"}]}]


# ------------------------------------------------------------------ errors in the client's envelope


def test_google_error_reaches_chat_client_in_openai_envelope(oc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(model="gemini-2.5-pro", messages=[{"role": "user", "content": "x"}])
    body = exc.value.body
    assert body["message"] == "API key not valid. Please pass a valid API key."
    assert body["type"] == "invalid_request_error" and body["code"] == "INVALID_ARGUMENT"
    up[0].enqueue(Turn(status=429, error={"error": {"code": 429, "message": "Resource has been exhausted (e.g. "
                                                    "check quota).", "status": "RESOURCE_EXHAUSTED"}}))
    with pytest.raises(openai.RateLimitError) as exc:
        oc.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "rate_limit_error" and "exhausted" in exc.value.body["message"]


def test_google_error_reaches_anthropic_client_in_anthropic_envelope(ac, up):
    up[0].enqueue(Turn(status=503))
    with pytest.raises(anthropic.APIStatusError) as exc:
        ac.messages.create(model="gemini-2.5-flash", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 503
    body = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert "overloaded" in body["error"]["message"]


def test_gemini_refusal_of_a_bad_translation_would_show(gw, up):
    """The mock refuses what the real API refuses (here: an OpenAI field), so a wrong translation fails."""
    from tests.support.mock_gemini import validate

    assert "Unknown name \"messages\"" in validate({"messages": [], "contents": [{"role": "user", "parts": [{"text": "x"}]}]})
    assert "valid role" in validate({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]})
    assert "additionalProperties" in validate({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [
        {"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "additionalProperties": False}}]}]})


@pytest.mark.parametrize("kind", ["broken_sse", "bad_event", "garbage", "no_finish", "mid_error"])
def test_broken_gemini_stream_ends_cleanly_for_chat(oc, up, kind):
    up[0].enqueue(Turn(text="a fairly long answer that gets cut somewhere", kind=kind))
    with pytest.raises(openai.APIError):
        for _ in oc.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                            messages=[{"role": "user", "content": "x"}]):
            pass


@pytest.mark.parametrize("kind", ["broken_sse", "bad_event", "no_finish"])
def test_broken_gemini_stream_ends_cleanly_for_anthropic(ac, up, kind):
    up[0].enqueue(Turn(text="a fairly long answer that gets cut somewhere", kind=kind))
    with pytest.raises(anthropic.APIStatusError) as exc:
        with ac.messages.stream(model="gemini-2.5-flash", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            for _ in s:
                pass
    assert exc.value.body["type"] == "error"


def test_garbage_json_answer_is_a_502(gw, up):
    up[0].enqueue(Turn(kind="garbage"))
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": "gemini-2.5-flash",
                                                            "messages": [{"role": "user", "content": "x"}]}, timeout=20)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid_response"
