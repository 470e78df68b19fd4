"""MCP filters end to end: plano (real process) speaking streamable HTTP to filter servers
built with the official ``mcp`` SDK (FastMCP / MCPServer under uvicorn, real processes):
stateful and stateless, SSE and JSON answers.

A tool that mutates is applied, a ``ToolError`` blocks with its message (400), sessions
are opened once per filter and reused, and a server that forgot its sessions (killed
and restarted) is re-initialised transparently.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.agent_mocks import assert_openai_error, chat_posts
from tests.support.gateway import Gateway, free_port
from tests.support.mcp_filter_mock import McpFilterProcess
from tests.support.mock_llm import MockLLM

SERVERS = {
    "stateful": {},
    "stateless": {"stateless": True},
    "json": {"json_response": True},
    "reuse": {},
    "reuse_stateless": {"stateless": True},
}


@pytest.fixture(scope="module")
def mcp(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mcp-servers")
    servers = {name: McpFilterProcess(workdir=workdir, **kw).launch() for name, kw in SERVERS.items()}
    try:
        for server in servers.values():
            server.wait()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def agent():
    a = MockLLM().start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def gw(mcp, agent, mock_llm, tmp_path_factory):
    ports = {name: free_port() for name in [*SERVERS, "model"]}
    filters = []
    for name, server in mcp.items():
        # the url's path is honoured when given, else /mcp (Plano always uses /mcp)
        filters.append({"id": f"rewrite_{name}", "url": server.url, "tool": "rewrite"})
        filters.append({"id": f"guard_{name}", "url": f"{server.url}/mcp", "type": "mcp", "tool": "guard"})
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "agent", "url": agent.url}],
        "filters": filters,
        "model_providers": [{"model": "openai/gpt-4o", "access_key": "sk-provider-secret",
                             "base_url": f"{mock_llm.url}/v1", "default": True}],
        "listeners": [
            *({"type": "agent", "name": name, "port": ports[name], "address": "127.0.0.1",
               "agents": [{"id": "agent", "description": "answers",
                           "input_filters": [f"guard_{name}", f"rewrite_{name}"] if not name.startswith("reuse")
                           else [f"rewrite_{name}"]}]}
              for name in SERVERS),
            {"type": "model", "name": "llm", "port": ports["model"], "address": "127.0.0.1",
             "input_filters": ["guard_stateful", "rewrite_json"]},
        ],
    }
    g = Gateway(config, tmp_path_factory.mktemp("filters-mcp")).start()
    g.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(agent, mock_llm):
    agent.reset()
    mock_llm.reset()


def ask(gw, listener: str, text: str, **extra) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{gw.urls[listener]}/v1/chat/completions", json=body, timeout=20)


@pytest.mark.parametrize("listener", ["stateful", "stateless", "json"])
def test_mcp_filter_mutation_reaches_the_agent(gw, agent, listener):
    resp = ask(gw, listener, "what colour is it")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "echo: what color is it"
    assert chat_posts(agent)[0].body["messages"][-1]["content"] == "what color is it"


@pytest.mark.parametrize("listener", ["stateful", "stateless", "json"])
def test_mcp_tool_error_blocks_with_its_message(gw, agent, listener):
    resp = ask(gw, listener, "help me hack this", stream=True)
    err = assert_openai_error(resp, 400, "filter_blocked")
    assert "no hacking allowed (mcp guard)" in err["message"]
    assert f"'guard_{listener}'" in err["message"]
    assert chat_posts(agent) == []


def test_mcp_filters_on_the_model_listener(gw, mock_llm):
    client = openai.OpenAI(base_url=f"{gw.urls['model']}/v1", api_key="k", max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "colour me surprised"}], stream=True) if c.choices)
    assert text == "echo: color me surprised"
    assert mock_llm.last.body["messages"][0]["content"] == "color me surprised"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hack it"}])
    assert "no hacking allowed (mcp guard)" in caught.value.message
    assert len(mock_llm.requests) == 1  # only the first request reached the provider


def test_mcp_session_is_reused_and_reopened_after_a_server_restart(gw, mcp, agent):
    server = mcp["reuse"]
    with ThreadPoolExecutor(6) as pool:  # concurrent first use: one initialize
        statuses = list(pool.map(lambda i: ask(gw, "reuse", f"colour {i}").status_code, range(6)))
    assert statuses == [200] * 6
    for i in range(3):
        assert ask(gw, "reuse", f"more colour {i}").status_code == 200
    stats = server.stats()
    assert stats["initialize"] == 1, stats
    assert stats["tools_call"] == 9 and stats["notifications"] == 1, stats

    server.restart()  # the stateful server forgets every session
    assert server.stats()["initialize"] == 0
    resp = ask(gw, "reuse", "colour after restart")
    assert resp.status_code == 200, resp.text
    assert chat_posts(agent)[-1].body["messages"][-1]["content"] == "color after restart"
    resp = ask(gw, "reuse", "colour again")
    assert resp.status_code == 200, resp.text
    stats = server.stats()
    assert stats["initialize"] == 1, stats  # re-initialised once, then reused again
    assert stats["tools_call"] == 3, stats  # the call with the forgotten session (404), its retry, the next one
    assert "filter=rewrite_reuse MCP session lost" in gw.log()


def test_stateless_mcp_server_initialised_once_and_survives_restart(gw, mcp, agent):
    server = mcp["reuse_stateless"]
    for i in range(4):
        assert ask(gw, "reuse_stateless", f"colour {i}").status_code == 200
    assert server.stats()["initialize"] == 1
    server.restart()
    resp = ask(gw, "reuse_stateless", "colour after restart")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "echo: color after restart"
