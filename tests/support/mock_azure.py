"""A mock Azure OpenAI resource on 127.0.0.1: deployments, ``api-version``, the ``api-key`` header.

Shapes from the Azure OpenAI REST reference (data plane, chat completions):

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=…`` — the OpenAI Chat
  Completions wire format (JSON and SSE, from :class:`MockOpenAI`), plus Azure's own additions:
  ``prompt_filter_results`` / ``content_filter_results``, and a stream whose first event has
  ``choices: []`` with the prompt filter results (as Azure sends it);
- ``api-key: <key>`` header (or ``Authorization: Bearer`` for Entra ID tokens): missing or wrong →
  401 ``{"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong
  API endpoint. …"}}``;
- no ``api-version`` → 404 ``{"error": {"code": "404", "message": "Resource not found"}}``; an
  unknown deployment → 404 ``DeploymentNotFound``;
- errors in Azure's envelope ``{"error": {"code", "message", "param", "type", "innererror"?}}``.

``deployments``: the names that exist. Requests are recorded with their query string
(``Seen.path`` is the path; ``queries`` the query dicts).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.mock_openai_wire import MockOpenAI, Turn

_FILTER = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
           "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}


class MockAzure(MockOpenAI):
    name = "mock-azure"

    def __init__(self, *, keys=("az-key",), deployments=("gpt-4o-deploy",)) -> None:
        super().__init__()
        self.keys = set(keys)
        self.deployments = set(deployments)
        self.queries: list[dict[str, str]] = []

    def reset(self) -> None:
        super().reset()
        self.queries.clear()

    async def handle(self, request: web.Request, body: Any) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        key = request.headers.get("api-key")
        if key not in self.keys and not request.headers.get("authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                                "key or wrong API endpoint. Make sure to provide a valid key for an "
                                                "active subscription and use a correct regional API endpoint for "
                                                "your resource."}}, status=401)
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        parts = request.path.split("/")
        if len(parts) != 6 or parts[1:3] != ["openai", "deployments"] or "/".join(parts[4:]) != "chat/completions":
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if parts[3] not in self.deployments:
            return web.json_response({"error": {"code": "DeploymentNotFound", "message": "The API deployment for "
                                                "this resource does not exist. If you created the deployment within "
                                                "the last 5 minutes, please wait a moment and try again."}}, status=404)
        turn = self.next_turn()
        if turn.status >= 400:
            if isinstance(turn.error, str):
                return web.Response(text=turn.error, status=turn.status, content_type="text/html")
            return web.json_response(turn.error or {"error": {"code": "429", "message": "Requests to the ChatCompletions_"
                                                              "Create Operation have exceeded call rate limit."}},
                                     status=turn.status)
        if turn.kind == "garbage":
            return web.Response(body=b"<html>\x00 not json", status=200, content_type="application/json")
        if not body.get("stream"):
            resp = await self._chat(request, body, turn)
            data = json.loads(resp.body)
            data["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER}]
            for choice in data["choices"]:
                choice["content_filter_results"] = _FILTER
            return web.json_response(data, status=resp.status)
        return await self._chat(request, body, turn)

    async def sse(self, request: web.Request, events: list[bytes], *, broken: bool = False) -> web.StreamResponse:
        """Azure's stream: a first event with only the prompt filter results (``choices: []``, empty id)."""
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER}]}
        return await MockOpenAI.sse(request, [b"data: " + json.dumps(first).encode() + b"\n\n", *events], broken=broken)


__all__ = ["MockAzure", "Turn"]
