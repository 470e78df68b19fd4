"""The A2A example runs: ``examples/a2a_weather_agent.py`` (an ``a2a-sdk`` agent) behind plano with
``examples/a2a/plano.yaml`` (ports moved to free ones), over real sockets — OpenAI-SDK clients get
its answers (JSON and streamed line by line), routed by its card since the config gives it no
description; a follow-up without a city reuses the one asked before (plano's structured conversation
in the message metadata); a currency question goes to the OpenAI-style agent; an ``a2a-sdk`` client
of plano gets the same agent's answer as a task."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("a2a")

from tests.support.gateway import REPO, Gateway, free_port  # noqa: E402
from tests.support.mock_llm import MockLLM  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

CONFIG = REPO / "examples" / "a2a" / "plano.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("a2aexample")
    weather = ServiceProcess("examples.a2a_weather_agent", [], tmp, label="a2a-weather-example")
    currency = ServiceProcess("examples.agents.currency", [], tmp, label="currency")
    weather.launch(), currency.launch()
    weather.wait_healthy(), currency.wait_healthy()
    model = MockLLM().start()
    config = yaml.safe_load(CONFIG.read_text())
    urls = {"weather": weather.url, "currency_agent": currency.url}
    for agent in config["agents"]:
        agent["url"] = urls[agent["id"]]
    config["model_providers"][0]["base_url"] = f"{model.url}/v1"
    ports = {}
    for listener in config["listeners"]:
        listener["port"] = ports[listener["name"]] = free_port()
    gw = Gateway(config, tmp, env={"PLANO_HOME": str(tmp / "home"), "PLANO_ACCESS_LOG": "off"}).start()
    yield {"gw": gw, "url": f"http://127.0.0.1:{ports['travel']}"}
    gw.stop()
    model.stop()
    weather.stop()
    currency.stop()


def _client(env):
    from openai import OpenAI

    return OpenAI(base_url=f"{env['url']}/v1", api_key="unused", timeout=30, max_retries=0)


def test_the_example_agent_answers_through_plano(env):
    client = _client(env)
    reply = client.chat.completions.create(model="travel", messages=[
        {"role": "user", "content": "Will it rain in Paris tomorrow?"}]).choices[0].message.content
    assert reply.startswith("Paris, France") and "Demo data generated offline by weather_agent" in reply
    stream = client.chat.completions.create(model="travel", stream=True, messages=[
        {"role": "user", "content": "What's the 3-day forecast for London?"}])
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 3 and "3-day forecast for London" in "".join(pieces)  # one delta per line
    log = env["gw"].log()
    assert "a2a agent 'weather': card 'weather'" in log


def test_a_follow_up_reuses_the_city_from_the_conversation(env):
    first = "What's the weather in Tokyo?"
    answer = _client(env).chat.completions.create(model="travel", messages=[
        {"role": "user", "content": first}]).choices[0].message.content
    follow = _client(env).chat.completions.create(model="travel", messages=[
        {"role": "user", "content": first}, {"role": "assistant", "content": answer},
        {"role": "user", "content": "And will it rain the day after tomorrow?"}]).choices[0].message.content
    assert "Using Tokyo from earlier in our conversation" in follow


def test_a_currency_question_goes_to_the_openai_agent(env):
    reply = _client(env).chat.completions.create(model="travel", messages=[
        {"role": "user", "content": "Convert 100 USD to EUR please"}]).choices[0].message.content
    assert "EUR" in reply and "weather_agent" not in reply


def test_an_a2a_client_of_plano_reaches_the_example_agent(env):
    from a2a.client import ClientConfig, create_client
    from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState

    async def go():
        client = await create_client(env["url"], client_config=ClientConfig(
            streaming=False, httpx_client=httpx.AsyncClient(timeout=30)))
        msg = Message(message_id=f"m-{time.monotonic_ns()}", role=Role.ROLE_USER,
                      parts=[Part(text="Will it rain in Berlin tomorrow?")])
        events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
        await client.close()
        return events[-1].task

    task = asyncio.run(asyncio.wait_for(go(), 60))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "Berlin, Germany" in "".join(p.text for a in task.artifacts for p in a.parts)
