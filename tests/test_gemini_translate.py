"""Chat ⇄ Gemini translation units (gateway/wire/translate/gemini.py), no sockets."""

from __future__ import annotations

import json

from gateway.config.providers import ANTHROPIC_MESSAGES, GEMINI_GENERATE, OPENAI_CHAT
from gateway.wire.translate import translator
from gateway.wire.translate.gemini import (
    GeminiToChatStream,
    chat_request_to_gemini,
    decode_call_id,
    encode_call_id,
    error_to_openai,
    gemini_response_to_chat,
    stream_url,
)
from tests.support.mock_gemini import validate


def test_request_mapping_is_accepted_by_the_mock_validator():
    req = {"model": "gemini-2.5-flash", "n": 2, "seed": 7, "top_p": 0.5, "presence_penalty": 0.1,
           "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
           "tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f", "parameters": {
               "type": "object", "properties": {"a": {"type": "object", "additionalProperties": True,
                                                       "properties": {"b": {"type": "string"}}}}}}}],
           "messages": [{"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
                        {"role": "assistant", "content": ""},
                        {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                                                                  "filename": "a.pdf"}},
                                                     {"type": "input_audio", "input_audio": {"data": "AAA", "format": "mp3"}}]}]}
    out = chat_request_to_gemini(req)
    assert validate(out) is None
    assert out["systemInstruction"] == {"parts": [{"text": "dev"}]}
    assert out["contents"] == [{"role": "user", "parts": [
        {"text": "one"}, {"text": "two"}, {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "AAA"}}]}]
    assert out["generationConfig"] == {"candidateCount": 2, "seed": 7, "topP": 0.5, "presencePenalty": 0.1,
                                       "responseMimeType": "application/json",
                                       "responseJsonSchema": {"type": "object"}}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert "additionalProperties" not in json.dumps(out["tools"])


def test_signature_survives_in_the_call_id():
    for sig in ("c2ln+/8=", "CiQBjz1rX+/abc==", "plain", "not base64: +/-_ é", "a" * 500):
        call_id = encode_call_id(0, sig)
        assert all(c.isalnum() or c in "_-" for c in call_id)  # valid as an Anthropic tool_use id too
        base, back = decode_call_id(call_id)
        assert base.startswith("call_0") and back == sig
    assert decode_call_id("call_plain") == ("call_plain", None)
    assert encode_call_id(3, None, "fc-id") == "fc-id"


def test_response_mapping_candidates_block_and_usage():
    answer = {"candidates": [
        {"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "A"}], "role": "model"},
         "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "B"}], "role": "model"}, "finishReason": "RECITATION", "index": 1}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 2,
                          "totalTokenCount": 16}, "modelVersion": "gemini-x", "responseId": "r1"}
    chat = gemini_response_to_chat(answer, {"model": "m"})
    assert chat["id"] == "chatcmpl-r1" and chat["model"] == "gemini-x"
    assert [(c["message"]["content"], c["finish_reason"]) for c in chat["choices"]] == \
        [("A", "stop"), ("B", "content_filter")]
    assert chat["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert chat["usage"] == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16,
                             "completion_tokens_details": {"reasoning_tokens": 2}}
    blocked = gemini_response_to_chat({"promptFeedback": {"blockReason": "SAFETY"},
                                       "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})
    assert blocked["choices"][0]["finish_reason"] == "content_filter"


def test_stream_prompt_block_and_errors():
    state = GeminiToChatStream({"model": "m"})
    out = state.feed(None, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    assert out[-1][1]["choices"][0]["finish_reason"] == "content_filter"
    assert state.finish_stream() == []
    state = GeminiToChatStream({})
    assert state.feed(None, {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}) == \
        [("error", {"message": "boom", "type": "server_error", "code": "INTERNAL"})]
    assert state.finish_stream()[0][0] == "error"  # no finishReason seen: the stream was cut


def test_anthropic_client_stream_through_the_bridge():
    t = translator(ANTHROPIC_MESSAGES, GEMINI_GENERATE)
    stream = t.stream({"model": "gemini-2.5-flash", "stream": True})
    events = stream.feed(None, {"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}}],
                                "responseId": "x"})
    events += stream.feed(None, {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}},
                                                                         "thoughtSignature": "c2ln"}]},
                                                  "finishReason": "STOP"}],
                                  "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
                                                    "cachedContentTokenCount": 3}})
    events += stream.finish()
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    use = [p for n, p in events if n == "content_block_start" and p["content_block"]["type"] == "tool_use"][0]
    assert decode_call_id(use["content_block"]["id"])[1].startswith("c2ln")
    delta = [p for n, p in events if n == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["cache_read_input_tokens"] == 3 and delta["usage"]["input_tokens"] == 2


def test_errors_and_urls():
    body = json.loads(error_to_openai(b'[{"error": {"code": 404, "message": "models/x is not found", '
                                      b'"status": "NOT_FOUND"}}]', 404))
    assert body == {"error": {"message": "models/x is not found", "type": "invalid_request_error",
                              "code": "NOT_FOUND", "param": None}}
    assert error_to_openai(b"<html>", 502) == b"<html>"
    assert stream_url("https://h/v1beta/models/m:generateContent") == \
        "https://h/v1beta/models/m:streamGenerateContent?alt=sse"
    assert stream_url("https://h/v1beta/models/m:generateContent?x=1") == \
        "https://h/v1beta/models/m:streamGenerateContent?x=1&alt=sse"
    t = translator(OPENAI_CHAT, GEMINI_GENERATE)
    urls, headers = t.prepare(("https://h/v1beta/models/m:generateContent",), {"accept": "*/*"}, b"{}",
                              {"stream": True}, None)
    assert urls == ("https://h/v1beta/models/m:streamGenerateContent?alt=sse",)
    assert headers["accept"] == "text/event-stream"
