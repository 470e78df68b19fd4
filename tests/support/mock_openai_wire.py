"""A mock OpenAI upstream on 127.0.0.1 speaking OpenAI's real wire formats, for translation tests.

``POST …/chat/completions`` (JSON, or SSE ``chat.completion.chunk`` events ending in
``data: [DONE]``, with ``stream_options.include_usage`` honoured) and ``POST …/responses``
(the Responses object, or its SSE event sequence), shapes as in OpenAI's API reference.
Every request is recorded; the next answers can be scripted with :class:`Turn`: text,
tool calls, reasoning text (``reasoning_content``, as DeepSeek-style servers send it), an
error status, garbage, or a broken stream. Unscripted, it echoes the last user text.

:class:`MockServer` (a threaded aiohttp server with recorded requests and a script) is
shared with :mod:`tests.support.mock_anthropic`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Turn:
    text: str | None = None  # None: echo the last user text
    tool_calls: list[tuple[str, dict]] = field(default_factory=list)  # (name, arguments)
    reasoning: str | None = None
    signature: str = "sig-abc123"  # Anthropic thinking signature
    status: int = 200
    error: Any = None  # an error body (dict or str) sent with ``status``
    kind: str = "normal"  # normal | garbage | broken_sse | bad_event
    usage: tuple[int, int, int] = (11, 7, 0)  # input, output, cached input tokens


class MockServer:
    """A threaded aiohttp server on loopback: ``requests`` recorded, answers scripted with ``enqueue``."""

    name = "mock"

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._script: collections.deque[Turn] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Seen:
        return self.requests[-1]

    def enqueue(self, *turns: Turn) -> None:
        with self._lock:
            self._script.extend(turns)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def next_turn(self) -> Turn:
        with self._lock:
            return self._script.popleft() if self._script else Turn()

    def start(self):
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name=self.name)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        try:
            fut.result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(Seen(request.method, request.path, {k.lower(): v for k, v in request.headers.items()},
                                  body))
        return await self.handle(request, body)

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        raise NotImplementedError

    @staticmethod
    async def sse(request: web.Request, events: list[bytes], *, broken: bool = False) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for i, event in enumerate(events):
            if broken and i == len(events) // 2:
                request.transport.abort()
                return resp
            await resp.write(event)
        await resp.write_eof()
        return resp


def pieces(text: str, n: int = 3) -> list[str]:
    """``text`` cut into up to ``n`` consecutive pieces (streams send several deltas)."""
    if len(text) < n:
        return [text] if text else []
    step = max(1, len(text) // n)
    out = [text[i:i + step] for i in range(0, len(text), step)]
    return out


def chat_last_user_text(body: Any) -> str:
    messages = (body or {}).get("messages") or []
    if messages and messages[-1].get("role") == "tool":  # a tool result is what the model answers next
        return str(messages[-1].get("content"))
    for message in reversed((body or {}).get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            return str(content)
    return ""


def responses_last_user_text(body: Any) -> str:
    value = (body or {}).get("input")
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


class MockOpenAI(MockServer):
    name = "mock-openai-wire"

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"message": "You didn't provide an API key.", "type":
                                                "invalid_request_error", "param": None, "code": None}}, status=401)
        turn = self.next_turn()
        if turn.status >= 400:
            if isinstance(turn.error, str):
                return web.Response(text=turn.error, status=turn.status, content_type="text/html")
            return web.json_response(turn.error or {"error": {"message": "mock failure", "type": "server_error",
                                                              "param": None, "code": None}}, status=turn.status)
        if turn.kind == "garbage":
            return web.Response(body=b"<html>\x00 not json", status=200, content_type="application/json")
        if request.path.endswith("/chat/completions"):
            return await self._chat(request, body, turn)
        if request.path.endswith("/responses"):
            return await self._responses(request, body, turn)
        return web.json_response({"error": {"message": f"Unknown path {request.path}", "type": "invalid_request_error",
                                            "param": None, "code": "unknown_url"}}, status=404)

    # -- chat completions ------------------------------------------------------------------

    async def _chat(self, request, body, turn: Turn):
        model = body.get("model", "mock")
        text = turn.text if turn.text is not None else (
            "" if turn.tool_calls else f"echo: {chat_last_user_text(body)}")
        inp, out, cached = turn.usage
        usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out,
                 "prompt_tokens_details": {"cached_tokens": cached},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        calls = [{"id": f"call_{i}abc", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                 for i, (name, args) in enumerate(turn.tool_calls)]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            if turn.reasoning:
                message["reasoning_content"] = turn.reasoning
            return web.json_response({"id": "chatcmpl-mock1", "object": "chat.completion", "created": 1700000000,
                                      "model": model, "system_fingerprint": "fp_mock",
                                      "choices": [{"index": 0, "message": message, "logprobs": None,
                                                   "finish_reason": finish}], "usage": usage})

        def chunk(delta, finish_reason=None, usage_=None, choices=True):
            payload = {"id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": 1700000000,
                       "model": model, "system_fingerprint": "fp_mock",
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
                       if choices else []}
            if usage_ is not None:
                payload["usage"] = usage_
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        for piece in pieces(turn.reasoning or ""):
            events.append(chunk({"reasoning_content": piece}))
        for piece in pieces(text):
            events.append(chunk({"content": piece}))
        for i, call in enumerate(calls):
            events.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            for piece in pieces(call["function"]["arguments"]):
                events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk(None, usage_=usage, choices=False))
        if turn.kind == "bad_event":
            events.insert(2, b"data: {not json\n\n")
        events.append(b"data: [DONE]\n\n")
        return await self.sse(request, events, broken=turn.kind == "broken_sse")

    # -- responses (native) ----------------------------------------------------------------------

    async def _responses(self, request, body, turn: Turn):
        model = body.get("model", "mock")
        text = turn.text if turn.text is not None else (
            "" if turn.tool_calls else f"echo: {responses_last_user_text(body)}")
        output: list[dict] = []
        if text:
            output.append({"type": "message", "id": "msg_mock1", "status": "completed", "role": "assistant",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]})
        for i, (name, args) in enumerate(turn.tool_calls):
            output.append({"type": "function_call", "id": f"fc_mock{i}", "call_id": f"call_{i}abc", "name": name,
                           "arguments": json.dumps(args), "status": "completed"})
        inp, out, cached = turn.usage
        response = {"id": "resp_mocknative1", "object": "response", "created_at": 1700000000, "status": "completed",
                    "error": None, "incomplete_details": None, "model": model, "output": output,
                    "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
                    "tool_choice": "auto", "tools": body.get("tools") or [], "store": True,
                    "usage": {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
                              "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": inp + out}}
        if not body.get("stream"):
            return web.json_response(response)
        seq = iter(range(1000))

        def ev(kind, **payload):
            payload = {"type": kind, "sequence_number": next(seq), **payload}
            return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

        shell = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [ev("response.created", response=shell), ev("response.in_progress", response=shell)]
        for index, item in enumerate(output):
            if item["type"] == "message":
                events.append(ev("response.output_item.added", output_index=index,
                                 item={**item, "status": "in_progress", "content": []}))
                events.append(ev("response.content_part.added", item_id=item["id"], output_index=index,
                                 content_index=0, part={"type": "output_text", "text": "", "annotations": []}))
                for piece in pieces(text):
                    events.append(ev("response.output_text.delta", item_id=item["id"], output_index=index,
                                     content_index=0, delta=piece))
                events.append(ev("response.output_text.done", item_id=item["id"], output_index=index,
                                 content_index=0, text=text))
            else:
                events.append(ev("response.output_item.added", output_index=index,
                                 item={**item, "arguments": "", "status": "in_progress"}))
                events.append(ev("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                 delta=item["arguments"]))
                events.append(ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                 arguments=item["arguments"]))
            events.append(ev("response.output_item.done", output_index=index, item=item))
        events.append(ev("response.completed", response=response))
        return await self.sse(request, events, broken=turn.kind == "broken_sse")
