"""A mock Anthropic upstream on 127.0.0.1 speaking the Messages API's real wire format.

``POST /v1/messages`` answers a ``message`` object, or with ``stream: true`` the documented
event sequence: ``message_start`` → ``ping`` → per content block ``content_block_start`` /
``content_block_delta`` (``thinking_delta`` + ``signature_delta``, ``text_delta``,
``input_json_delta``) / ``content_block_stop`` → ``message_delta`` (stop reason, usage) →
``message_stop``. ``POST /v1/messages/count_tokens`` answers ``{"input_tokens": n}``.
Authentication and versioning as Anthropic checks them: no ``x-api-key`` → 401, no
``anthropic-version`` → 400, no ``max_tokens`` → 400, errors in Anthropic's envelope.
Thinking blocks are sent when the request enables ``thinking``. Scripted with
:class:`~tests.support.mock_openai_wire.Turn`; unscripted, it echoes the last user text.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.mock_openai_wire import MockServer, Turn, pieces


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message},
                              "request_id": "req_mock"}, status=status)


def last_user_text(body: Any) -> str:
    for message in reversed((body or {}).get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return " ".join(texts)
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            c = results[-1].get("content")
            return c if isinstance(c, str) else " ".join(x.get("text", "") for x in c or [] if isinstance(x, dict))
    return ""


class MockAnthropic(MockServer):
    name = "mock-anthropic"

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not request.headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "Request body must be JSON")
        if request.path == "/v1/messages/count_tokens":
            return web.json_response({"input_tokens": 1000 + len(json.dumps(body.get("messages"))) // 10})
        if request.path != "/v1/messages":
            return _error(404, "not_found_error", f"Not found: {request.path}")
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        turn = self.next_turn()
        if turn.status >= 400:
            if isinstance(turn.error, str):
                return web.Response(text=turn.error, status=turn.status, content_type="text/html")
            return web.json_response(turn.error or {"type": "error", "error": {"type": "overloaded_error",
                                                                               "message": "Overloaded"}},
                                     status=turn.status)
        if turn.kind == "garbage":
            return web.Response(body=b"<html>\x00 not json", status=200, content_type="application/json")
        thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
        reasoning = turn.reasoning or ("Let me think about this." if thinking else None)
        text = turn.text if turn.text is not None else (
            "" if turn.tool_calls else f"echo: {last_user_text(body)}")
        content: list[dict] = []
        if reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": turn.signature})
        if text:
            content.append({"type": "text", "text": text})
        for i, (name, args) in enumerate(turn.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_0{i}mock", "name": name, "input": args})
        stop = "tool_use" if turn.tool_calls else "end_turn"
        inp, out, cached = turn.usage
        usage = {"input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached,
                 "output_tokens": out}
        message = {"id": "msg_01mock", "type": "message", "role": "assistant", "model": body.get("model"),
                   "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": "req_mock"})

        def ev(kind: str, payload: dict) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()

        events = [ev("message_start", {"message": {**message, "content": [], "stop_reason": None,
                                                   "usage": {**usage, "output_tokens": 1}}}),
                  ev("ping", {})]
        for index, block in enumerate(content):
            kind = block["type"]
            if kind == "thinking":
                events.append(ev("content_block_start", {"index": index, "content_block":
                                                         {"type": "thinking", "thinking": "", "signature": ""}}))
                for piece in pieces(block["thinking"]):
                    events.append(ev("content_block_delta", {"index": index, "delta": {"type": "thinking_delta",
                                                                                       "thinking": piece}}))
                events.append(ev("content_block_delta", {"index": index, "delta": {"type": "signature_delta",
                                                                                   "signature": block["signature"]}}))
            elif kind == "text":
                events.append(ev("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
                for piece in pieces(block["text"]):
                    events.append(ev("content_block_delta", {"index": index, "delta": {"type": "text_delta",
                                                                                       "text": piece}}))
            else:
                events.append(ev("content_block_start", {"index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                for piece in pieces(json.dumps(block["input"])):
                    events.append(ev("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                                       "partial_json": piece}}))
            events.append(ev("content_block_stop", {"index": index}))
        events.append(ev("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                           "usage": {"output_tokens": out}}))
        events.append(ev("message_stop", {}))
        if turn.kind == "bad_event":
            events.insert(3, b"event: content_block_delta\ndata: {broken\n\n")
        return await self.sse(request, events, broken=turn.kind == "broken_sse")


__all__ = ["MockAnthropic", "Turn"]
