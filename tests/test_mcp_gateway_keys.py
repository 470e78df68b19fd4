"""Per-key MCP tools, over real sockets: an agent listener with ``auth`` filters its ``/mcp`` tools by
the calling key's ``mcp_tools`` patterns (``tools/list`` shows only what the key may call; calling
anything else is the protocol's -32602 "Unknown tool", never reaching the agent or upstream server),
for config virtual keys, listener keys and keys created through the admin API (which validates the
field)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import httpx
import pytest

pytest.importorskip("mcp")

from tests.support.agent_mocks import MockTeam, chat_posts  # noqa: E402
from tests.support.gateway import Gateway, free_port  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

FULL_KEY = "sk-mcp-full-access-key-0001"
NARROW_KEY = "sk-mcp-narrow-key-0000002"
ADMIN_KEY = "adm-mcp-keys-test-key-0003"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcpkeys")
    math = ServiceProcess("tests.support.mcp_server_tools", ["--kind", "math"], tmp, label="mcp-math")
    math.launch()
    math.wait_healthy()
    team = MockTeam("weather", "flights", "orch").start()
    port, model_port, admin = free_port(), free_port(), free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "weather", "url": team["weather"].url}, {"id": "flights", "url": team["flights"].url}],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{team['orch'].url}/v1",
                             "default": True}],
        "admin": {"address": "127.0.0.1", "port": admin},
        "auth": {"admin_key": ADMIN_KEY, "keys_file": str(tmp / "keys.json"), "keys": [
            # weather, and the math server's add only: flights, ask and math__multiply are hidden
            {"id": "narrow", "key": NARROW_KEY, "mcp_tools": ["weather", "math__add"]},
        ]},
        "mcp_servers": [{"name": "math", "url": f"{math.url}/mcp", "deny": ["drop_*"]}],
        "listeners": [
            {"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1", "router": "embedded",
             "auth": {"api_keys": [FULL_KEY]},
             "agents": [
                 {"id": "weather", "description": "Weather forecasts: rain, sun and temperature for any city."},
                 {"id": "flights", "description": "Flight schedules, departures and airline bookings."},
             ]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }
    gw = Gateway(config, tmp, env={"PLANO_HOME": str(tmp / "home")}).start()
    yield {"gw": gw, "url": f"http://127.0.0.1:{port}/mcp", "admin": f"http://127.0.0.1:{admin}", "team": team,
           "math": math}
    gw.stop()
    team.stop()
    math.stop()


def called(service) -> list[str]:
    with urllib.request.urlopen(f"{service.url}/stats", timeout=5) as r:
        return json.loads(r.read())["called"]


async def _session(url: str, key: str, body):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={"authorization": f"Bearer {key}"})
    try:
        async with streamable_http_client(url, http_client=http) as streams, \
                ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await body(session)
    finally:
        await http.aclose()


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def _text(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _try(session, tool: str, args: dict):
    try:
        result = await session.call_tool(tool, args)
        return "result", _text(result)
    except Exception as exc:  # the SDK raises the MCP error the server answered with
        return "error", getattr(getattr(exc, "error", None), "code", None), str(exc)


def test_full_key_sees_every_tool(env):
    async def body(session):
        return [t.name for t in (await session.list_tools()).tools]

    names = _run(_session(env["url"], FULL_KEY, body))
    assert names[:3] == ["weather", "flights", "ask"]
    assert set(names[3:]) == {"math__add", "math__multiply"}


def test_narrow_key_lists_and_calls_only_its_tools(env):
    flights_before = len(chat_posts(env["team"]["flights"]))

    async def body(session):
        names = [t.name for t in (await session.list_tools()).tools]
        weather = await session.call_tool("weather", {"message": "Sunny in Oslo?"})
        added = await session.call_tool("math__add", {"a": 1, "b": 2})
        refused = [await _try(session, tool, args) for tool, args in (
            ("flights", {"message": "Book a flight"}), ("ask", {"message": "Book a flight to Rome"}),
            ("math__multiply", {"a": 6, "b": 7}))]
        return names, weather, added, refused

    names, weather, added, refused = _run(_session(env["url"], NARROW_KEY, body))
    assert names == ["weather", "math__add"]
    assert _text(weather) == "echo: Sunny in Oslo?"
    assert "3" in _text(added)
    for outcome in refused:
        assert outcome[0] == "error" and outcome[1] == -32602 and "Unknown tool" in outcome[2], outcome
    assert "multiply" not in called(env["math"])  # refused before any upstream call
    assert len(chat_posts(env["team"]["flights"])) == flights_before


def test_no_key_or_a_wrong_key_is_refused_at_the_edge(env):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream"}
    assert httpx.post(env["url"], json=init, headers=headers, timeout=10).status_code == 401
    r = httpx.post(env["url"], json=init, headers={**headers, "authorization": "Bearer sk-not-a-key-at-all-xx"},
                   timeout=10)
    assert r.status_code == 401


def test_admin_api_key_with_mcp_tools_is_validated_and_applied(env):
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    bad = httpx.post(f"{env['admin']}/admin/keys", headers=admin, timeout=10,
                     json={"id": "bad-tools", "mcp_tools": ["has space"]})
    assert bad.status_code == 400 and "mcp_tools" in bad.text
    bad = httpx.post(f"{env['admin']}/admin/keys", headers=admin, timeout=10, json={"id": "bad2", "mcp_tools": "x"})
    assert bad.status_code == 400
    made = httpx.post(f"{env['admin']}/admin/keys", headers=admin, timeout=10,
                      json={"id": "math-only", "mcp_tools": ["math__*"]})
    assert made.status_code in (200, 201), made.text
    assert made.json()["mcp_tools"] == ["math__*"]
    listed = {k["id"]: k for k in httpx.get(f"{env['admin']}/admin/keys", headers=admin, timeout=10).json()["data"]}
    assert listed["math-only"]["mcp_tools"] == ["math__*"]
    key = made.json()["key"]

    async def body(session):
        names = [t.name for t in (await session.list_tools()).tools]
        return names, await _try(session, "weather", {"message": "rain?"})

    names = None
    for _ in range(50):  # a new key reaches the workers within auth.sync_interval
        try:
            names, weather = _run(_session(env["url"], key, body))
            break
        except Exception:  # noqa: BLE001 - 401 until the key table is synced
            import time

            time.sleep(0.1)
    assert names is not None
    assert sorted(names) == ["math__add", "math__multiply"]
    assert weather[0] == "error" and weather[1] == -32602
