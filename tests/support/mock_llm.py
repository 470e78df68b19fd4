"""A scriptable mock of an OpenAI-compatible provider, on 127.0.0.1, for tests.

It speaks the real wire format (JSON chat completions, SSE chunks ending in
``data: [DONE]``), records every request it receives, and can be told how to
answer the next requests: JSON, SSE (optionally slow), an error status, garbage,
a connection reset before or during the response, or a hang.

Runs an aiohttp server on its own event loop in a background thread so tests can
drive the gateway with blocking SDK clients.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Reply:
    kind: str = "echo"  # echo | json | sse | error | garbage | reset | reset_mid_stream | hang
    status: int = 200
    body: Any = None
    content: str | None = None
    tokens: list[str] = field(default_factory=list)
    delay: float = 0.0
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    gate: threading.Event | None = None  # sse: wait for this before the 2nd chunk


def completion(model: str, content: str, *, tool_calls=None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    payload: dict[str, Any] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def last_user_text(body: Any) -> str:
    try:
        for message in reversed(body.get("messages", [])):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content)
    except AttributeError:
        pass
    return ""


class MockLLM:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.events: list[tuple[str, float]] = []  # (event, monotonic time) for ordering checks
        self._script: collections.deque[Reply] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._lock = threading.Lock()

    # -- control ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.events.clear()

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def start(self) -> "MockLLM":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="mock-llm")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        async def shutdown() -> None:
            await self._runner.cleanup()
            me = asyncio.current_task()
            for task in asyncio.all_tasks():
                if task is not me:
                    task.cancel()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        try:
            fut.result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    # -- serving ---------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            Recorded(request.method, request.path, request.query_string, {k.lower(): v for k, v in request.headers.items()}, body, raw)
        )
        if request.path.endswith("/models") and request.method == "GET":
            return web.json_response({"object": "list", "data": [{"id": "mock-model", "object": "model"}]})
        with self._lock:
            reply = self._script.popleft() if self._script else Reply()
        model = body.get("model", "mock") if isinstance(body, dict) else "mock"
        stream = isinstance(body, dict) and body.get("stream") is True
        if reply.delay and reply.kind not in ("sse", "reset_mid_stream"):
            await asyncio.sleep(reply.delay)
        kind = reply.kind
        if kind == "echo":
            text = f"echo: {last_user_text(body)}"
            if stream:
                words = text.split(" ")
                kind, reply = "sse", Reply(tokens=[w if i == 0 else " " + w for i, w in enumerate(words)])
            else:
                return web.json_response(completion(model, text), headers=reply.headers)
        if kind == "json":
            payload = reply.body if reply.body is not None else completion(model, reply.content or "ok")
            return web.json_response(payload, status=reply.status, headers=reply.headers)
        if kind == "error":
            text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            return web.Response(text=text, status=reply.status, content_type=reply.content_type or "application/json", headers=reply.headers)
        if kind == "garbage":
            return web.Response(body=b"\x00\x01<html>not json", status=reply.status, content_type=reply.content_type or "application/json")
        if kind == "reset":
            request.transport.close()
            return web.Response(status=500)
        if kind == "hang":
            await asyncio.sleep(3600)
        if kind in ("sse", "reset_mid_stream"):
            return await self._sse(request, model, reply, reset=kind == "reset_mid_stream")
        raise AssertionError(f"unknown reply kind {kind}")

    async def _sse(self, request: web.Request, model: str, reply: Reply, reset: bool) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", **reply.headers})
        await resp.prepare(request)
        tokens = reply.tokens or ["Hello", " there"]
        for i, token in enumerate(tokens):
            if i and reply.delay:
                await asyncio.sleep(reply.delay)
            if i == 1 and reply.gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, reply.gate.wait, 10)
            delta = {"role": "assistant", "content": token} if i == 0 else {"content": token}
            await resp.write(chunk(model, delta))
            self.events.append((f"sent:{i}", time.monotonic()))
        if reset:
            request.transport.abort()
            return resp
        await resp.write(chunk(model, {}, "stop", {"prompt_tokens": 5, "completion_tokens": len(tokens), "total_tokens": 5 + len(tokens)}))
        await resp.write(b"data: [DONE]\n\n")
        self.events.append(("done", time.monotonic()))
        await resp.write_eof()
        return resp
