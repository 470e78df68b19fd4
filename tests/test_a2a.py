"""A2A through plano, over real sockets: agents built with ``a2a-sdk``'s server upstream (1.0 and a
0.3-only one) answering OpenAI-SDK clients, and plano's agent listener as an A2A server for
``a2a-sdk`` clients (card, send, stream, GetTask, CancelTask) plus the protocol's error codes."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import httpx
import pytest

pytest.importorskip("a2a")

from tests.support.gateway import Gateway, free_port  # noqa: E402
from tests.support.mock_llm import MockLLM  # noqa: E402
from tests.support.service import ServiceProcess  # noqa: E402

WEATHER_Q = "Will it rain in Paris tomorrow? What temperature?"
HISTORY_Q = "Tell me about the history of the Roman empire"
REPORT_Q = "Write the quarterly sales report"
STUCK_Q = "Reconcile the ledger accounts please"


def _agent(tmp, name, *args):
    return ServiceProcess("tests.support.a2a_agent", ["--name", name, *args], tmp, label=f"a2a-{name}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a2a")
    agents = {
        "weather": _agent(tmp, "weather", "--mode", "task", "--skill",
                          "Weather forecasts: rain, temperature and wind for any city"),
        "history": _agent(tmp, "history", "--mode", "message", "--protocol", "0.3"),
        "report": _agent(tmp, "report", "--mode", "slow", "--delay", "2"),
        "poller": _agent(tmp, "poller", "--mode", "slow", "--delay", "1", "--poll"),
        "stuck": _agent(tmp, "stuck", "--mode", "slow", "--delay", "1000"),
    }
    for a in agents.values():
        a.launch()
    for a in agents.values():
        a.wait_healthy()
    model = MockLLM().start()
    ghost = free_port()
    port, small, model_port, haunted = free_port(), free_port(), free_port(), free_port()
    polled = free_port()
    config = {
        "version": "v0.4.0",
        "agents": [
            {"id": "weather", "type": "a2a", "url": agents["weather"].url},
            {"id": "history", "type": "a2a", "url": agents["history"].url},
            {"id": "report", "type": "a2a", "url": agents["report"].url},
            {"id": "poller", "type": "a2a", "url": agents["poller"].url},
            {"id": "stuck", "type": "a2a", "url": agents["stuck"].url},
            {"id": "ghost", "type": "a2a", "url": f"http://127.0.0.1:{ghost}"},
        ],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{model.url}/v1",
                             "default": True}],
        "listeners": [
            {"type": "agent", "name": "team", "port": port, "address": "127.0.0.1", "router": "embedded",
             "timeout": "60s", "agents": [
                 {"id": "weather"},  # no description: the card's description and skills route to it
                 {"id": "history", "description": "History of empires, wars, kings and ancient civilisations."},
                 {"id": "report", "description": "Writes quarterly sales reports and revenue summaries."},
                 {"id": "stuck", "description": "Reconciles ledger accounts and bookkeeping entries."},
             ]},
            {"type": "agent", "name": "polled", "port": polled, "address": "127.0.0.1", "agents": [{"id": "poller"}]},
            {"type": "agent", "name": "haunted", "port": haunted, "address": "127.0.0.1", "agents": [{"id": "ghost"}]},
            {"type": "agent", "name": "small", "port": small, "address": "127.0.0.1", "max_body_bytes": 4096,
             "agents": [{"id": "weather"}]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }
    gw = Gateway(config, tmp).start()
    # the health probe started the card reads; the first chat request waits for them
    yield {"gw": gw, "agents": agents, "url": f"http://127.0.0.1:{port}", "small": f"http://127.0.0.1:{small}",
           "haunted": f"http://127.0.0.1:{haunted}", "polled": f"http://127.0.0.1:{polled}"}
    gw.stop()
    model.stop()
    for a in agents.values():
        a.stop()


def stats(agent) -> dict:
    with urllib.request.urlopen(f"{agent.url}/stats", timeout=5) as r:
        return json.loads(r.read())


def calls_with(agent, text: str) -> list[dict]:
    return [c for c in stats(agent)["calls"] if text in c["text"]]


def openai_client(env):
    from openai import OpenAI

    return OpenAI(base_url=f"{env['url']}/v1", api_key="unused", timeout=30, max_retries=0)


# ---------------------------------------------------------------------------- A2A agents upstream


def test_a2a_agent_answers_openai_client_json(env):
    reply = openai_client(env).chat.completions.create(model="team", messages=[{"role": "user", "content": WEATHER_Q}])
    assert reply.choices[0].message.content == f"weather: {WEATHER_Q}"
    calls = calls_with(env["agents"]["weather"], WEATHER_Q)
    # the card says streaming: plano streams from it, with the 1.0 method name and version header
    assert calls and calls[-1]["method"] == "SendStreamingMessage" and calls[-1]["version"] == "1.0"
    assert calls[-1]["traceparent"]


def test_a2a_agent_streams_to_openai_client(env):
    question = WEATHER_Q + " (stream)"
    stream = openai_client(env).chat.completions.create(
        model="team", stream=True, messages=[{"role": "user", "content": question}])
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == f"weather: {question}"
    assert len(pieces) >= 2  # the agent's two artifact chunks arrive as two deltas


def test_a2a_03_only_agent_is_spoken_to_in_03(env):
    client = openai_client(env)
    reply = client.chat.completions.create(model="team", messages=[{"role": "user", "content": HISTORY_Q}])
    assert reply.choices[0].message.content == f"history: {HISTORY_Q}"
    stream = client.chat.completions.create(model="team", stream=True,
                                            messages=[{"role": "user", "content": HISTORY_Q + "?"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == f"history: {HISTORY_Q}?"
    methods = {c["method"] for c in stats(env["agents"]["history"])["calls"]}
    assert methods == {"message/stream"}, methods  # never a 1.0 name (the agent would answer -32601)


def test_earlier_turns_reach_the_a2a_agent_as_context(env):
    question = "And what about Lyon, will it rain there?"
    messages = [{"role": "user", "content": "Is it sunny in Nice?"},
                {"role": "assistant", "content": "Yes, 25 degrees."},
                {"role": "user", "content": question}]
    reply = openai_client(env).chat.completions.create(model="team", messages=messages)
    text = reply.choices[0].message.content
    assert text.startswith("weather: Conversation so far:") and "Yes, 25 degrees." in text
    assert text.endswith(question)


def test_a2a_task_polled_until_done(env):
    """The poller agent (no streaming) answers SendMessage with a task still working: plano polls
    GetTask until it completes, within the listener's deadline, and answers with its artifact."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{env['polled']}/v1", api_key="unused", timeout=30, max_retries=0)
    reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": REPORT_Q}])
    assert reply.choices[0].message.content == f"poller: {REPORT_Q}"
    methods = [c["method"] for c in stats(env["agents"]["poller"])["calls"]]
    assert methods[0] == "SendMessage" and "GetTask" in methods[1:], methods


def test_a2a_streamed_task_answers(env):
    reply = openai_client(env).chat.completions.create(model="team", messages=[{"role": "user", "content": REPORT_Q}])
    assert reply.choices[0].message.content == f"report: {REPORT_Q}"


def test_missing_card_is_a_startup_warning_and_a_clear_error(env):
    log = env["gw"].log()
    assert "a2a agent 'ghost': no agent card" in log
    r = httpx.post(f"{env['haunted']}/v1/chat/completions", timeout=30,
                   json={"messages": [{"role": "user", "content": "Tell me spooky stories about ghosts and haunted houses"}]})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "agent_connect" and "ghost" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------- plano as an A2A server


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _client(env, streaming: bool):
    from a2a.client import ClientConfig, create_client

    return await create_client(env["url"], client_config=ClientConfig(streaming=streaming,
                                                                      httpx_client=httpx.AsyncClient(timeout=30)))


def _request(text: str, *, immediate: bool = False):
    from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageConfiguration, SendMessageRequest

    msg = Message(message_id=f"m-{time.monotonic_ns()}", role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(message=msg, configuration=SendMessageConfiguration(return_immediately=immediate))


def _artifact_text(task) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts)


def test_plano_agent_card_for_a2a_sdk_client(env):
    from a2a.client import A2ACardResolver

    async def go():
        async with httpx.AsyncClient(timeout=10) as http:
            return await A2ACardResolver(http, env["url"]).get_agent_card()

    card = _run(go())
    assert card.name == "team"
    assert [s.id for s in card.skills] == ["weather", "history", "report", "stuck"]
    assert "Weather forecasts" in card.skills[0].description  # from the weather agent's own card
    assert card.supported_interfaces[0].url == f"{env['url']}/a2a"
    assert card.capabilities.streaming
    legacy = httpx.get(f"{env['url']}/.well-known/agent.json").json()
    assert legacy["protocolVersion"].startswith("0.3") and legacy["url"] == f"{env['url']}/a2a"


def test_a2a_client_send_is_routed(env):
    async def go():
        client = await _client(env, streaming=False)
        out = []
        for text in (WEATHER_Q + " [a2a]", HISTORY_Q + " [a2a]"):
            events = [e async for e in client.send_message(_request(text))]
            out.append(events[-1].task)
        await client.close()
        return out

    weather, history = _run(go())
    from a2a.types.a2a_pb2 import TaskState

    assert weather.status.state == TaskState.TASK_STATE_COMPLETED
    assert _artifact_text(weather) == f"weather: {WEATHER_Q} [a2a]"
    assert _artifact_text(history) == f"history: {HISTORY_Q} [a2a]"
    assert calls_with(env["agents"]["weather"], "[a2a]") and calls_with(env["agents"]["history"], "[a2a]")
    assert not calls_with(env["agents"]["history"], WEATHER_Q + " [a2a]")


def test_a2a_client_stream_is_routed(env):
    async def go():
        client = await _client(env, streaming=True)
        events = [e async for e in client.send_message(_request(WEATHER_Q + " [a2a stream]"))]
        await client.close()
        return events

    events = _run(go())
    chunks = [p.text for e in events if e.HasField("artifact_update") for p in e.artifact_update.artifact.parts]
    assert "".join(chunks) == f"weather: {WEATHER_Q} [a2a stream]"
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    from a2a.types.a2a_pb2 import TaskState

    assert states[-1] == TaskState.TASK_STATE_COMPLETED


def test_long_request_is_a_task_that_get_task_follows(env):
    from a2a.types.a2a_pb2 import GetTaskRequest, TaskState

    async def go():
        client = await _client(env, streaming=False)
        first = [e async for e in client.send_message(_request(REPORT_Q + " [async]", immediate=True))][-1].task
        seen = [first.status.state]
        task = first
        for _ in range(300):
            task = await client.get_task(GetTaskRequest(id=first.id))
            seen.append(task.status.state)
            if task.status.state == TaskState.TASK_STATE_COMPLETED:
                break
            await asyncio.sleep(0.1)
        await client.close()
        return first, seen, task

    first, seen, task = _run(go())
    assert first.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
    assert TaskState.TASK_STATE_WORKING in seen
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    # a plano async task: its workflow step asked the report agent (the planner's clause, first letter lowered)
    assert _artifact_text(task).lower() == f"report: {REPORT_Q} [async]".lower()
    assert first.id.startswith("task_")
    view = httpx.get(f"{env['url']}/v1/tasks/{first.id}", timeout=10).json()
    assert view["status"] == "complete" and view["result"]["text"] == _artifact_text(task)


def test_cancel_task_stops_the_request(env):
    from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest, TaskState

    stuck = env["agents"]["stuck"]
    before = stats(stuck)["cancels"]

    async def go():
        client = await _client(env, streaming=False)
        task = [e async for e in client.send_message(_request(STUCK_Q, immediate=True))][-1].task
        for _ in range(300):  # wait until plano's call reached the (never finishing) agent
            if calls_with(stuck, STUCK_Q):
                break
            await asyncio.sleep(0.1)
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        again = await client.get_task(GetTaskRequest(id=task.id))
        await client.close()
        return canceled, again

    canceled, again = _run(go())
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert again.status.state == TaskState.TASK_STATE_CANCELED
    for _ in range(100):  # plano abandoned its call and told the upstream A2A agent to cancel its task
        if stats(stuck)["cancels"] > before:
            break
        time.sleep(0.1)
    assert stats(stuck)["cancels"] > before


# ---------------------------------------------------------------------------- bad input


def _rpc(env, body, *, url=None, headers=None):
    r = httpx.post(f"{url or env['url']}/a2a", content=body, timeout=10,
                   headers={"content-type": "application/json", "a2a-version": "1.0", **(headers or {})})
    assert r.status_code == 200, r.text
    return r.json()


def test_bad_jsonrpc_gets_protocol_error_codes(env):
    assert _rpc(env, b"{not json")["error"]["code"] == -32700
    assert _rpc(env, b'{"id": 1, "method": "SendMessage"}')["error"]["code"] == -32600  # no jsonrpc: 2.0
    assert _rpc(env, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "FlyToTheMoon", "params": {}}))["error"][
        "code"] == -32601
    out = _rpc(env, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": "no-such-task"}}))
    assert out["error"]["code"] == -32001 and out["id"] == 3
    out = _rpc(env, json.dumps({"jsonrpc": "2.0", "id": 4, "method": "CancelTask", "params": {"id": "nope"}}))
    assert out["error"]["code"] == -32001
    out = _rpc(env, json.dumps({"jsonrpc": "2.0", "id": 5, "method": "SendMessage", "params": {"message": 7}}))
    assert out["error"]["code"] == -32602


def test_oversized_message_is_refused_with_jsonrpc_error(env):
    big = {"jsonrpc": "2.0", "id": 9, "method": "SendMessage", "params": {"message": {
        "messageId": "big", "role": "ROLE_USER", "parts": [{"text": "x" * 20000}]}}}
    out = _rpc(env, json.dumps(big), url=env["small"])
    assert out["error"]["code"] == -32600 and "too large" in out["error"]["message"].lower()
    assert not calls_with(env["agents"]["weather"], "x" * 100)  # never reached an agent
