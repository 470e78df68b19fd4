"""Translators between client and upstream APIs, as units (no sockets)."""

from __future__ import annotations

import asyncio
import json

import pytest
from multidict import CIMultiDict

from gateway.config.providers import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from gateway.upstream import UpstreamError
from gateway.wire.anthropic import MESSAGES, estimate_input_tokens
from gateway.wire.openai_chat import CHAT
from gateway.wire.responses import RESPONSES
from gateway.wire.translate import TranslatedResponse, translator
from gateway.wire.translate import chat_anthropic as ca
from gateway.wire.translate import responses_chat as rc


def test_same_api_has_no_translator():
    assert translator(OPENAI_CHAT, OPENAI_CHAT) is None
    assert translator(ANTHROPIC_MESSAGES, ANTHROPIC_MESSAGES) is None


def test_chat_request_to_anthropic_everything():
    req = {"model": "claude", "max_tokens": 300, "temperature": 0.3, "stop": "END", "user": "u-1",
           "parallel_tool_calls": False, "tool_choice": "required",
           "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                                      "parameters": {"type": "object"}}}],
           "messages": [
               {"role": "system", "content": "sys one"},
               {"role": "developer", "content": [{"type": "text", "text": "sys two"}]},
               {"role": "user", "content": [{"type": "text", "text": "look"},
                                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                            {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}}]},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
                   {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 2}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "one"},
               {"role": "tool", "tool_call_id": "c2", "content": "two"},
               {"role": "user", "content": "and?"}]}
    out = ca.chat_request_to_anthropic(req)
    assert out["system"] == [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}]
    assert out["max_tokens"] == 300 and out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u-1"}
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
    user, assistant, results = out["messages"]
    assert user["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    assert user["content"][2] == {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}
    assert [b["input"] for b in assistant["content"]] == [{"a": 1}, {"a": 2}]
    # consecutive tool results and the next user text form one user turn (Anthropic alternates roles)
    assert results["role"] == "user" and [b["type"] for b in results["content"]] == ["tool_result", "tool_result", "text"]
    assert ca.chat_request_to_anthropic({"messages": [{"role": "user", "content": "x"}]})["max_tokens"] == 4096


def test_anthropic_request_to_chat_everything():
    req = {"model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
           "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
           "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web"}],
           "messages": [
               {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                                         "data": "QQ"}},
                                            {"type": "document", "source": {"type": "base64", "media_type":
                                                                            "application/pdf", "data": "UA"}}]},
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                                 {"type": "text", "text": "let me"},
                                                 {"type": "tool_use", "id": "tu1", "name": "f", "input": {"q": 1}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "is_error": True,
                                             "content": [{"type": "text", "text": "boom"}]},
                                            {"type": "text", "text": "retry"}]}]}
    out = ca.anthropic_request_to_chat(req, max_tokens_field="max_completion_tokens")
    assert out["max_completion_tokens"] == 50
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}} and out["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in out["tools"]] == ["f"]  # server tools have no chat counterpart
    system, user, assistant, tool, user2 = out["messages"]
    assert system["content"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert user["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QQ"}}
    assert user["content"][1] == {"type": "file", "file": {"file_data": "data:application/pdf;base64,UA"}}
    assert assistant["content"] == "let me" and assistant["tool_calls"][0]["function"]["arguments"] == '{"q":1}'
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "t", "signature": "s"}]
    assert tool == {"role": "tool", "tool_call_id": "tu1", "content": "Error: boom"}
    assert user2 == {"role": "user", "content": "retry"}


def test_usage_with_cached_tokens_both_ways():
    chat = ca.usage_to_chat({"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5,
                             "output_tokens": 3})
    assert chat == {"prompt_tokens": 105, "completion_tokens": 3, "total_tokens": 108,
                    "prompt_tokens_details": {"cached_tokens": 90}}
    back = ca.usage_to_anthropic({"prompt_tokens": 100, "completion_tokens": 4,
                                  "prompt_tokens_details": {"cached_tokens": 60}})
    assert back["input_tokens"] == 40 and back["cache_read_input_tokens"] == 60 and back["output_tokens"] == 4


@pytest.mark.parametrize("reason, chat", [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                          ("stop_sequence", "stop"), ("refusal", "content_filter")])
def test_stop_reasons(reason, chat):
    assert ca.stop_to_chat(reason) == chat
    assert ca.stop_to_anthropic(chat) == ("end_turn" if reason == "stop_sequence" else reason)


def test_anthropic_stream_to_chat_event_by_event():
    s = ca.AnthropicToChatStream()
    out = s.feed("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "c",
                                                                        "usage": {"input_tokens": 9}}})
    assert out[0][1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert s.feed("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "thinking", "thinking": ""}}) == []
    out = s.feed(None, {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}})
    assert out[0][1]["choices"][0]["delta"] == {"reasoning_content": "hm"}
    s.feed(None, {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG"}})
    out = s.feed(None, {"type": "content_block_stop", "index": 0})
    assert out[0][1]["choices"][0]["delta"]["thinking_blocks"] == [{"type": "thinking", "thinking": "hm",
                                                                    "signature": "SIG"}]
    out = s.feed(None, {"type": "content_block_start", "index": 1,
                        "content_block": {"type": "tool_use", "id": "tu", "name": "f", "input": {}}})
    assert out[0][1]["choices"][0]["delta"]["tool_calls"][0] == {"index": 0, "id": "tu", "type": "function",
                                                                 "function": {"name": "f", "arguments": ""}}
    out = s.feed(None, {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                                             "partial_json": "{\"a\""}})
    assert out[0][1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "{\"a\""
    out = s.feed(None, {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}})
    assert out[0][1]["choices"][0]["finish_reason"] == "tool_calls"
    out = s.feed(None, {"type": "message_stop"})
    assert out[0][1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert s.finish_stream() == []


def test_chat_stream_to_anthropic_parallel_tools():
    s = ca.ChatToAnthropicStream({"model": "gpt"})

    def chunk(delta, finish=None):
        return {"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = s.feed(None, chunk({"role": "assistant", "content": "Hi"}))
    assert [e[0] for e in events] == ["message_start", "content_block_start", "content_block_delta"]
    events = s.feed(None, chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}))
    assert [e[0] for e in events] == ["content_block_stop", "content_block_start"]
    s.feed(None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    events = s.feed(None, chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{\"x\":1}"}}]}))
    assert events[1][1]["content_block"] == {"type": "tool_use", "id": "b", "name": "g", "input": {}}
    assert events[2][1]["delta"] == {"type": "input_json_delta", "partial_json": "{\"x\":1}"} and events[2][1]["index"] == 2
    s.feed(None, chunk({}, "tool_calls"))
    s.feed(None, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 2}})
    events = s.finish_stream()
    assert [e[0] for e in events] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "tool_use" and events[1][1]["usage"]["output_tokens"] == 2


def test_responses_request_to_chat_items():
    req = {"model": "m", "instructions": "be nice", "max_output_tokens": 20,
           "tools": [{"type": "function", "name": "echo", "parameters": {"type": "object"}}, {"type": "web_search"}],
           "tool_choice": {"type": "function", "name": "echo"},
           "input": [{"role": "developer", "content": "dev"},
                     {"role": "user", "content": [{"type": "input_text", "text": "What is"},
                                                  {"type": "input_image", "image_url": "https://i/x.png"}]},
                     {"type": "function_call", "call_id": "c1", "name": "echo", "arguments": "{}"},
                     {"type": "function_call_output", "call_id": "c1", "output": "done"},
                     {"role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}]}
    out = rc.responses_request_to_chat(req)
    assert out["max_tokens"] == 20 and out["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert [m["role"] for m in out["messages"]] == ["system", "system", "user", "assistant", "tool", "assistant"]
    assert out["messages"][2]["content"][1] == {"type": "image_url", "image_url": {"url": "https://i/x.png"}}
    assert out["messages"][3]["tool_calls"][0]["id"] == "c1" and out["messages"][4]["content"] == "done"
    assert out["messages"][5]["content"] == "ok" and len(out["tools"]) == 1


def test_chat_stream_to_responses_sequence():
    s = rc.ChatToResponsesStream({"model": "m"}, "resp_1")

    def chunk(delta, finish=None):
        return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    kinds = [k for k, _ in s.feed(None, chunk({"role": "assistant", "content": "He"}))]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta"]
    s.feed(None, chunk({"content": "llo"}))
    kinds = [k for k, _ in s.feed(None, chunk({"tool_calls": [{"index": 0, "id": "call", "function":
                                                                {"name": "f", "arguments": "{}"}}]}))]
    assert kinds == ["response.output_item.added", "response.function_call_arguments.delta"]
    s.feed(None, chunk({}, "tool_calls"))
    s.feed(None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    events = s.finish_stream()
    assert [k for k, _ in events] == ["response.output_text.done", "response.content_part.done",
                                      "response.output_item.done", "response.function_call_arguments.done",
                                      "response.output_item.done", "response.completed"]
    final = events[-1][1]["response"]
    assert final["id"] == "resp_1" and rc.output_text(final) == "Hello"
    assert final["output"][1]["call_id"] == "call" and final["usage"]["total_tokens"] == 5
    numbers = [e[1]["sequence_number"] for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


class _Body:
    def __init__(self, pieces):
        self.pieces = pieces
        self.content = self

    async def read(self):
        return b"".join(self.pieces)

    async def iter_any(self):
        for p in self.pieces:
            yield p


def _resp(pieces, status=200, ctype="text/event-stream"):
    from gateway.upstream.transport import Response

    return Response(status, CIMultiDict({"content-type": ctype}), _Body(pieces))


def test_translated_stream_is_not_buffered_and_splits_across_chunks():
    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    pieces = [event[:30], event[30:], b"data: [DONE]\n\n"]
    seen = []

    async def go():
        resp = TranslatedResponse(_resp(pieces), translator(ANTHROPIC_MESSAGES, OPENAI_CHAT), {"model": "m"}, MESSAGES, "t")
        async for out in resp.chunks():
            seen.append(out)

    asyncio.run(go())
    assert seen[0] == b""[:0] or seen[0].startswith(b"event: message_start")
    text = b"".join(seen)
    assert b"text_delta" in text and text.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")


def test_translated_stream_with_a_bad_event_raises_upstream_error():
    async def go():
        resp = TranslatedResponse(_resp([b"data: {nope\n\n"]), translator(OPENAI_RESPONSES, OPENAI_CHAT), {}, RESPONSES, "t")
        async for _ in resp.chunks():
            pass

    with pytest.raises(UpstreamError) as exc:
        asyncio.run(go())
    assert exc.value.kind == "broken"


def test_error_events_in_each_api_shape():
    assert json.loads(CHAT.error_event("x", code="c")[6:])["error"]["message"] == "x"
    anth = MESSAGES.error_event("boom", code="upstream_broken").split(b"\n")
    assert anth[0] == b"event: error" and json.loads(anth[1][6:])["error"]["type"] == "api_error"
    resp = RESPONSES.error_event("bad", code="upstream_broken").split(b"\n")
    assert resp[0] == b"event: error" and json.loads(resp[1][6:])["error"]["message"] == "bad"


def test_count_tokens_estimate_grows_with_content():
    small = estimate_input_tokens({"messages": [{"role": "user", "content": "hi"}]})
    big = estimate_input_tokens({"messages": [{"role": "user", "content": "hi " * 400}]})
    image = estimate_input_tokens({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "u"}}]}]})
    assert small < 10 < 250 < big < 350 and image >= 1600
