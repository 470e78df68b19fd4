"""Native Amazon Bedrock upstream end to end: the ``openai`` (chat + responses) and ``anthropic`` SDKs →
the gateway → a mock Bedrock runtime speaking Converse / ConverseStream (binary event stream).

The mock verifies the SigV4 signature of every request itself (tests/support/mock_bedrock.py),
or the Bedrock API key (Bearer). Real sockets on loopback only.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.mock_bedrock import MockBedrock
from tests.support.mock_openai_wire import Turn

AK, SK, TOKEN = "AKIAPLANOTEST", "plano/test+secret", "IQoJb3JpZ2luX2VjEXAMPLE//token=="
NOVA = "us.amazon.nova-premier-v1:0"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def br():
    mock = MockBedrock(credentials={AK: (SK, TOKEN), "AKIAENTRY": ("entry-secret", None)},
                       api_keys={"bedrock-api-key-abc"}, region="eu-west-1").start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def gw(br, tmp_path_factory):
    config = {
        "version": "v0.4.0",
        "listeners": [{"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1", "timeout": "20s"}],
        "model_providers": [
            # SigV4 with the standard AWS_* variables (region from AWS_REGION: the base_url is no AWS host)
            {"model": f"amazon_bedrock/{NOVA}", "base_url": br.url, "default": True},
            # a Bedrock API key: Authorization: Bearer
            {"model": "amazon_bedrock/anthropic.claude-3-haiku-20240307-v1:0", "access_key": "bedrock-api-key-abc",
             "base_url": br.url},
            # credentials and region on the entry itself
            {"model": "amazon/meta.llama3-70b-instruct-v1:0", "base_url": br.url, "aws_access_key_id": "AKIAENTRY",
             "aws_secret_access_key": "entry-secret", "aws_region": "eu-west-1"},
            # wrong secret: the mock must refuse the signature
            {"model": "amazon_bedrock/mistral.large-v1:0", "base_url": br.url, "aws_access_key_id": "AKIAENTRY",
             "aws_secret_access_key": "not-the-secret", "aws_region": "eu-west-1"},
        ],
    }
    env = {"PLANO_HOME": str(tmp_path_factory.mktemp("home")), "AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK,
           "AWS_SESSION_TOKEN": TOKEN, "AWS_REGION": "eu-west-1"}
    g = Gateway(config, tmp_path_factory.mktemp("bedrock-gw"), env=env)
    g.start()
    yield g
    g.stop()


@pytest.fixture
def up(br):
    br.reset()
    return br


@pytest.fixture
def oc(gw):
    return openai.OpenAI(base_url=f"{gw.url()}/v1", api_key="sk-client", max_retries=0, timeout=20)


@pytest.fixture
def ac(gw):
    return anthropic.Anthropic(base_url=gw.url(), api_key="sk-client", max_retries=0, timeout=20)


# ------------------------------------------------------------------ openai SDK → Converse


def test_chat_json_to_converse_signed(oc, up):
    resp = oc.chat.completions.create(
        model=NOVA, max_tokens=300, temperature=0.5, top_p=0.9, stop="STOP",
        messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": "hello bedrock"}])
    assert resp.choices[0].message.content == "echo: hello bedrock"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (11, 7, 18)
    seen = up.last
    assert seen.path == f"/model/{NOVA}/converse" and up.raw_paths == ["/model/us.amazon.nova-premier-v1%3A0/converse"]
    assert up.verified == ["sigv4"]
    assert seen.headers["x-amz-security-token"] == TOKEN and "x-api-key" not in seen.headers
    assert "Credential=AKIAPLANOTEST/" in seen.headers["authorization"]
    assert seen.body == {"messages": [{"role": "user", "content": [{"text": "hello bedrock"}]}],
                         "system": [{"text": "be terse"}],
                         "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.9,
                                             "stopSequences": ["STOP"]}}


def test_chat_stream_from_binary_event_stream(oc, up):
    up.enqueue(Turn(text="decoded from binary frames, split across writes", usage=(40, 8, 30)))
    chunks = list(oc.chat.completions.create(model=NOVA, stream=True, stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "stream"}]))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "decoded from binary frames, split across writes" and len(deltas) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (70, 8)
    assert usage.prompt_tokens_details.cached_tokens == 30
    assert up.last.path == f"/model/{NOVA}/converse-stream" and up.verified == ["sigv4"]
    assert up.last.headers["accept"] == "application/vnd.amazon.eventstream"


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(oc, up, stream):
    up.enqueue(Turn(tool_calls=[("get_weather", {"city": "Lima"}), ("get_weather", {"city": "Quito"})]),
               Turn(text="Lima 18C, Quito 14C."))
    messages = [{"role": "user", "content": "weather in Lima and Quito?"}]
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in oc.chat.completions.create(model=NOVA, messages=messages, tools=TOOLS, tool_choice="required",
                                                stream=True):
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
        resp = oc.chat.completions.create(model=NOVA, messages=messages, tools=TOOLS, tool_choice="required")
        finish = resp.choices[0].finish_reason
        tool_calls = [c.model_dump(exclude_none=True) for c in resp.choices[0].message.tool_calls]
    assert finish == "tool_calls"
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in tool_calls] == \
        [("tooluse_mock0", "get_weather", {"city": "Lima"}), ("tooluse_mock1", "get_weather", {"city": "Quito"})]
    assert up.last.body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather for a city",
        "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}}], "toolChoice": {"any": {}}}
    messages += [{"role": "assistant", "content": None, "tool_calls": tool_calls},
                 {"role": "tool", "tool_call_id": "tooluse_mock0", "content": "{\"temp\": 18}"},
                 {"role": "tool", "tool_call_id": "tooluse_mock1", "content": "14 degrees"},
                 {"role": "user", "content": "thanks, summarise"}]
    final = oc.chat.completions.create(model=NOVA, messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "Lima 18C, Quito 14C."
    sent = up.last.body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # tool results + text merged: alternation
    assert sent[1]["content"] == [{"toolUse": {"toolUseId": "tooluse_mock0", "name": "get_weather",
                                               "input": {"city": "Lima"}}},
                                  {"toolUse": {"toolUseId": "tooluse_mock1", "name": "get_weather",
                                               "input": {"city": "Quito"}}}]
    assert sent[2]["content"] == [{"toolResult": {"toolUseId": "tooluse_mock0", "content": [{"json": {"temp": 18}}]}},
                                  {"toolResult": {"toolUseId": "tooluse_mock1", "content": [{"text": "14 degrees"}]}},
                                  {"text": "thanks, summarise"}]
    assert "toolChoice" not in up.last.body["toolConfig"]


def test_images_and_api_key_auth(oc, up):
    resp = oc.chat.completions.create(model="anthropic.claude-3-haiku-20240307-v1:0", messages=[
        {"role": "user", "content": [{"type": "text", "text": "describe"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}])
    assert resp.choices[0].message.content == "echo: describe"
    assert up.verified == ["bearer"] and up.last.headers["authorization"] == "Bearer bedrock-api-key-abc"
    assert "x-amz-date" not in up.last.headers
    assert up.last.body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PIXEL}}}
    with pytest.raises(openai.BadRequestError) as exc:  # Converse takes no image links: the gateway says so
        oc.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert exc.value.body["code"] == "unsupported_image_url"
    assert len(up.requests) == 1


def test_entry_credentials_and_wrong_secret(oc, up):
    resp = oc.chat.completions.create(model="amazon/meta.llama3-70b-instruct-v1:0",
                                      messages=[{"role": "user", "content": "entry creds"}])
    assert resp.choices[0].message.content == "echo: entry creds" and up.verified == ["sigv4"]
    assert "Credential=AKIAENTRY/" in up.last.headers["authorization"]
    assert "x-amz-security-token" not in up.last.headers
    with pytest.raises(openai.PermissionDeniedError) as exc:
        oc.chat.completions.create(model="mistral.large-v1:0", messages=[{"role": "user", "content": "x"}])
    assert "signature" in exc.value.body["message"] and exc.value.body["code"] == "InvalidSignatureException"
    assert exc.value.body["type"] == "authentication_error"


def test_thinking_blocks_round_trip(oc, up):
    up.enqueue(Turn(text="4", reasoning="two plus two", signature="sig-bedrock-1"), Turn(text="done"))
    resp = oc.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "2+2"}],
                                      extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}})
    extra = resp.choices[0].message.model_extra
    assert extra["reasoning_content"] == "two plus two"
    assert extra["thinking_blocks"] == [{"type": "thinking", "thinking": "two plus two", "signature": "sig-bedrock-1"}]
    assert up.last.body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    oc.chat.completions.create(model=NOVA, messages=[
        {"role": "user", "content": "2+2"},
        {"role": "assistant", "content": "4", "thinking_blocks": extra["thinking_blocks"]},
        {"role": "user", "content": "and?"}])
    assert up.last.body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "two plus two", "signature": "sig-bedrock-1"}}},
        {"text": "4"}]


# ------------------------------------------------------------------ anthropic SDK and Responses → Converse


def test_anthropic_sdk_to_bedrock_stream_with_thinking(ac, up):
    up.enqueue(Turn(text="42", reasoning="six times seven", signature="sig-xyz"))
    with ac.messages.stream(model=NOVA, max_tokens=64, messages=[{"role": "user", "content": "6*7"}],
                            system="math") as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["text"]  # thinking not asked for: Bedrock sends none
    assert final.content[0].text == "42" and final.stop_reason == "end_turn"
    assert up.last.body["system"] == [{"text": "math"}] and up.verified == ["sigv4"]


def test_responses_create_to_bedrock(oc, up):
    up.enqueue(Turn(text="first answer"), Turn(text="second answer"))
    first = oc.responses.create(model=NOVA, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "part one"}, {"type": "input_text", "text": "part two"}]}])
    assert first.output_text == "first answer"
    sent = up.last.body["messages"]  # the Responses→Chat step joins text parts; Converse gets them as text blocks
    assert [m["role"] for m in sent] == ["user"] and "".join(b["text"] for b in sent[0]["content"]) == "part onepart two"
    events = []
    with oc.responses.stream(model=NOVA, input="follow up", previous_response_id=first.id) as s:
        for e in s:
            events.append(e.type)
        second = s.get_final_response()
    assert second.output_text == "second answer"
    assert events[0] == "response.created" and events[-1] == "response.completed"
    sent = up.last.body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [{"text": "first answer"}] and sent[2]["content"] == [{"text": "follow up"}]


def test_responses_tools_to_bedrock(oc, up):
    up.enqueue(Turn(tool_calls=[("get_weather", {"city": "Bern"})]))
    resp = oc.responses.create(model=NOVA, input="weather in Bern?", tools=[
        {"type": "function", "name": "get_weather", "parameters": TOOLS[0]["function"]["parameters"]}])
    call = [o for o in resp.output if o.type == "function_call"][0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Bern"}
    assert call.call_id == "tooluse_mock0"


# ------------------------------------------------------------------ errors and broken streams


def test_bedrock_errors_in_client_envelopes(oc, ac, up):
    up.enqueue(Turn(status=400, error="ValidationException:The model returned the following errors: "
                                      "max_tokens: range: 1..4096"))
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(model=NOVA, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "ValidationException" and "max_tokens" in exc.value.body["message"]
    assert exc.value.body["type"] == "invalid_request_error"
    up.enqueue(Turn(status=429))
    with pytest.raises(anthropic.RateLimitError) as exc:
        ac.messages.create(model=NOVA, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "rate_limit_error"
    assert "Too many requests" in exc.value.body["error"]["message"]


def test_mock_refuses_what_converse_refuses():
    from tests.support.mock_bedrock import validate

    ok = {"messages": [{"role": "user", "content": [{"text": "x"}]}]}
    assert validate(ok) is None
    assert "alternate" in validate({"messages": [{"role": "user", "content": [{"text": "a"}]},
                                                 {"role": "user", "content": [{"text": "b"}]}]})
    assert "blank" in validate({"messages": [{"role": "user", "content": [{"text": " "}]}]})
    assert "toolConfig" in validate({"messages": [{"role": "user", "content": [
        {"toolResult": {"toolUseId": "t", "content": [{"text": "r"}]}}]}]})
    assert "extraneous" in validate({**ok, "max_tokens": 5})


@pytest.mark.parametrize("kind", ["bad_crc", "exception", "truncated", "broken_sse", "garbage", "no_stop"])
def test_broken_event_stream_ends_cleanly_for_chat(oc, up, kind):
    up.enqueue(Turn(text="a fairly long answer that the upstream never finishes properly", kind=kind))
    with pytest.raises(openai.APIError) as exc:
        for _ in oc.chat.completions.create(model=NOVA, stream=True, messages=[{"role": "user", "content": "x"}]):
            pass
    if kind == "exception":
        assert "ThrottlingException" in str(exc.value.message) and "Too many tokens" in str(exc.value.message)


@pytest.mark.parametrize("kind", ["bad_crc", "exception", "truncated"])
def test_broken_event_stream_ends_cleanly_for_anthropic(ac, up, kind):
    up.enqueue(Turn(text="a fairly long answer that the upstream never finishes properly", kind=kind))
    with pytest.raises(anthropic.APIStatusError) as exc:
        with ac.messages.stream(model=NOVA, max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
            for _ in s:
                pass
    assert exc.value.body["type"] == "error"


def test_garbage_json_answer_is_a_502(gw, up):
    up.enqueue(Turn(kind="garbage"))
    r = httpx.post(f"{gw.url()}/v1/chat/completions", json={"model": NOVA,
                                                            "messages": [{"role": "user", "content": "x"}]}, timeout=20)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid_response"
