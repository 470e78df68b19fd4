"""``/v1/tasks`` end to end: a real gateway process, scripted agents and a webhook receiver on loopback.

Every acceptance line of issue 14 that does not need a crash (see test_tasks_recovery.py) has a
test here; none asserts on timing — concurrency is shown by both agents holding a request at once
(and by their spans overlapping), order by who was called with whose output.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.otlp import OTLPReceiver
from tests.support.task_agents import AgentFarm, WebhookReceiver
from tests.support.task_gateway import SECRET, config, task, wait_for, wait_terminal

NAMES = ("weather", "flights", "summary", "backup_weather", "auth", "chat")


@pytest.fixture(scope="module")
def farm():
    f = AgentFarm(*NAMES).start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def hook():
    r = WebhookReceiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def otlp():
    r = OTLPReceiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(farm, hook, otlp, tmp_path_factory):
    port = free_port()
    work = tmp_path_factory.mktemp("tasks")
    cfg = config(farm, port, store=f"sqlite:///{work}/tasks.db", webhook=hook.url,
                 tracing={"random_sampling": 100, "opentracing_grpc_endpoint": otlp.endpoint})
    g = Gateway(cfg, work, env={"PLANO_HOME": str(work), "PLANO_ACCESS_LOG": str(work / "access.log")}).start()
    g.base = f"http://127.0.0.1:{port}"
    g.access_log = work / "access.log"
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(farm, hook):
    farm.reset()
    hook.reset()
    yield


def create(gw, **body) -> dict:
    headers = body.pop("headers", None)
    r = httpx.post(f"{gw.base}/v1/tasks", json=body, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def trace(gw, task_id: str) -> dict:
    return httpx.get(f"{gw.base}/v1/tasks/{task_id}/trace", timeout=10).json()


TRAVEL = "What's the weather in Paris and find flights from NYC to Paris, then write a travel summary of both"


# -- create, poll, webhook -------------------------------------------------------------------------


def test_create_is_201_at_once_then_running_then_complete_with_a_signed_webhook(gw, farm, hook):
    gate = threading.Event()
    farm.set("weather", hold=gate, text="Sunny in Paris")
    t = create(gw, prompt="What is the weather in Paris?", user_id="u1", metadata={"agent_session": "s-1"})
    assert t["status"] in ("pending", "running") and t["id"].startswith("task_")
    assert t["metadata"] == {"agent_session": "s-1"} and t["trace_id"]
    running = wait_for(lambda: task(gw.base, t["id"]), lambda x: x["status"] == "running")
    assert "result" not in running
    gate.set()
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    assert done["result"]["text"] == "Sunny in Paris"
    assert done["completed_at"] and done["metadata"] == {"agent_session": "s-1"}
    hooks = wait_for(lambda: hook.for_task(t["id"], "task.complete"), lambda d: len(d) == 1)
    assert hooks[0].verified, "X-Plano-Signature / X-Ploton-Signature / v1 signature must verify"
    assert hooks[0].body["metadata"] == {"agent_session": "s-1"}
    assert hooks[0].body["data"]["text"] == "Sunny in Paris"
    assert hooks[0].body["event"] == "task.complete" and hooks[0].body["task_id"] == t["id"]
    progress = wait_for(lambda: hook.for_task(t["id"], "task.progress"), lambda d: len(d) >= 1)
    assert progress[0].verified and progress[0].body["data"]["step"]["tool"] == "weather"


def test_two_independent_agents_run_side_by_side_and_the_dependent_one_after_with_their_outputs(gw, farm, otlp):
    gates = {"weather": threading.Event(), "flights": threading.Event()}
    farm.set("weather", hold=gates["weather"], text="WEATHER-OUT: sunny")
    farm.set("flights", hold=gates["flights"], text="FLIGHTS-OUT: AF011")
    t = create(gw, prompt=TRAVEL)
    # both hold a request at the same time: they run side by side
    wait_for(lambda: (farm.calls_of("weather", t["id"]), farm.calls_of("flights", t["id"])),
             lambda c: len(c[0]) == 1 and len(c[1]) == 1)
    assert farm.calls_of("summary", t["id"]) == []  # the dependent step waits for both
    gates["weather"].set()
    time.sleep(0.2)
    assert farm.calls_of("summary", t["id"]) == [], "summary must wait for flights too"
    gates["flights"].set()
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    (summary,) = farm.calls_of("summary", t["id"])
    handed = {m.get("name"): m["content"] for m in summary.messages if m["role"] == "assistant"}
    assert handed == {"weather": "WEATHER-OUT: sunny", "flights": "FLIGHTS-OUT: AF011"}
    steps = trace(gw, t["id"])["steps"]
    assert [s["tool"] for s in steps] == ["weather", "flights", "summary"]
    assert steps[2]["depends_on"] == [0, 1] and steps[0]["depends_on"] == [] == steps[1]["depends_on"]
    # the steps are spans of the task's trace, and the pair's spans overlap
    deadline = time.monotonic() + 15
    while True:
        spans = {s.name.split(" ")[0]: s for s in otlp.spans()
                 if s.trace_id == done["trace_id"] and s.name.endswith("/v1/chat/completions")}
        if len(spans) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(spans) == {"weather", "flights", "summary"}, spans
    w, f, s = spans["weather"], spans["flights"], spans["summary"]
    assert w.start < f.end and f.start < w.end, "the independent steps' spans overlap"
    assert s.start >= max(w.end, f.end), "the dependent step starts after both"


# -- adapting ----------------------------------------------------------------------------------------


def test_a_failing_agent_is_retried_then_replaced_and_the_recovery_step_sits_under_it(gw, farm):
    farm.set("weather", fail=100, status=503, error="weather backend down")
    farm.set("backup_weather", text="backup says: sunny")
    t = create(gw, prompt="What is the weather in Paris?")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    assert done["result"]["text"] == "backup says: sunny"
    assert len(farm.calls_of("weather", t["id"])) == 2  # tasks.retry.attempts
    steps = trace(gw, t["id"])["steps"]
    failed, recovery = steps[0], steps[1]
    assert failed["tool"] == "weather" and failed["status"] == "failed" and failed["attempt"] == 2
    assert failed["error"]["status"] == 503
    assert recovery["tool"] == "backup_weather" and recovery["parent"] == 0 and recovery["status"] == "complete"
    assert "weather" in recovery["note"]


def test_a_refused_request_is_asked_again_reformulated_and_the_recovery_sits_under_it(gw, farm):
    # flights refuses the request (422) on the first two calls of the task; the third, reformulated, works
    farm.set("flights", fail=2, per_task=True, status=422, error="missing_date: which travel date?",
             text="AF011 for: {request}")
    t = create(gw, prompt="Find flights from NYC to Paris")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    calls = farm.calls_of("flights", t["id"])
    assert len(calls) == 3  # two attempts (tasks.retry.attempts), then the reformulated request
    asked = [c.messages[-1]["content"] for c in calls]
    assert asked[0] == asked[1] == "find flights from nyc to paris"
    assert asked[2] != asked[0] and "find flights from nyc to paris" in asked[2]
    assert "missing_date: which travel date?" in asked[2]  # the agent's own complaint travels with it
    steps = trace(gw, t["id"])["steps"]
    assert [(s["tool"], s["status"], s["parent"]) for s in steps] == [("flights", "failed", None),
                                                                        ("flights", "complete", 0)]
    assert steps[0]["error"]["status"] == 422 and steps[0]["attempt"] == 2
    assert "reformulated" in steps[1]["note"] and steps[1]["request"] == asked[2]
    assert done["result"]["text"] == f"AF011 for: {asked[2]}"


def test_a_server_error_is_not_reformulated_when_no_other_agent_serves_the_request(gw, farm):
    farm.set("flights", fail=100, status=503, error="flights backend down")
    t = create(gw, prompt="Find flights from NYC to Paris")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "step_failed", done
    assert len(farm.calls_of("flights", t["id"])) == 2  # the retries only: the request was not the problem


def test_a_prompt_asking_for_a_json_shape_gets_validated_data_after_one_repair(gw, farm):
    answers = iter(["It is sunny and 21 degrees in Paris.", '{"city": "Paris", "temp_c": 21}'])
    farm.set("weather", reply=lambda messages: next(answers))
    prompt = 'What is the weather in Paris? Answer in JSON like {"city": "Paris", "temp_c": 0}'
    t = create(gw, prompt=prompt)
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    assert done["result"]["data"] == {"city": "Paris", "temp_c": 21} and "data_error" not in done["result"]
    calls = farm.calls_of("weather", t["id"])
    assert len(calls) == 2
    repair_ask = calls[1].messages[-1]["content"]
    assert '{"city": string, "temp_c": number}' in repair_ask and "not valid JSON" in repair_ask
    steps = trace(gw, t["id"])["steps"]
    assert [(s["tool"], s["parent"]) for s in steps] == [("weather", None), ("weather", 0)]
    assert steps[1]["note"].startswith("repair:") and steps[1]["status"] == "complete"


def test_a_json_answer_that_misses_the_shape_twice_has_data_error_after_one_repair(gw, farm):
    answers = iter(['{"city": "Paris"}', '{"city": "Paris", "temp_c": "warm"}'])
    farm.set("weather", reply=lambda messages: next(answers))
    t = create(gw, prompt='Weather in Paris as JSON: {"city": string, "temp_c": number}')
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    assert done["result"]["data"] is None
    assert done["result"]["data_error"] == "'temp_c' should be a number (after one repair attempt)"
    calls = farm.calls_of("weather", t["id"])
    assert len(calls) == 2  # exactly one repair attempt
    assert "missing key(s): temp_c" in calls[1].messages[-1]["content"]
    farm.set("weather", text='{"city": "Oslo", "temp_c": -3}')
    ok = wait_terminal(gw.base, create(gw, prompt='Weather in Oslo as JSON: {"city": string, "temp_c": number}')["id"])
    assert ok["result"]["data"] == {"city": "Oslo", "temp_c": -3}
    assert len(farm.calls_of("weather", ok["id"])) == 1  # valid at once: no repair


def test_the_access_log_has_one_post_line_per_create_and_the_run_as_a_task_line(gw, farm):
    farm.set("weather", text="sunny")
    t = create(gw, prompt="What is the weather in Riga?")
    assert wait_terminal(gw.base, t["id"])["status"] == "complete"

    def lines():
        out = []
        for raw in gw.access_log.read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("request_id") == t["id"] or (line.get("path") == "/v1/tasks" and line.get("method") == "POST"
                                                      and line.get("trace_id") == t["trace_id"]):
                out.append(line)
        return out

    mine = wait_for(lines, lambda ls: any(x["method"] == "TASK" for x in ls), timeout=10)
    time.sleep(0.3)  # the writer flushes every 100 ms: anything else would be there by now
    mine = lines()
    posts = [x for x in mine if x["method"] == "POST"]
    assert [(x["path"], x["status"]) for x in posts] == [("/v1/tasks", 201)], mine
    runs = [x for x in mine if x["method"] == "TASK"]
    assert [(x["path"], x["status"], x["request_id"]) for x in runs] == [("/v1/tasks/{id}", 200, t["id"])]


def test_a_workflow_needing_51_steps_fails_with_workflow_depth_exceeded(gw, farm):
    asks = []
    for i in range(25):
        asks += [f"check the weather in city{i}", f"find flights to city{i}"]
    asks.append("check the weather in city99")
    prompt = " and ".join(asks)
    plan = create(gw, prompt=prompt, mode="test")
    assert len(wait_terminal(gw.base, plan["id"])["error"]["message"]) > 0  # 51 > 50, even as a plan
    t = create(gw, prompt=prompt)
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "workflow_depth_exceeded", done["error"]
    assert "51" in done["error"]["message"]
    assert farm.calls == []  # nothing ran
    fifty = create(gw, prompt=" and ".join(asks[:50]), mode="test")
    assert len(wait_terminal(gw.base, fifty["id"])["result"]["plan"]) == 50


def test_execution_memory_puts_a_recovery_that_worked_first_in_the_next_plan(gw, farm):
    # chat fails with an expired token until auth has run for the task; auth refreshes it
    farm.set("chat", until="auth", status=401, error="token_expired: the chat workspace token expired",
             text="posted")
    farm.set("auth", text="token refreshed")
    prompt = "Post a message to the engineering chat channel saying the build is green"
    for run in range(2):  # tasks.memory.min_successes (default 2) runs in which the recovery worked
        t = create(gw, prompt=prompt)
        done = wait_terminal(gw.base, t["id"])
        assert done["status"] == "complete", done
        steps = trace(gw, t["id"])["steps"]
        assert [s["tool"] for s in steps] == ["chat", "auth", "chat"], steps
        assert steps[0]["status"] == "failed" and steps[1]["parent"] == 0 and steps[2]["parent"] == 0
    t = create(gw, prompt=prompt)
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    steps = trace(gw, t["id"])["steps"]
    assert [s["tool"] for s in steps] == ["auth", "chat"], steps
    assert "execution memory" in steps[0]["note"] and "auth" in steps[0]["note"]
    assert steps[1]["depends_on"] == [0] and steps[1]["status"] == "complete"
    assert len(farm.calls_of("chat", t["id"])) == 1  # no failure this time
    plan = create(gw, prompt=prompt, mode="test")
    planned = wait_terminal(gw.base, plan["id"])["result"]["plan"]
    assert [s["tool"] for s in planned] == ["auth", "chat"] and "execution memory" in planned[0]["note"]


def test_an_agent_needing_another_agents_data_adds_a_step(gw, farm):
    # the first summary call asks for weather data; once weather has answered, summary writes
    farm.set("summary", until="weather", before="NEEDS: the weather forecast for Paris",
             text="summary with {request}")
    farm.set("weather", text="forecast: rain")
    t = create(gw, prompt="Write a travel summary for my Paris trip")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    steps = trace(gw, t["id"])["steps"]
    assert [s["tool"] for s in steps] == ["summary", "weather", "summary"]
    assert steps[1]["parent"] == 0 and steps[1]["note"].startswith("added")
    last = farm.calls_of("summary", t["id"])[-1]
    assert any(m.get("name") == "weather" and m["content"] == "forecast: rain" for m in last.messages)


# -- webhooks --------------------------------------------------------------------------------------


def test_a_webhook_target_down_for_three_attempts_gets_it_on_the_fourth_with_one_delivery_id(gw, farm, hook):
    hook.refuse, hook.refuse_event = 3, "task.complete"
    t = create(gw, prompt="What is the weather in Oslo?", sub_agent="weather")
    assert wait_terminal(gw.base, t["id"])["status"] == "complete"
    wait_for(lambda: hook.for_task(t["id"], "task.complete"), lambda d: len(d) == 1, timeout=30)
    attempts = hook.for_task(t["id"], "task.complete", every=True)
    assert len(attempts) == 4
    assert [a.attempt for a in attempts] == ["1", "2", "3", "4"]
    assert len({a.id for a in attempts}) == 1 and attempts[0].id.startswith("dlv_")
    assert all(a.verified for a in attempts)


def test_a_per_task_webhook_url_must_be_allowed_by_the_config(gw, farm):
    other = WebhookReceiver(SECRET).start()
    try:
        t = create(gw, prompt="What is the weather in Rome?", sub_agent="weather", webhook_url=other.url,
                   metadata={"k": "v"})
        wait_terminal(gw.base, t["id"])
        got = wait_for(lambda: other.for_task(t["id"], "task.complete"), lambda d: len(d) == 1)
        assert got[0].verified and got[0].body["metadata"] == {"k": "v"}
    finally:
        other.stop()
    r = httpx.post(f"{gw.base}/v1/tasks", json={"prompt": "hi", "webhook_url": "https://evil.example/x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "webhook_url_not_allowed"


# -- the rest of the contract ----------------------------------------------------------------------


def test_idempotency_key_same_body_returns_the_original_and_another_body_conflicts(gw):
    body = {"prompt": "What is the weather in Lima?", "user_id": "idem"}
    key = {"Idempotency-Key": f"k-{time.time_ns()}"}
    first = httpx.post(f"{gw.base}/v1/tasks", json=body, headers=key)
    assert first.status_code == 201
    again = httpx.post(f"{gw.base}/v1/tasks", json=body, headers=key)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = httpx.post(f"{gw.base}/v1/tasks", json={**body, "prompt": "something else"}, headers=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    listed = httpx.get(f"{gw.base}/v1/tasks", params={"user_id": "idem"}).json()["data"]
    assert [t["id"] for t in listed] == [first.json()["id"]]


def test_cancel_stops_a_running_task_and_a_terminal_one_is_409(gw, farm, hook):
    gate = threading.Event()
    farm.set("weather", hold=gate)
    t = create(gw, prompt="What is the weather in Cairo?")
    wait_for(lambda: farm.calls_of("weather", t["id"]), lambda c: len(c) == 1)
    r = httpx.post(f"{gw.base}/v1/tasks/{t['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the in-flight agent call was abandoned: the task stays cancelled after the agent answers
    gate.set()
    time.sleep(0.3)
    assert task(gw.base, t["id"])["status"] == "cancelled"
    assert wait_for(lambda: hook.for_task(t["id"], "task.cancelled"), lambda d: len(d) == 1)[0].verified
    again = httpx.post(f"{gw.base}/v1/tasks/{t['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert httpx.post(f"{gw.base}/v1/tasks/task_nope/cancel").status_code == 404


def test_a_waiting_task_resumes_on_input(gw, farm, hook):
    farm.set("flights", text="INPUT_REQUIRED: Which date do you want to fly?")
    t = create(gw, prompt="Find flights from NYC to Paris", metadata={"m": 1})
    waiting = wait_for(lambda: task(gw.base, t["id"]), lambda x: x["status"] == "waiting")
    assert waiting["waiting_for"] == "Which date do you want to fly?"
    assert wait_for(lambda: hook.for_task(t["id"], "task.waiting"), lambda d: len(d) == 1)[0].verified
    farm.set("flights", text="booked for {request}")
    r = httpx.post(f"{gw.base}/v1/tasks/{t['id']}/input", json={"input": "2025-07-14"})
    assert r.status_code == 200 and r.json()["status"] == "running"
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete" and done["result"]["text"] == "booked for 2025-07-14"
    last = farm.calls_of("flights", t["id"])[-1]
    assert last.messages[-2] == {"role": "assistant", "name": "flights",
                                 "content": "Which date do you want to fly?"}
    again = httpx.post(f"{gw.base}/v1/tasks/{t['id']}/input", json={"input": "x"})
    assert again.status_code == 409


def test_list_is_newest_first_with_pagination_and_filters(gw):
    user = f"pager-{time.time_ns()}"
    ids = [create(gw, prompt=f"What is the weather in town {i}?", user_id=user, mode="test")["id"] for i in range(5)]
    for i in ids:
        wait_terminal(gw.base, i)
    page1 = httpx.get(f"{gw.base}/v1/tasks", params={"user_id": user, "limit": 2}).json()
    page2 = httpx.get(f"{gw.base}/v1/tasks", params={"user_id": user, "limit": 2, "offset": 2}).json()
    page3 = httpx.get(f"{gw.base}/v1/tasks", params={"user_id": user, "limit": 2, "offset": 4}).json()
    assert page1["has_more"] and page2["has_more"] and not page3["has_more"]
    assert [t["id"] for t in page1["data"] + page2["data"] + page3["data"]] == ids[::-1]
    done = httpx.get(f"{gw.base}/v1/tasks", params={"user_id": user, "status": "complete", "limit": 100}).json()
    assert len(done["data"]) == 5
    assert httpx.get(f"{gw.base}/v1/tasks", params={"user_id": user, "status": "failed"}).json()["data"] == []
    assert httpx.get(f"{gw.base}/v1/tasks", params={"limit": 101}).status_code == 400


def test_prompt_limit_is_10000_characters(gw):
    r = httpx.post(f"{gw.base}/v1/tasks", json={"prompt": "a" * 10_001})
    assert r.status_code == 422 and r.json()["error"]["code"] == "prompt_too_long"
    ok = httpx.post(f"{gw.base}/v1/tasks", json={"prompt": "weather " + "a" * 9_992, "mode": "test"})
    assert ok.status_code == 201
    bad = httpx.post(f"{gw.base}/v1/tasks", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert httpx.get(f"{gw.base}/v1/tasks/task_missing").status_code == 404


def test_mode_test_returns_the_plan_without_calling_agents(gw, farm):
    t = create(gw, prompt=TRAVEL, mode="test")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete"
    plan = done["result"]["plan"]
    assert [(s["tool"], s["depends_on"]) for s in plan] == [("weather", []), ("flights", []), ("summary", [0, 1])]
    assert farm.calls == []


def test_the_chat_endpoint_still_works_next_to_tasks(gw, farm):
    farm.set("weather", text="chat answer")
    r = httpx.post(f"{gw.base}/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "What is the weather in Paris?"}]}, timeout=10)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "chat answer"
