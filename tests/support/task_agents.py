"""Scripted agents and a signature-checking webhook receiver on loopback, for the tasks tests.

:class:`AgentFarm` serves several agents (one port each, OpenAI chat completions) from one
aiohttp loop in a background thread. Each agent answers from a behaviour (a function of the
call) and every call is recorded with its start and end time, the task/step headers and the
messages it got — enough to check concurrency, ordering, hand-offs and that no step ran twice
at once.

:class:`WebhookReceiver` verifies ``X-Plano-Signature`` / ``X-Ploton-Signature`` and the
timestamped ``X-Plano-Signature-V1`` of every delivery, can refuse the first N attempts (503),
and records what it got.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Call:
    agent: str
    task: str | None
    step: str | None
    attempt: str | None
    messages: list
    started: float
    ended: float = 0.0
    status: int = 200


@dataclass
class Behaviour:
    """What an agent answers: ``text`` (``{request}`` is replaced by the last user message), after
    ``delay`` seconds; ``fail`` calls answer ``status`` with ``error`` first (counted per agent, or
    per task when ``per_task``); ``hold`` waits for an event before answering."""

    text: str = "{agent} did: {request}"
    delay: float = 0.0
    fail: int = 0
    status: int = 503
    error: str = "service unavailable"
    per_task: bool = False
    hold: threading.Event | None = None
    until: str | None = None  # fail (as above) until this agent has been called for the same task
    before: str | None = None  # with ``until``: answer this (200) instead of failing
    reply: Callable[[list], str | None] | None = None  # the answer from the messages (None: ``text``)
    failed: dict = field(default_factory=dict)


class AgentFarm:
    def __init__(self, *names: str) -> None:
        self.names = names
        self.behaviour: dict[str, Behaviour] = {n: Behaviour() for n in names}
        self.calls: list[Call] = []
        self.ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: list = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def set(self, name: str, **kw) -> Behaviour:
        self.behaviour[name] = Behaviour(**kw)
        return self.behaviour[name]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.behaviour = {n: Behaviour() for n in self.names}

    def calls_of(self, name: str, task: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.agent == name and (task is None or c.task == task)]

    def start(self) -> "AgentFarm":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="agent-farm").start()
        ready.wait(10)
        return self

    async def _start(self) -> None:
        for name in self.names:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handler(name))
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.ports[name] = site._server.sockets[0].getsockname()[1]
            self._runners.append(runner)

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for r in self._runners:
                await r.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _handler(self, name: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method == "GET":
                return web.json_response({"status": "ok"})
            body = await request.json()
            messages = body.get("messages", [])
            call = Call(name, request.headers.get("x-plano-task-id"), request.headers.get("x-plano-task-step"),
                        request.headers.get("x-plano-task-attempt"), messages, time.monotonic())
            with self._lock:
                self.calls.append(call)
                b = self.behaviour[name]
                key = call.task if b.per_task else "*"
                failing = b.failed.get(key, 0) < b.fail
                if b.until is not None:
                    failing = not any(c.agent == b.until and c.task == call.task and c.status == 200
                                      for c in self.calls)
                if failing:
                    b.failed[key] = b.failed.get(key, 0) + 1
            try:
                if b.delay:
                    await asyncio.sleep(b.delay)
                if b.hold is not None:
                    while not b.hold.is_set():
                        await asyncio.sleep(0.01)
                if failing and b.before is not None:
                    failing, text_now = False, b.before
                else:
                    text_now = None
                if failing:
                    call.status = b.status
                    return web.json_response({"error": {"message": b.error, "type": "agent_error"}},
                                             status=b.status)
                request_text = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
                scripted = b.reply(messages) if b.reply is not None and text_now is None else None
                text = (text_now or scripted or b.text).replace("{agent}", name).replace("{request}",
                                                                                     str(request_text))
                return web.json_response({
                    "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}]})
            finally:
                call.ended = time.monotonic()

        return handle


def verify(secret: str, body: bytes, headers: dict) -> bool:
    """The checks a webhook consumer makes (both signature forms)."""
    plain = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(headers.get("x-plano-signature", ""), plain):
        return False
    if not hmac.compare_digest(headers.get("x-ploton-signature", ""), plain):
        return False
    parts = dict(p.split("=", 1) for p in headers.get("x-plano-signature-v1", "").split(",") if "=" in p)
    ts = parts.get("t", "")
    if ts != headers.get("x-plano-timestamp") or abs(time.time() - int(ts or 0)) > 300:
        return False
    v1 = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts.get("v1", ""), v1)


@dataclass
class Delivery:
    id: str
    event: str
    body: dict
    verified: bool
    attempt: str | None
    at: float


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.deliveries: list[Delivery] = []  # accepted (2xx) ones
        self.attempts: list[Delivery] = []  # every request
        self.refuse = 0  # answer 503 to this many requests (of ``refuse_event``, if set) first
        self.refuse_event: str | None = None
        self.port = 0
        self._lock = threading.Lock()
        self._loop = None
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/plano"

    def start(self) -> "WebhookReceiver":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="webhook-receiver").start()
        ready.wait(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.attempts.clear()
            self.refuse = 0
            self.refuse_event = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        d = Delivery(headers.get("x-plano-delivery-id", ""), headers.get("x-plano-event", ""), json.loads(raw),
                     verify(self.secret, raw, headers), headers.get("x-plano-delivery-attempt"), time.monotonic())
        with self._lock:
            self.attempts.append(d)
            if self.refuse > 0 and self.refuse_event in (None, d.event):
                self.refuse -= 1
                return web.json_response({"error": "down"}, status=503)
            self.deliveries.append(d)
        return web.json_response({"ok": True})

    def for_task(self, task_id: str, event: str | None = None, every: bool = False) -> list[Delivery]:
        """Accepted deliveries for a task (``every``: all attempts, refused ones included)."""
        with self._lock:
            source = self.attempts if every else self.deliveries
            return [d for d in source if d.body.get("task_id") == task_id and (event is None or d.event == event)]
