"""A mock router model on 127.0.0.1 answering in the Plano-Orchestrator format, plus metrics feeds.

``POST …/chat/completions``: reads the routes (one JSON object per line inside ``<routes>``) and the
conversation (the JSON array inside ``<conversation>``) from the prompt, and answers a chat
completion whose content is ``{"route": [name]}`` — the first route one of whose keywords
(``keywords: {route name: [words]}``) occurs in the newest user message, else ``{"route": []}``.
``mode`` (or :meth:`script`, for the next calls) makes it fail instead: ``error`` (HTTP 500),
``hang`` (never answers), ``garbage`` (a completion whose content is not JSON).

``GET /pricing.json`` serves ``prices`` in models.dev's ``api.json`` shape (a cost source);
``GET /api/v1/query`` serves ``latencies`` as a Prometheus instant-query vector (a latency source).
Every call is recorded in ``requests`` (``routes_seen`` keeps the route names of each routing prompt).
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import threading
from typing import Any

from aiohttp import web

from tests.support.mock_openai_wire import MockServer

_ROUTES = re.compile(r"<routes>\n(.*?)\n</routes>", re.DOTALL)
_CONVERSATION = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.DOTALL)


class MockRouter(MockServer):
    name = "mock-router"

    def __init__(self, keywords: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.keywords = keywords or {}
        self.mode = "ok"
        self.modes: collections.deque[str] = collections.deque()
        self.routes_seen: list[list[str]] = []
        self.prices: dict[str, dict] = {}
        self.latencies: dict[str, float] = {}
        self._mode_lock = threading.Lock()

    def script(self, *modes: str) -> None:
        with self._mode_lock:
            self.modes.extend(modes)

    def reset(self) -> None:
        super().reset()
        with self._mode_lock:
            self.modes.clear()
        self.mode = "ok"
        self.routes_seen.clear()

    def routing_calls(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/chat/completions"))

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/pricing.json":
            return web.json_response(self.prices)
        if request.method == "GET" and request.path == "/api/v1/query":
            result = [{"metric": {"model": m}, "value": [0, str(v)]} for m, v in self.latencies.items()]
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})
        if not request.path.endswith("/chat/completions"):
            return web.json_response({"error": {"message": f"not found: {request.path}"}}, status=404)
        with self._mode_lock:
            mode = self.modes.popleft() if self.modes else self.mode
        if mode == "error":
            return web.json_response({"error": {"message": "router overloaded", "type": "server_error"}}, status=500)
        if mode == "hang":
            await asyncio.sleep(5)
        prompt = body["messages"][0]["content"]
        routes = [json.loads(line)["name"] for line in _ROUTES.search(prompt).group(1).splitlines() if line.strip()]
        self.routes_seen.append(routes)
        conversation = json.loads(_CONVERSATION.search(prompt).group(1))
        latest = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "").lower()
        chosen = [name for name in routes if any(k in latest for k in self.keywords.get(name, ()))][:1]
        content = "this is not json" if mode == "garbage" else json.dumps({"route": chosen})
        return web.json_response({
            "id": "chatcmpl-router", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55},
        })


def models_dev(prices: dict[str, tuple[float, float, float | None]]) -> dict:
    """``{"provider/model": (input, output, cache_read)}`` in models.dev's ``api.json`` shape."""
    out: dict[str, dict] = {}
    for key, (inp, outp, cached) in prices.items():
        provider, model = key.split("/", 1)
        cost = {"input": inp, "output": outp}
        if cached is not None:
            cost["cache_read"] = cached
        out.setdefault(provider, {"id": provider, "models": {}})["models"][model] = {"id": model, "cost": cost}
    return out


__all__ = ["MockRouter", "models_dev"]
