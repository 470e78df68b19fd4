"""Listener auth covers the async-tasks API too: /v1/tasks answers 401 with the contract's codes
without a valid key, and works with one."""

from __future__ import annotations

import httpx

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import MockLLM


def test_v1_tasks_needs_the_listener_key(tmp_path):
    agent = MockLLM().start()
    port = free_port()
    cfg = {"version": "v0.4.0",
           "agents": [{"id": "echo", "url": agent.url}],
           "model_providers": [{"model": "openai/m", "access_key": "sk-x", "base_url": f"{agent.url}/v1",
                                "default": True}],
           "listeners": [{"type": "agent", "name": "team", "port": port, "address": "127.0.0.1",
                          "auth": {"api_keys": ["team-key-5521"]},
                          "agents": [{"id": "echo", "description": "answers everything", "default": True}]},
                         {"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"}]}
    try:
        with Gateway(cfg, tmp_path, env={"PLANO_HOME": str(tmp_path / "home"), "PLANO_ACCESS_LOG": "off"}) as gw:
            url = f"{gw.url(port)}/v1/tasks"
            r = httpx.post(url, json={"prompt": "say hi"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
            r = httpx.post(url, json={"prompt": "say hi"}, headers={"authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert httpx.get(url).status_code == 401
            assert agent.requests == []  # nothing reached an agent
            r = httpx.post(url, json={"prompt": "say hi"}, headers={"authorization": "Bearer team-key-5521"})
            assert r.status_code == 201, r.text
            assert r.json()["id"].startswith("task_")
            r = httpx.get(f"{url}/{r.json()['id']}", headers={"x-api-key": "team-key-5521"})
            assert r.status_code == 200
    finally:
        agent.stop()
