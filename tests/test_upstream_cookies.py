"""The shared outbound session keeps no cookies: what one upstream answer sets never reaches
the next request (which may be another client's)."""

import asyncio

from aiohttp import web

from gateway.upstream import Pool, Upstream, timeout_policy


def test_an_upstream_set_cookie_is_not_sent_on_later_requests():
    async def scenario():
        seen: list[str | None] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(request.headers.get("cookie"))
            resp = web.json_response({"ok": True})
            resp.set_cookie("session", "client-a-secret", path="/")
            return resp

        app = web.Application()
        app.router.add_post("/v1/x", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        upstream = Upstream()
        await upstream.start()
        try:
            # A host name: aiohttp's default jar ignores cookies of bare IP addresses, a real provider's are kept.
            pool = Pool("cookie-test", [f"http://localhost:{port}"])
            for _ in range(3):
                async with upstream.call(pool, None, headers={"content-type": "application/json"}, body=b"{}",
                                         timeout=timeout_policy(5.0, 5.0), path="/v1/x") as resp:
                    assert resp.status == 200
                    assert "session=client-a-secret" in resp.headers.get("set-cookie", "")
                    await resp.read()
        finally:
            await upstream.close()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 3
    assert seen == [None, None, None], seen
