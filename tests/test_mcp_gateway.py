"""plano as an MCP gateway, over real sockets: an official ``mcp`` SDK client lists and calls an
agent listener's agent tools, its ``ask`` tool and the tools of two upstream MCP servers (built
with the SDK, one stateful and one stateless) in one session; denied tools are neither listed nor
callable; plain mock agents answer the agent tools."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

pytest.importorskip("mcp")

from tests.support.agent_mocks import MockTeam, chat_posts  # noqa: E402
from tests.support.gateway import Gateway, free_port  # noqa: E402
from tests.support.mock_llm import Reply  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcpgw")
    math = ServiceProcess("tests.support.mcp_server_tools", ["--kind", "math"], tmp, label="mcp-math")
    text = ServiceProcess("tests.support.mcp_server_tools", ["--kind", "text", "--stateless", "--json"], tmp,
                          label="mcp-text")
    math.launch(), text.launch()
    math.wait_healthy(), text.wait_healthy()
    team = MockTeam("weather", "flights", "orch").start()
    port, model_port, admin = free_port(), free_port(), free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "weather", "url": team["weather"].url}, {"id": "flights", "url": team["flights"].url}],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{team['orch'].url}/v1",
                             "default": True}],
        "admin": {"address": "127.0.0.1", "port": admin},
        "mcp_servers": [
            {"name": "math", "url": f"{math.url}/mcp", "deny": ["drop_*"]},
            {"name": "text", "url": f"{text.url}/mcp", "allow": ["upper", "reverse"]},
        ],
        "listeners": [
            {"type": "agent", "name": "travel", "port": port, "address": "127.0.0.1", "router": "embedded",
             "agents": [
                 {"id": "weather", "description": "Weather forecasts: rain, sun and temperature for any city."},
                 {"id": "flights", "description": "Flight schedules, departures and airline bookings."},
             ]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }
    gw = Gateway(config, tmp).start()
    yield {"gw": gw, "url": f"http://127.0.0.1:{port}/mcp", "admin": f"http://127.0.0.1:{admin}", "team": team, "math": math, "text": text}
    gw.stop()
    team.stop()
    math.stop()
    text.stop()


def called(service) -> list[str]:
    with urllib.request.urlopen(f"{service.url}/stats", timeout=5) as r:
        return json.loads(r.read())["called"]


async def _session(url: str, body):
    """A stateful session with the SDK's streamable-HTTP client (initialize → mcp-session-id)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={})
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


def _is_error(result) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))


def test_one_session_lists_and_calls_agents_and_two_upstream_servers(env):
    async def body(session):
        tools = await session.list_tools()
        names = [t.name for t in tools.tools]
        weather = await session.call_tool("weather", {"message": "Is it sunny in Paris?"})
        asked = await session.call_tool("ask", {"message": "Book me a flight and airline booking to Rome"})
        added = await session.call_tool("math__add", {"a": 2, "b": 40})
        upper = await session.call_tool("text__upper", {"text": "plano"})
        return names, tools, weather, asked, added, upper

    names, tools, weather, asked, added, upper = _run(_session(env["url"], body))
    assert names[:3] == ["weather", "flights", "ask"]
    assert set(names[3:]) == {"math__add", "math__multiply", "text__upper", "text__reverse"}
    by_name = {t.name: t for t in tools.tools}
    assert "Weather forecasts" in by_name["weather"].description
    assert by_name["math__add"].input_schema["required"] == ["a", "b"]
    assert _text(weather) == "echo: Is it sunny in Paris?" and not _is_error(weather)
    assert _text(asked) == "echo: Book me a flight and airline booking to Rome"
    flights = chat_posts(env["team"]["flights"])  # the router chose flights
    assert flights and flights[-1].body["messages"][-1]["content"] == "Book me a flight and airline booking to Rome"
    assert "42" in _text(added) and not _is_error(added)
    assert _text(upper) == "PLANO"
    assert called(env["math"]) == ["add"] and called(env["text"]) == ["upper"]
    weather_calls = chat_posts(env["team"]["weather"])
    assert weather_calls and weather_calls[-1].body["messages"][-1]["content"] == "Is it sunny in Paris?"


def test_denied_tools_are_neither_listed_nor_callable(env):
    async def body(session):
        names = [t.name for t in (await session.list_tools()).tools]
        outcomes = []
        for tool, args in (("math__drop_tables", {}), ("text__shout_secret", {}), ("nosuch__tool", {})):
            try:
                result = await session.call_tool(tool, args)
                outcomes.append(("result", _is_error(result), _text(result)))
            except Exception as exc:  # the SDK raises the MCP error the server answered with
                outcomes.append(("error", getattr(getattr(exc, "error", None), "code", None), str(exc)))
        missing = await session.call_tool("math__nosuch", {})  # the upstream's own answer, passed through
        return names, outcomes, missing

    names, outcomes, missing = _run(_session(env["url"], body))
    assert _is_error(missing) and "nosuch" in _text(missing)
    assert "math__drop_tables" not in names and "text__shout_secret" not in names
    for kind, code, message in outcomes:
        assert kind == "error" and code == -32602 and "Unknown tool" in message, (kind, code, message)
    assert "drop_tables" not in called(env["math"]) and "shout_secret" not in called(env["text"])


def test_sessionless_client_calls_an_agent_tool(env):
    """The SDK's high-level client (its default protocol era, no session) gets the same tools."""
    from mcp import Client

    async def go():
        async with Client(env["url"]) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("flights", {"message": "When does my flight leave?"})
            return names, result

    names, result = _run(go())
    assert {"weather", "flights", "ask", "math__add", "text__reverse"} <= set(names)
    assert _text(result) == "echo: When does my flight leave?"


def test_agent_failure_is_a_tool_error_and_bad_arguments_a_protocol_error(env):
    team = env["team"]

    async def body(session):
        team["weather"].enqueue(Reply("json", status=503, body={"error": {"message": "weather down"}}))
        failed = await session.call_tool("weather", {"message": "Is it sunny in Paris?"})
        try:
            await session.call_tool("weather", {"nope": 1})
            bad = None
        except Exception as exc:
            bad = exc
        return failed, bad

    failed, bad = _run(_session(env["url"], body))
    assert _is_error(failed) and "503" in _text(failed) and "weather" in _text(failed)
    assert bad is not None and getattr(getattr(bad, "error", None), "code", None) == -32602


def test_malformed_mcp_request_gets_a_jsonrpc_error(env):
    import httpx

    r = httpx.post(env["url"], content=b"{oops", timeout=10,
                   headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32700


def test_protocol_metrics_per_method(env):
    _run(_session(env["url"], lambda session: session.call_tool("math__multiply", {"a": 6, "b": 7})))
    import time

    wanted = ('plano_protocol_requests_total{direction="server",method="tools/call",outcome="ok",protocol="mcp"}',
              'plano_protocol_requests_total{direction="upstream",method="tools/call",outcome="ok",protocol="mcp"}',
              'plano_protocol_requests_total{direction="server",method="initialize",outcome="ok",protocol="mcp"}')
    text = ""
    for _ in range(50):  # metrics reach /metrics once per event-loop batch
        with urllib.request.urlopen(f"{env['admin']}/metrics", timeout=5) as r:
            text = r.read().decode()
        if all(w in text for w in wanted):
            break
        time.sleep(0.1)
    for w in wanted:
        assert w in text, w
