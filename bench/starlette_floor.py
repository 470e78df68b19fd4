"""Bench floor variant: the minimal forwarding proxy written as a Starlette app.

Same hot path as ../shared/bench/mini_proxy.py (read body, orjson parse, set the model,
re-serialize, POST upstream through one shared aiohttp session, return the bytes), but routed
through Starlette's Request/Response objects, so the difference between this row and the mini
proxy row is what the framework layer costs per request. Unlike mini_proxy it also passes SSE
through chunk by chunk (StreamingResponse), so it is a real streaming floor.

Run: UPSTREAM=http://127.0.0.1:18080/v1/chat/completions \
     uvicorn starlette_floor:app --app-dir bench --port 18082 --loop uvloop --http httptools
"""

from __future__ import annotations

import contextlib
import os

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

UP = os.environ.get("UPSTREAM", "http://127.0.0.1:18080/v1/chat/completions")
UP_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-mock"}
state: dict = {}


@contextlib.asynccontextmanager
async def lifespan(_app):
    state["c"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, limit_per_host=200),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    try:
        yield
    finally:
        await state["c"].close()


async def chat(request: Request) -> Response:
    req = orjson.loads(await request.body())
    req["model"] = "mock-model"
    out = orjson.dumps(req)
    r = await state["c"].post(UP, data=out, headers=UP_HEADERS)
    ctype = r.headers.get("content-type", "application/json")
    if ctype.startswith("text/event-stream"):

        async def relay():
            try:
                async for chunk in r.content.iter_any():
                    yield chunk
            finally:
                r.release()

        return StreamingResponse(relay(), status_code=r.status, media_type="text/event-stream")
    try:
        data = await r.read()
    finally:
        r.release()
    return Response(data, status_code=r.status, media_type="application/json")


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)
