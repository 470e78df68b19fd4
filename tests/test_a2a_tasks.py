"""A2A tasks on plano's durable async tasks, over real sockets: ``a2a-sdk`` clients (and raw 0.3
JSON-RPC) talk to an agent listener whose ``/v1/tasks`` runs the work; upstream agents are
``a2a-sdk`` servers; a webhook receiver checks plano's signatures.

- a non-blocking ``SendMessage`` creates a plano task (same id, visible at ``/v1/tasks``), ``GetTask``
  follows it to completion, the same ``messageId`` again is the same task, and the push config of
  the send is delivered as plano's signed ``task.complete`` webhook carrying the config's token;
- ``CancelTask`` cancels it (a ``task.cancelled`` webhook), a second cancel is -32002, an unknown
  ``task_…`` id -32001, a push URL outside ``tasks.webhook.allowed_urls`` -32602 with no task made,
  changing a task's push config -32004;
- an agent's question makes the task input-required; the client's answer (``SendMessage`` with the
  task id) resumes it and ``SubscribeToTask`` follows it to the end;
- a 0.3 client's ``message/send`` with ``blocking: false`` gets a task that ``tasks/get`` follows;
- the task survives a gateway restart (``GetTask`` after it answers from the store).
"""

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
from tests.support.task_agents import WebhookReceiver  # noqa: E402

SECRET = "a2a-task-webhook-secret-0123"
WEATHER_Q = "Will it rain in Paris tomorrow"
STUCK_Q = "Reconcile the ledger accounts please"
POLLEN_Q = "What is the pollen count and allergy forecast?"


def _agent(tmp, name, *args):
    return ServiceProcess("tests.support.a2a_agent", ["--name", name, *args], tmp, label=f"a2a-{name}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a2atasks")
    agents = {"weather": _agent(tmp, "weather", "--mode", "task"),
              "stuck": _agent(tmp, "stuck", "--mode", "slow", "--delay", "1000"),
              "pollen": _agent(tmp, "pollen", "--mode", "ask")}
    for a in agents.values():
        a.launch()
    for a in agents.values():
        a.wait_healthy()
    hook = WebhookReceiver(SECRET).start()
    model = MockLLM().start()
    port, model_port = free_port(), free_port()
    config = {
        "version": "v0.4.0",
        "agents": [{"id": name, "type": "a2a", "url": a.url} for name, a in agents.items()],
        "model_providers": [{"model": "openai/m", "access_key": "k", "base_url": f"{model.url}/v1",
                             "default": True}],
        "tasks": {"store": f"sqlite:///{tmp}/tasks.db", "poll_interval": "200ms",
                  "webhook": {"secret": SECRET, "allowed_urls": ["http://127.0.0.1:*"], "schedule": ["1s"]}},
        "listeners": [
            {"type": "agent", "name": "team", "port": port, "address": "127.0.0.1", "router": "embedded",
             "timeout": "60s", "agents": [
                 {"id": "weather", "description": "Weather forecasts: rain, temperature and wind for any city."},
                 {"id": "stuck", "description": "Reconciles ledger accounts and bookkeeping entries."},
                 {"id": "pollen", "description": "Pollen counts and allergy forecasts."},
             ]},
            {"type": "model", "name": "llm", "port": model_port, "address": "127.0.0.1"},
        ],
    }
    gw = Gateway(config, tmp, env={"PLANO_HOME": str(tmp / "home"), "PLANO_ACCESS_LOG": "off"}).start()
    yield {"gw": gw, "agents": agents, "hook": hook, "url": f"http://127.0.0.1:{port}"}
    gw.stop()
    hook.stop()
    model.stop()
    for a in agents.values():
        a.stop()


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def _client(env, streaming: bool = False):
    from a2a.client import ClientConfig, create_client

    return await create_client(env["url"], client_config=ClientConfig(streaming=streaming,
                                                                      httpx_client=httpx.AsyncClient(timeout=30)))


def _message(text: str, *, message_id: str | None = None, task_id: str | None = None):
    from a2a.types.a2a_pb2 import Message, Part, Role

    return Message(message_id=message_id or f"m-{time.monotonic_ns()}", role=Role.ROLE_USER, parts=[Part(text=text)],
                   **({"task_id": task_id} if task_id else {}))


def _send(message, *, immediate: bool = True, push: dict | None = None):
    from a2a.types.a2a_pb2 import SendMessageConfiguration, SendMessageRequest, TaskPushNotificationConfig

    config = SendMessageConfiguration(return_immediately=immediate)
    if push is not None:
        config.task_push_notification_config.CopyFrom(TaskPushNotificationConfig(**push))
    return SendMessageRequest(message=message, configuration=config)


async def _first_task(client, request):
    return [e async for e in client.send_message(request)][-1].task


async def _follow(client, task_id: str, until):
    from a2a.types.a2a_pb2 import GetTaskRequest

    task = None
    for _ in range(300):
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state in until:
            return task
        await asyncio.sleep(0.1)
    return task


def _text(task) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts if p.HasField("text"))


def _rpc(env, method: str, params: dict, version: str = "1.0") -> dict:
    r = httpx.post(f"{env['url']}/a2a", timeout=10, headers={"a2a-version": version},
                   json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert r.status_code == 200, r.text
    return r.json()


def _deliveries(hook, event: str, task_id: str, seconds: float = 20.0) -> list:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = [d for d in hook.deliveries if d.event == event and d.body.get("task_id") == task_id]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_non_blocking_send_is_a_plano_task_with_a_signed_push(env):
    from a2a.types.a2a_pb2 import (
        GetTaskPushNotificationConfigRequest,
        ListTaskPushNotificationConfigsRequest,
        TaskState,
    )

    push = {"url": env["hook"].url, "token": "tok-weather-1", "id": "cfg-1"}

    async def go():
        client = await _client(env)
        message = _message(WEATHER_Q)
        first = await _first_task(client, _send(message, push=push))
        again = await _first_task(client, _send(message, push=push))  # a retry of the same message
        done = await _follow(client, first.id, {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED})
        got = await client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=first.id, id="cfg-1"))
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=first.id))
        await client.close()
        return first, again, done, got, listed

    first, again, done, got, listed = _run(go())
    assert first.id.startswith("task_") and again.id == first.id
    assert first.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert _text(done).lower().startswith("weather: ") and "rain in paris" in _text(done).lower()
    assert (got.url, got.token, got.task_id) == (env["hook"].url, "tok-weather-1", first.id)
    assert [c.id for c in listed.configs] == ["cfg-1"]
    view = httpx.get(f"{env['url']}/v1/tasks/{first.id}", timeout=10).json()
    assert view["status"] == "complete" and view["result"]["text"] == _text(done)
    delivered = _deliveries(env["hook"], "task.complete", first.id)
    assert delivered and delivered[0].verified  # plano's HMAC signatures check out
    body = delivered[0].body
    assert body["data"]["text"] == _text(done)
    assert body["metadata"]["a2a"]["push"] == {"id": "cfg-1", "url": env["hook"].url, "token": "tok-weather-1"}
    env["completed"] = (first.id, _text(done))


def test_cancel_task_cancels_the_plano_task_and_errors_are_the_protocols(env):
    from a2a.types.a2a_pb2 import CancelTaskRequest, TaskState

    stuck = env["agents"]["stuck"]

    def calls() -> list:
        with urllib.request.urlopen(f"{stuck.url}/stats", timeout=5) as r:
            return [c for c in json.loads(r.read())["calls"] if STUCK_Q.lower() in c["text"].lower()]

    async def go():
        client = await _client(env)
        task = await _first_task(client, _send(_message(STUCK_Q), push={"url": env["hook"].url, "token": "t2"}))
        for _ in range(300):  # the workflow's step reached the (never finishing) agent
            if calls():
                break
            await asyncio.sleep(0.1)
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        await client.close()
        return task, canceled

    task, canceled = _run(go())
    assert task.id.startswith("task_") and calls()
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert httpx.get(f"{env['url']}/v1/tasks/{task.id}", timeout=10).json()["status"] == "cancelled"
    cancelled = _deliveries(env["hook"], "task.cancelled", task.id)
    assert cancelled and cancelled[0].verified
    assert _rpc(env, "CancelTask", {"id": task.id})["error"]["code"] == -32002  # already canceled
    assert _rpc(env, "GetTask", {"id": "task_nosuchtask000"})["error"]["code"] == -32001
    assert _rpc(env, "CancelTask", {"id": "task_nosuchtask000"})["error"]["code"] == -32001
    out = _rpc(env, "CreateTaskPushNotificationConfig", {"taskId": task.id, "url": env["hook"].url})
    assert out["error"]["code"] == -32004
    before = len(httpx.get(f"{env['url']}/v1/tasks?limit=100", timeout=10).json()["data"])
    out = _rpc(env, "SendMessage", {"message": {"messageId": "evil-1", "role": "ROLE_USER", "parts": [
        {"text": WEATHER_Q}]}, "configuration": {"returnImmediately": True, "taskPushNotificationConfig": {
            "url": "https://evil.example/hook"}}})
    assert out["error"]["code"] == -32602 and "webhook" in out["error"]["message"].lower()
    assert len(httpx.get(f"{env['url']}/v1/tasks?limit=100", timeout=10).json()["data"]) == before


def test_input_required_answer_and_subscribe(env):
    from a2a.types.a2a_pb2 import SubscribeToTaskRequest, TaskState

    async def go():
        plain = await _client(env)
        task = await _first_task(plain, _send(_message(POLLEN_Q)))
        waiting = await _follow(plain, task.id, {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_FAILED,
                                                 TaskState.TASK_STATE_COMPLETED})
        resumed = await _first_task(plain, _send(_message("Lyon", task_id=task.id)))  # the answer, not waiting
        client = await _client(env, streaming=True)
        events = [e async for e in client.subscribe(SubscribeToTaskRequest(id=task.id))]
        await client.close()
        await plain.close()
        return task, waiting, resumed, events

    task, waiting, resumed, events = _run(go())
    assert waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "Which city?" in "".join(p.text for p in waiting.status.message.parts)
    assert resumed.id == task.id
    final = [e.task for e in events if e.HasField("task")][-1]
    assert final.status.state == TaskState.TASK_STATE_COMPLETED
    assert _text(final) == "pollen: pollen is low in Lyon"


def test_a2a_03_client_non_blocking_send_and_tasks_get(env):
    sent = _rpc(env, "message/send", {"message": {"kind": "message", "messageId": f"m03-{time.monotonic_ns()}",
                                                  "role": "user", "parts": [{"kind": "text", "text": WEATHER_Q}]},
                                      "configuration": {"blocking": False}}, version="0.3")
    task = sent["result"]
    assert task["kind"] == "task" and task["id"].startswith("task_")
    state = None
    for _ in range(300):
        got = _rpc(env, "tasks/get", {"id": task["id"]}, version="0.3")["result"]
        state = got["status"]["state"]
        if state in ("completed", "failed"):
            break
        time.sleep(0.1)
    assert state == "completed"
    text = "".join(p.get("text", "") for a in got["artifacts"] for p in a["parts"]).lower()
    assert text.startswith("weather: ") and "rain in paris" in text


def test_a_task_survives_a_gateway_restart(env):
    from a2a.types.a2a_pb2 import GetTaskRequest, TaskState

    task_id, text = env["completed"]
    env["gw"].stop()
    env["gw"].start()

    async def go():
        client = await _client(env)
        task = await client.get_task(GetTaskRequest(id=task_id))
        await client.close()
        return task

    task = _run(go())
    assert task.status.state == TaskState.TASK_STATE_COMPLETED and _text(task) == text
