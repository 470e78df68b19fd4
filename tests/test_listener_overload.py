"""Listener ``max_concurrency``: one request over the limit is refused at once, never queued."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply


def test_a_listener_at_its_limit_answers_503_and_healthz_still_answers(tmp_path, llm):
    port = free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": "slow", "url": llm.url}],
        "model_providers": [{"model": "openai/gpt-4o", "base_url": llm.url, "default": True}],
        "listeners": [
            {"type": "agent", "name": "desk", "port": port, "address": "127.0.0.1", "max_concurrency": 2,
             "timeout": "20s", "agents": [{"id": "slow", "description": "answers slowly"}]},
            {"type": "model", "name": "llm", "port": free_port(), "address": "127.0.0.1"},
        ],
    }
    for _ in range(2):
        llm.enqueue(Reply("json", content="late", delay=1.5))
    body = {"messages": [{"role": "user", "content": "hi"}]}

    async def go():
        async with httpx.AsyncClient(timeout=30) as client:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            slow = [asyncio.create_task(client.post(url, json=body)) for _ in range(2)]
            while len(llm.requests) < 2:  # both slow requests are inside the agent
                await asyncio.sleep(0.02)
            third = await client.post(url, json=body)
            health = await client.get(f"http://127.0.0.1:{port}/healthz")
            return third, health, await asyncio.gather(*slow)

    with Gateway(config, tmp_path):
        third, health, slow = asyncio.run(go())
    assert third.status_code == 503 and third.json()["error"]["code"] == "listener_overloaded"
    assert third.headers["retry-after"] == "1"
    assert health.status_code == 200
    assert [r.status_code for r in slow] == [200, 200]
    assert len(llm.requests) == 2  # the refused request never reached the agent
