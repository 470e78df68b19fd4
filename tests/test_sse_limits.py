"""An upstream SSE event that never ends is cut at MAX_EVENT_BYTES: the client gets a clean error
event and the end of its stream, and plano does not hold the endless event in memory."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from aiohttp import web

from gateway.upstream import UpstreamError
from gateway.wire.sse import MAX_EVENT_BYTES, EventAligner
from tests.support.gateway import Gateway, free_port


def test_the_aligner_refuses_an_event_past_its_limit_and_keeps_normal_events():
    aligner = EventAligner(limit=64)
    assert aligner.feed(b"data: 1\n\ndata: 2") == b"data: 1\n\n"
    assert aligner.feed(b"\n\n") == b"data: 2\n\n"
    with pytest.raises(UpstreamError) as err:
        for _ in range(10):
            aligner.feed(b"x" * 16)
    assert err.value.kind == "broken" and aligner.pending == b""
    # A big event that does end within the limit goes through whole.
    big = EventAligner(limit=1 << 20)
    event = b"data: " + b"y" * 500_000 + b"\n\n"
    assert big.feed(event[:200_000]) == b"" and big.feed(event[200_000:]) == event


class EndlessEvent:
    """A provider that answers a stream with one event that never ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sent = 0
        ready = threading.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"')
            piece = b"z" * 65536
            try:
                while self.sent < 4 * MAX_EVENT_BYTES:
                    await resp.write(piece)
                    self.sent += len(piece)
                await asyncio.sleep(3600)
            except (ConnectionError, asyncio.CancelledError):
                pass
            return resp

        def run() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/chat/completions", handler)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)


def test_an_endless_upstream_event_ends_the_stream_with_an_error(tmp_path):
    upstream = EndlessEvent()
    port = free_port()
    cfg = {"version": "v0.4.0",
           "model_providers": [{"model": "openai/m", "access_key": "sk-x", "default": True,
                                "base_url": f"http://127.0.0.1:{upstream.port}/v1"}],
           "listeners": [{"type": "model", "name": "llm", "port": port, "address": "127.0.0.1", "timeout": "60s"}]}
    with Gateway(cfg, tmp_path, env={"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}) as gw:

        async def scenario() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{gw.url()}/v1/chat/completions", timeout=aiohttp.ClientTimeout(total=60),
                                        json={"model": "m", "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]}) as resp:
                    return resp.status, await resp.read()

        status, body = asyncio.run(scenario())
    assert status == 200  # the headers went out before the event grew too big
    assert len(body) < 64 * 1024  # nothing of the endless event reached the client
    assert b"upstream_broken" in body and b"grew past" in body
    assert upstream.sent < 4 * MAX_EVENT_BYTES  # plano hung up instead of reading forever
