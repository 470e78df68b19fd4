"""A real HTTP filter service on loopback for filter-chain tests (aiohttp, own thread).

The first path segment picks the behaviour, the rest is the API path the gateway
appends (``/rewrite/v1/chat/completions``):

``echo``        answer the body unchanged
``rewrite``     every string: "colour" -> "color"; model "cheap" -> "openai/gpt-4o-mini"
``guard``       400 (Plano's demo contract) when any string mentions "hack", else echo
``redact``      every string: ``sk-live-…`` keys -> "[REDACTED]"
``tag/<name>``  append " [<name>]" to the last user message
``hang``        never answer
``garbage``     200 with a body that is not JSON
``wrongshape``  200 with JSON that is not a chat request
``error500``    500
Every call is recorded (behaviour, path, headers, body).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SECRET = re.compile(r"sk-live-[A-Za-z0-9]{8,}")


@dataclass
class Call:
    behaviour: str
    path: str
    headers: dict[str, str]
    body: Any


def map_strings(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    return value


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    return []


class HttpFilterMock:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls_to(self, behaviour: str) -> list[Call]:
        return [c for c in self.calls if c.behaviour == behaviour]

    def reset(self) -> None:
        self.calls.clear()

    def start(self) -> HttpFilterMock:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="http-filter-mock")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()
            me = asyncio.current_task()
            for task in asyncio.all_tasks():  # handlers still hanging
                if task is not me:
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        behaviour = parts[0]
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        recorded = json.loads(raw) if body is not None else None  # a copy: behaviours may edit ``body``
        self.calls.append(Call(behaviour, request.path, {k.lower(): v for k, v in request.headers.items()}, recorded))
        if behaviour == "echo":
            return web.json_response(body)
        if behaviour == "rewrite":
            out = map_strings(body, lambda s: s.replace("colour", "color"))
            if isinstance(out, dict) and out.get("model") == "cheap":
                out["model"] = "openai/gpt-4o-mini"
            return web.json_response(out)
        if behaviour == "guard":
            if any("hack" in s for s in strings(body)):
                return web.json_response({"detail": {"error": "content_blocked", "message":
                                          "Request blocked by content safety filter (matched: 'hack')."}}, status=400)
            return web.json_response(body)
        if behaviour == "redact":
            return web.json_response(map_strings(body, lambda s: SECRET.sub("[REDACTED]", s)))
        if behaviour == "tag":
            name = parts[1]
            for message in reversed(body["messages"]):
                if message.get("role") == "user":
                    message["content"] = f"{message['content']} [{name}]"
                    break
            return web.json_response(body)
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "garbage":
            return web.Response(body=b"<html>definitely not json", content_type="application/json")
        if behaviour == "wrongshape":
            return web.json_response({"messages": "not a list"})
        if behaviour == "error500":
            return web.json_response({"error": {"message": "filter exploded"}}, status=500)
        return web.Response(status=404, text=f"no behaviour {behaviour}")
