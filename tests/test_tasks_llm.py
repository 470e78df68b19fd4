"""The tasks planner and executor with an orchestration model: a mock model on loopback (a scripted
OpenAI-compatible endpoint) returns structured plans and reformulated requests.

- the model's plan is validated; an invalid answer gets exactly one repair request quoting the
  problem; a plan still invalid after it falls back to the embedded planner;
- a refused step is reformulated by the model, under the failed step.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.task_agents import AgentFarm
from tests.support.task_gateway import config, wait_terminal

AGENTS = ["weather", "flights", "summary"]
TRAVEL = "What's the weather in Paris and find flights from NYC to Paris, then write a travel summary of both"
PLAN = {"steps": [{"agent": "weather", "request": "Weather in Paris this week", "depends_on": []},
                  {"agent": "flights", "request": "Flights from NYC to Paris", "depends_on": []},
                  {"agent": "summary", "request": "A travel summary of the weather and flights", "depends_on": [0, 1]}]}


class Orchestrator:
    """What the mock model answers: plan requests from ``plans`` in order, reformulations from
    ``rewrites``; every request is recorded by kind."""

    def __init__(self) -> None:
        self.plans: list[str] = []
        self.rewrites: list[str] = []
        self.asked: dict[str, list[list[dict]]] = {"plan": [], "rewrite": []}

    def reply(self, messages: list[dict]) -> str:
        first = messages[0]["content"]
        kind = "plan" if first.startswith("You plan workflows") else "rewrite"
        self.asked[kind].append(messages)
        script = self.plans if kind == "plan" else self.rewrites
        return script.pop(0) if script else "no more answers scripted"


@pytest.fixture(scope="module")
def farm():
    f = AgentFarm(*AGENTS, "orch").start()
    yield f
    f.stop()


@pytest.fixture
def orch(farm):
    farm.reset()
    o = Orchestrator()
    farm.set("orch", reply=o.reply)
    return o


@pytest.fixture(scope="module")
def gw(farm, tmp_path_factory):
    port = free_port()
    work = tmp_path_factory.mktemp("tasks-llm")
    cfg = config(farm, port, store=f"sqlite:///{work}/tasks.db", agents=AGENTS)
    cfg["model_providers"] = [{"model": "openai/orch", "access_key": "sk-orch", "base_url": f"{farm.url('orch')}/v1",
                               "default": True}]
    cfg["overrides"] = {"agent_orchestration_model": "openai/orch"}
    del cfg["listeners"][0]["router"]  # the listener's orchestrator is the model (tasks.planner: auto)
    g = Gateway(cfg, work, env={"PLANO_HOME": str(work)}).start()
    g.base = f"http://127.0.0.1:{port}"
    yield g
    g.stop()


def create(gw, **body) -> dict:
    r = httpx.post(f"{gw.base}/v1/tasks", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_the_model_plans_and_one_repair_request_fixes_an_answer_that_is_not_json(gw, farm, orch):
    orch.plans = ["Sure! First the weather, then flights, then a summary.", json.dumps(PLAN)]
    planned = wait_terminal(gw.base, create(gw, prompt=TRAVEL, mode="test")["id"])
    assert planned["status"] == "complete", planned
    assert planned["result"]["planner"] == "llm"
    assert [(s["tool"], s["request"], s["depends_on"]) for s in planned["result"]["plan"]] == [
        ("weather", "Weather in Paris this week", []), ("flights", "Flights from NYC to Paris", []),
        ("summary", "A travel summary of the weather and flights", [0, 1])]
    assert len(orch.asked["plan"]) == 2
    repair = orch.asked["plan"][1]
    assert repair[1] == {"role": "assistant", "content": "Sure! First the weather, then flights, then a summary."}
    assert repair[2]["content"].startswith("That plan is invalid: expected {\"steps\"")
    assert all(f"- {a}:" in orch.asked["plan"][0][0]["content"] for a in AGENTS)  # the agents are offered
    assert farm.calls_of("weather") == []  # mode test: no agent ran

    # a live run follows the model's plan: the pair first, the summary with both outputs
    orch.plans = [json.dumps(PLAN)]
    farm.set("weather", text="WEATHER: mild")
    farm.set("flights", text="FLIGHTS: AF011")
    t = create(gw, prompt=TRAVEL)
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    (summary,) = farm.calls_of("summary", t["id"])
    handed = {m.get("name"): m["content"] for m in summary.messages if m["role"] == "assistant"}
    assert handed == {"weather": "WEATHER: mild", "flights": "FLIGHTS: AF011"}
    assert summary.messages[-1]["content"] == "A travel summary of the weather and flights"


def test_a_plan_still_invalid_after_one_repair_falls_back_to_the_embedded_planner(gw, farm, orch):
    orch.plans = [json.dumps({"steps": [{"agent": "hotels", "request": "Book a hotel", "depends_on": []}]}),
                  json.dumps({"steps": [{"agent": "weather", "request": "Weather", "depends_on": [3]}]}),
                  json.dumps(PLAN)]  # never asked for: one repair attempt only
    planned = wait_terminal(gw.base, create(gw, prompt=TRAVEL, mode="test")["id"])
    assert planned["status"] == "complete", planned
    assert planned["result"]["planner"] == "embedded"
    assert [(s["tool"], s["depends_on"]) for s in planned["result"]["plan"]] == [
        ("weather", []), ("flights", []), ("summary", [0, 1])]
    assert len(orch.asked["plan"]) == 2
    assert "unknown agent 'hotels'" in orch.asked["plan"][1][-1]["content"]


def test_a_refused_step_is_reformulated_by_the_model_under_the_failed_step(gw, farm, orch):
    orch.plans = [json.dumps({"steps": [{"agent": "flights", "request": "Flights from NYC to Paris",
                                         "depends_on": []}]})]
    orch.rewrites = ["Find flights from NYC to Paris departing 2025-07-14, any airline"]
    farm.set("flights", fail=2, per_task=True, status=422, error="missing_date: give a departure date",
             text="AF011 for: {request}")
    t = create(gw, prompt="Find flights from NYC to Paris for my trip next week")
    done = wait_terminal(gw.base, t["id"])
    assert done["status"] == "complete", done
    calls = farm.calls_of("flights", t["id"])
    assert [c.messages[-1]["content"] for c in calls] == [
        "Flights from NYC to Paris", "Flights from NYC to Paris",
        "Find flights from NYC to Paris departing 2025-07-14, any airline"]
    (asked,) = orch.asked["rewrite"]
    assert "missing_date: give a departure date" in asked[0]["content"]
    assert "Request: Flights from NYC to Paris" in asked[0]["content"]
    steps = httpx.get(f"{gw.base}/v1/tasks/{t['id']}/trace", timeout=10).json()["steps"]
    assert [(s["tool"], s["status"], s["parent"]) for s in steps] == [("flights", "failed", None),
                                                                        ("flights", "complete", 0)]
    assert "reformulated" in steps[1]["note"] and "orchestration model" in steps[1]["note"]
    assert done["result"]["text"] == "AF011 for: Find flights from NYC to Paris departing 2025-07-14, any airline"
