"""Anthropic Messages on the wire: request parsing, error envelope, SSE framing, assembly.

``POST /v1/messages`` (any query string, e.g. the SDK's ``?beta=true``, is ignored; the
``anthropic-version`` / ``anthropic-beta`` headers travel to an Anthropic upstream, and
``x-api-key`` is the client credential for ``passthrough_auth``). Errors use Anthropic's
envelope ``{"type": "error", "error": {"type", "message"}, "request_id"}``; a stream is
``event:`` + ``data:`` pairs (``message_start`` … ``message_stop``), and an in-stream
error is ``event: error`` (the Anthropic SDKs raise ``APIStatusError``).

``POST /v1/messages/count_tokens`` goes to an Anthropic upstream as it is; for any other
upstream :func:`estimate_input_tokens` answers: about four characters per token over
the system prompt, message text, tool calls and results and tool definitions, plus a
few tokens of framing per message and a flat 1,600 per image or document (Anthropic's
estimate for a ~1.2-megapixel image). It is an estimate of the order of magnitude — enough
for Claude Code's context bookkeeping — not the upstream tokenizer's count.
"""

from __future__ import annotations

import orjson

from gateway.config.providers import ANTHROPIC_MESSAGES
from gateway.wire.api import ClientAPI
from gateway.wire.errors import _ANTHROPIC_TYPES, GatewayError, anthropic_type, bad_request, json_object_body
from gateway.wire.sse import named_event

_TYPES = frozenset(_ANTHROPIC_TYPES.values())


def parse_messages_request(body: bytes, *, count_tokens: bool = False) -> dict:
    request = json_object_body(body)
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model: Input should be a valid string", param="model", code="invalid_type")
    messages = request.get("messages")
    if messages is None:
        raise bad_request("messages: Field required", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise bad_request("messages: Input should be a valid list", param="messages", code="invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"messages.{i}: Input should be a valid dictionary", param=f"messages.{i}",
                              code="invalid_type")
        if message.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: Input should be 'user' or 'assistant'", param=f"messages.{i}.role",
                              code="invalid_type")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise bad_request(f"messages.{i}.content: Input should be a valid string or list of content blocks",
                              param=f"messages.{i}.content", code="invalid_type")
    if not count_tokens:
        max_tokens = request.get("max_tokens")
        if max_tokens is None:
            raise bad_request("max_tokens: Field required", param="max_tokens", code="missing_required_parameter")
        if type(max_tokens) is not int or max_tokens < 1:
            raise bad_request("max_tokens: Input should be a positive integer", param="max_tokens", code="invalid_type")
    system = request.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise bad_request("system: Input should be a valid string or list of text blocks", param="system",
                          code="invalid_type")
    stream = request.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("stream: Input should be a valid boolean", param="stream", code="invalid_type")
    tools = request.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request("tools: Input should be a valid list", param="tools", code="invalid_type")
    return request


def message_as_sse(message: dict) -> bytes:
    """A whole ``message`` re-expressed as the Messages stream (an upstream that ignored ``stream``)."""
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 0}}
    out = [named_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message.get("content") or ()):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            first, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": block.get("text") or ""}
        elif kind == "tool_use":
            first = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            delta = {"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input") or {}).decode()}
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": "", "signature": ""}
            delta = {"type": "thinking_delta", "thinking": block.get("thinking") or ""}
        else:
            first, delta = block, None
        out.append(named_event("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": first}))
        if delta is not None:
            out.append(named_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": delta}))
        if kind == "thinking" and block.get("signature"):
            out.append(named_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "signature_delta",
                                                                     "signature": block["signature"]}}))
        out.append(named_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(named_event("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": message.get("stop_reason"),
                                                       "stop_sequence": message.get("stop_sequence")},
                                             "usage": {"output_tokens": usage.get("output_tokens", 0)}}))
    out.append(named_event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def _chars(value) -> tuple[int, int]:
    """(characters of text, number of images/documents) in a content value."""
    if isinstance(value, str):
        return len(value), 0
    chars = media = 0
    if isinstance(value, list):
        for block in value:
            if isinstance(block, str):
                chars += len(block)
            elif isinstance(block, dict):
                kind = block.get("type")
                if kind in ("image", "document"):
                    media += 1
                elif kind == "text":
                    chars += len(block.get("text") or "")
                elif kind == "thinking":
                    chars += len(block.get("thinking") or "")
                elif kind == "tool_use":
                    chars += len(block.get("name") or "") + len(orjson.dumps(block.get("input") or {}))
                elif kind == "tool_result":
                    c, m = _chars(block.get("content"))
                    chars += c
                    media += m
    return chars, media


def estimate_input_tokens(request: dict) -> int:
    """An estimate of a Messages request's input tokens (see the module docstring)."""
    chars, media = _chars(request.get("system"))
    messages = request.get("messages") or []
    for message in messages:
        if isinstance(message, dict):
            c, m = _chars(message.get("content"))
            chars += c
            media += m
    if request.get("tools"):
        chars += len(orjson.dumps(request["tools"]))
    return max(1, (chars + 3) // 4 + 3 * len(messages) + 1600 * media + (1 if request.get("system") else 0))


class Messages(ClientAPI):
    name = ANTHROPIC_MESSAGES
    path = "/v1/messages"
    label = "messages"

    def parse(self, body: bytes) -> dict:
        return parse_messages_request(body)

    def error_body(self, err: GatewayError, rid: str | None = None) -> bytes:
        return err.anthropic_body(rid)

    def native_error(self, parsed: dict) -> bool:
        return parsed.get("type") == "error" and isinstance(parsed.get("error"), dict)

    def error_event(self, message: str, type: str = "api_error", code: str | None = None) -> bytes:
        kind = type if type in _TYPES else ("timeout_error" if code == "upstream_timeout" else "api_error")
        return named_event("error", {"type": "error", "error": {"type": kind, "message": message}})

    def as_sse(self, answer: dict) -> bytes:
        return message_as_sse(answer)

    def event(self, name: str | None, payload: dict) -> bytes:
        return named_event(name or payload.get("type") or "message", payload)

    def messages(self, request: dict) -> list | None:
        messages = request.get("messages")
        return messages if isinstance(messages, list) else None


MESSAGES = Messages()

__all__ = ["MESSAGES", "anthropic_type", "estimate_input_tokens", "message_as_sse", "parse_messages_request"]
