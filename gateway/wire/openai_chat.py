"""OpenAI Chat Completions on the wire: request parsing, error envelope, SSE framing, assembly.

Requests are parsed once and checked cheaply; shared by the model listener and the
agent listener. Only what the gateway itself relies on is checked (object body,
``model`` string, non-empty ``messages`` of objects with a ``role``, boolean
``stream``); everything else is the provider's or agent's to judge, and passes
through untouched. Errors use OpenAI's ``{"error": {...}}`` envelope; a stream is
``data: {chat.completion.chunk}`` events ending with ``data: [DONE]``, and an
in-stream error is ``data: {"error": {...}}`` (the OpenAI SDKs raise ``APIError``).
"""

from __future__ import annotations

import orjson

from gateway.config.providers import OPENAI_CHAT
from gateway.wire.api import ClientAPI
from gateway.wire.errors import GatewayError, bad_request, json_object_body
from gateway.wire.sse import data_event, openai_error_event

DONE = b"data: [DONE]\n\n"


def parse_chat_request(body: bytes) -> dict:
    """Parse and check a chat-completions body at the edge (cheap structural checks only)."""
    request = json_object_body(body)
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string.", param="model", code="invalid_type")
    messages = request.get("messages")
    if messages is None:
        raise bad_request("'messages' is required.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"'messages[{i}]' must be an object.", param=f"messages[{i}]", code="invalid_type")
        if not isinstance(message.get("role"), str):
            raise bad_request(f"'messages[{i}].role' must be a string.", param=f"messages[{i}].role", code="invalid_type")
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream", code="invalid_type")
    return request


def message_text(message: dict) -> str:
    """Plain text of a message whose content is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def completion_as_sse(completion: dict) -> bytes:
    """A whole ``chat.completion`` re-expressed as ``chat.completion.chunk`` events + ``[DONE]``."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint") if k in completion}
    base["object"] = "chat.completion.chunk"
    events = []
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta = {"role": message.get("role", "assistant")}
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])
                                   if isinstance(call, dict)]
        index = choice.get("index", 0)
        events.append({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        events.append({**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    if completion.get("usage") is not None:
        events.append({**base, "choices": [], "usage": completion["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


class ChatCompletions(ClientAPI):
    name = OPENAI_CHAT
    path = "/v1/chat/completions"
    label = "chat completions"

    def parse(self, body: bytes) -> dict:
        return parse_chat_request(body)

    def error_body(self, err: GatewayError, rid: str | None = None) -> bytes:
        return err.openai_body()

    def error_event(self, message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
        return openai_error_event(message, type, code)

    def as_sse(self, answer: dict) -> bytes:
        return completion_as_sse(answer)

    def event(self, name: str | None, payload: dict) -> bytes:
        return data_event(payload)

    def stream_end(self) -> bytes:
        return DONE


CHAT = ChatCompletions()
