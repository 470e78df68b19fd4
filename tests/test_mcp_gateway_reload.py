"""A reloaded agent listener's MCP endpoint is closed, over real sockets: an official ``mcp`` SDK client
holds a stateful session (and plano holds its own session with an upstream MCP server) across
``plano reload``; once the old configuration's requests are drained, its session manager is stopped
(the session and its tasks end: the client's session is gone, the log says how many were closed) and
plano ends its upstream session with an HTTP DELETE, so nothing of the old configuration keeps
running. A new session on the new configuration works."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

pytest.importorskip("mcp")

from tests.support.agent_mocks import MockTeam  # noqa: E402
from tests.support.gateway import REPO, Gateway, free_port  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

DRAIN = 2.0


def _config(team, math_url: str, port: int, model_port: int, description: str) -> dict:
    return {
        "version": "v0.4.0",
        "agents": [{"id": "weather", "url": team["weather"].url}],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{team['orch'].url}/v1",
                             "default": True}],
        "mcp_servers": [{"name": "math", "url": f"{math_url}/mcp"}],
        "listeners": [
            {"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1", "router": "embedded",
             "agents": [{"id": "weather", "description": description}]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }


@pytest.fixture
def env(tmp_path):
    math = ServiceProcess("tests.support.mcp_server_tools", ["--kind", "math"], tmp_path, label="mcp-math")
    math.launch()
    math.wait_healthy()
    team = MockTeam("weather", "orch").start()
    port, model_port = free_port(), free_port()
    config = _config(team, math.url, port, model_port, "Weather forecasts for any city.")
    gw = Gateway(config, tmp_path, env={"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"},
                 extra_args=["--drain-timeout", str(DRAIN)]).start()
    yield {"gw": gw, "tmp": tmp_path, "url": f"http://127.0.0.1:{port}/mcp", "math": math,
           "next": _config(team, math.url, port, model_port, "Weather forecasts, now with pollen counts.")}
    gw.stop()
    team.stop()
    math.stop()


def _math_stats(math) -> dict:
    with urllib.request.urlopen(f"{math.url}/stats", timeout=5) as r:
        return json.loads(r.read())


def _reload(gw: Gateway) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "reload", "--pid", str(gw.proc.pid), "--timeout", "60"],
                          cwd=REPO, env=gw.env, capture_output=True, text=True, timeout=90)


def _wait_for(check, seconds: float = 20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_reload_closes_the_old_mcp_sessions(env):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    gw = env["gw"]

    async def scenario():
        http = create_mcp_http_client(headers={})
        try:
            async with streamable_http_client(env["url"], http_client=http) as streams, \
                    ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                before = {t.name: t.description for t in (await session.list_tools()).tools}
                added = await session.call_tool("math__add", {"a": 20, "b": 22})
                (env["tmp"] / "plano.yaml").write_text(yaml.safe_dump(env["next"]))
                done = await asyncio.to_thread(_reload, gw)
                closed = await asyncio.to_thread(_wait_for, lambda: "session(s) closed" in gw.log())
                try:  # the old session is gone: the new configuration does not know it
                    await asyncio.wait_for(session.call_tool("math__add", {"a": 1, "b": 1}), 10)
                    after = "answered"
                except Exception as exc:  # noqa: BLE001 - the SDK raises the server's refusal
                    after = f"{type(exc).__name__}: {exc}"
                return before, added, done, closed, after
        finally:
            await http.aclose()

    before, added, done, closed, after = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert "42" in "".join(getattr(c, "text", "") for c in added.content)
    assert before["weather"] == "Weather forecasts for any city."
    assert done.returncode == 0, done.stderr
    assert closed, gw.log()[-3000:]
    assert "session manager stopped (1 session(s) closed)" in gw.log()
    assert after != "answered"
    # plano ended its own session with the upstream server of the old configuration
    assert _wait_for(lambda: len(_math_stats(env["math"])["deleted"]) >= 1), _math_stats(env["math"])

    async def fresh():
        http = create_mcp_http_client(headers={})
        try:
            async with streamable_http_client(env["url"], http_client=http) as streams, \
                    ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                tools = {t.name: t.description for t in (await session.list_tools()).tools}
                return tools, await session.call_tool("math__multiply", {"a": 6, "b": 7})
        finally:
            await http.aclose()

    tools, product = asyncio.run(asyncio.wait_for(fresh(), 60))
    assert tools["weather"] == "Weather forecasts, now with pollen counts."  # the new configuration's
    assert "42" in "".join(getattr(c, "text", "") for c in product.content)
