"""Mock upstreams on 127.0.0.1 for providers plano reaches only through litellm (the extra).

Shapes from the providers' API references, not from litellm (so a litellm transformation that
drifts from the real wire format fails the tests):

- :class:`MockCohere` — Cohere v2 ``POST /v2/chat``: request ``{model, messages, max_tokens, …}``
  with ``Authorization: Bearer``; answer ``{id, finish_reason, message: {role, content: [{type:
  "text", text}] | tool_plan + tool_calls}, usage: {billed_units, tokens: {input_tokens,
  output_tokens}}}``; with ``stream: true`` SSE events ``message-start``, ``content-start``,
  ``content-delta`` (``delta.message.content.text``), ``content-end``, ``message-end``
  (``delta.finish_reason``, ``delta.usage``); errors ``{"message": …}`` (401 on a bad key).
- :class:`MockOllama` — Ollama's native ``POST /api/chat`` (not its OpenAI-compatible ``/v1``):
  ``{model, messages, stream, options}`` → ``{model, created_at, message: {role, content},
  done: true, done_reason, prompt_eval_count, eval_count}``.

Scripted with :class:`~tests.support.mock_openai_wire.Turn` (text, tool calls, error status);
unscripted they echo the last user text.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.mock_openai_wire import MockServer, Turn, chat_last_user_text, pieces

COHERE_KEY = "co-key"


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class MockCohere(MockServer):
    name = "mock-cohere"

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if request.path != "/v2/chat" or request.method != "POST":
            return web.json_response({"message": f"no route {request.method} {request.path}"}, status=404)
        if request.headers.get("Authorization") != f"Bearer {COHERE_KEY}":
            return web.json_response({"message": "invalid api token"}, status=401)
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return web.json_response({"message": "invalid request: model and messages are required"}, status=400)
        turn: Turn = self.next_turn()
        if turn.status != 200:
            error = turn.error if turn.error is not None else {"message": "scripted failure"}
            return web.json_response(error, status=turn.status)
        text = turn.text if turn.text is not None else chat_last_user_text(body)
        tokens = {"input_tokens": turn.usage[0], "output_tokens": turn.usage[1]}
        usage = {"billed_units": tokens, "tokens": tokens}
        if body.get("stream"):
            events = [_sse("message-start", {"id": "co-1", "type": "message-start", "delta": {"message": {
                "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
                _sse("content-start", {"type": "content-start", "index": 0,
                                       "delta": {"message": {"content": {"type": "text", "text": ""}}}})]
            events += [_sse("content-delta", {"type": "content-delta", "index": 0,
                                              "delta": {"message": {"content": {"text": piece}}}})
                       for piece in pieces(text)]
            events.append(_sse("content-end", {"type": "content-end", "index": 0}))
            events.append(_sse("message-end", {"type": "message-end",
                                               "delta": {"finish_reason": "COMPLETE", "usage": usage}}))
            return await self.sse(request, events)
        if turn.tool_calls:
            message = {"role": "assistant", "tool_plan": "I will call the tool.",
                       "tool_calls": [{"id": f"call_{i}", "type": "function",
                                       "function": {"name": name, "arguments": json.dumps(args)}}
                                      for i, (name, args) in enumerate(turn.tool_calls)]}
            finish = "TOOL_CALL"
        else:
            message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
            finish = "COMPLETE"
        return web.json_response({"id": "co-1", "finish_reason": finish, "message": message, "usage": usage})


class MockOllama(MockServer):
    name = "mock-ollama"

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if request.path != "/api/chat" or request.method != "POST":
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        if not isinstance(body, dict) or not body.get("model"):
            return web.json_response({"error": "model is required"}, status=400)
        turn: Turn = self.next_turn()
        if turn.status != 200:
            return web.json_response(turn.error or {"error": "scripted failure"}, status=turn.status)
        text = turn.text if turn.text is not None else chat_last_user_text(body)
        return web.json_response({"model": body["model"], "created_at": "2026-01-01T00:00:00Z",
                                  "message": {"role": "assistant", "content": text}, "done": True,
                                  "done_reason": "stop", "prompt_eval_count": turn.usage[0],
                                  "eval_count": turn.usage[1]})
