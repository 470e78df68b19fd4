"""Chat ⇄ Bedrock Converse translation units (gateway/wire/translate/bedrock.py), no sockets."""

from __future__ import annotations

import json

import pytest
from yarl import URL

from gateway.config.providers import BEDROCK_CONVERSE, OPENAI_CHAT, OPENAI_RESPONSES
from gateway.llm.auth.sigv4 import SigV4Signer
from gateway.wire.errors import GatewayError
from gateway.wire.translate import translator
from gateway.wire.translate.bedrock import (
    BedrockToChatStream,
    bedrock_response_to_chat,
    chat_request_to_bedrock,
    error_to_openai,
    exception_name,
    stream_url,
)
from tests.support.mock_bedrock import validate

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def test_tool_choice_none():
    plain = chat_request_to_bedrock({"messages": [{"role": "user", "content": "x"}], "tools": [TOOL],
                                     "tool_choice": "none"})
    assert "toolConfig" not in plain and validate(plain) is None
    history = chat_request_to_bedrock({"tools": [TOOL], "tool_choice": "none", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": ""}]})
    assert history["toolConfig"] == {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": TOOL["function"]["parameters"]}}}]}
    assert history["messages"][2]["content"] == [{"toolResult": {"toolUseId": "t1", "content": [{"text": "(empty)"}]}}]
    assert validate(history) is None


def test_documents_redacted_thinking_and_named_choice():
    out = chat_request_to_bedrock({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}},
                                   "messages": [
        {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                                                "filename": "Q3 report (final).pdf"}},
                                     {"type": "text", "text": "  "}]},
        {"role": "assistant", "content": "ok", "thinking_blocks": [{"type": "redacted_thinking", "data": "b64=="}]},
        {"role": "user", "content": "go"}]})
    assert out["messages"][0]["content"] == [{"document": {"format": "pdf", "name": "Q3 report (final)",
                                                           "source": {"bytes": "JVBE"}}}]
    assert out["messages"][1]["content"] == [{"reasoningContent": {"redactedContent": "b64=="}}, {"text": "ok"}]
    assert out["toolConfig"]["toolChoice"] == {"tool": {"name": "f"}}
    with pytest.raises(GatewayError) as exc:
        chat_request_to_bedrock({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]})
    assert exc.value.status == 400


def test_json_answer_with_reasoning_and_cache_usage():
    chat = bedrock_response_to_chat({"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "s1"}}},
        {"text": "answer"}, {"toolUse": {"toolUseId": "tu1", "name": "f", "input": {"a": 1}}}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 20, "cacheReadInputTokens": 10,
                  "cacheWriteInputTokens": 2}}, {"model": "m"})
    message = chat["choices"][0]["message"]
    assert message["content"] == "answer" and message["reasoning_content"] == "think"
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "think", "signature": "s1"}]
    assert message["tool_calls"][0]["id"] == "tu1" and json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"a": 1}
    assert chat["choices"][0]["finish_reason"] == "content_filter"
    assert chat["usage"] == {"prompt_tokens": 17, "completion_tokens": 3, "total_tokens": 20,
                             "prompt_tokens_details": {"cached_tokens": 10}}


def test_stream_state_reasoning_tools_and_cut():
    state = BedrockToChatStream({"model": "m"})
    out = []
    out += state.feed("messageStart", {"role": "assistant"})
    out += state.feed("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}})
    out += state.feed("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sg"}}})
    out += state.feed("contentBlockStop", {"contentBlockIndex": 0})
    out += state.feed("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}})
    out += state.feed("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})
    out += state.feed("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}})
    out += state.feed("messageStop", {"stopReason": "tool_use"})
    out += state.feed("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}})
    out += state.finish_stream()
    deltas = [p["choices"][0]["delta"] for _, p in out if p.get("choices")]
    assert deltas[1] == {"reasoning_content": "hm"}
    assert deltas[2] == {"thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "sg"}]}
    assert deltas[3]["tool_calls"][0]["id"] == "t"
    assert "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if "tool_calls" in d) == '{"a":1}'
    assert out[-2][1]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-1][1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    cut = BedrockToChatStream({})
    cut.feed("messageStart", {"role": "assistant"})
    assert cut.finish_stream()[0][0] == "error"


def test_errors():
    assert exception_name("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/") == \
        "ValidationException"
    assert exception_name("com.amazon.coral.service#AccessDeniedException") == "AccessDeniedException"
    assert json.loads(error_to_openai(b'{"Message": "denied"}', 403, "AccessDeniedException:x"))["error"] == \
        {"message": "denied", "type": "permission_error", "code": "AccessDeniedException", "param": None}
    assert json.loads(error_to_openai(b'{"message": "m", "__type": "x#ThrottlingException"}', 429))["error"]["type"] == \
        "rate_limit_error"
    assert error_to_openai(b"oops", 500) == b"oops"


def test_prepare_signs_the_final_bytes_and_keeps_the_encoded_path():
    t = translator(OPENAI_RESPONSES, BEDROCK_CONVERSE)
    assert [type(s).__name__ for s in t.steps] == ["Step", "Step"]

    class Target:
        signer = SigV4Signer("AKIA1", "secret", None, "us-east-1")

    urls, headers = translator(OPENAI_CHAT, BEDROCK_CONVERSE).prepare(
        ("https://bedrock-runtime.us-east-1.amazonaws.com/model/a.b-v1%3A0/converse",), {"x-request-id": "r"},
        b'{"messages": []}', {"stream": True}, Target())
    assert urls == (URL("https://bedrock-runtime.us-east-1.amazonaws.com/model/a.b-v1%3A0/converse-stream",
                        encoded=True),)
    assert urls[0].raw_path == "/model/a.b-v1%3A0/converse-stream"
    assert headers["accept"] == "application/vnd.amazon.eventstream"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA1/")
    assert "SignedHeaders=content-type;host;x-amz-date," in headers["Authorization"]
    assert stream_url("http://h/model/m/converse?x=1") == "http://h/model/m/converse-stream?x=1"
