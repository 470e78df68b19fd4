"""``router: hybrid``: the embedded router answers confident turns, the LLM orchestrator only unsure ones.

End to end through the real gateway: mock agents (weather / flights / general) and a mock
orchestrator model (a MockLLM answering ``{"route": [...]}``), counted per test. Plus unit
tests of the embedded router's confidence and of the selector's span attributes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import httpx
import pytest

from gateway.routing.embedded import EmbeddedRouter
from gateway.routing.orchestrator import OrchestratorError
from gateway.routing.selector import AgentSelector
from gateway.routing.types import AgentSpec, RoutingDecision
from tests.support.agent_mocks import (
    MockTeam,
    called_agents,
    chat_posts,
    orchestrated_config,
    route_reply,
)
from tests.support.gateway import Gateway, free_port
from tests.support.mock_llm import Reply

AGENTS = [
    {"id": "weather", "description": "Weather: current conditions and forecasts for cities."},
    {"id": "flights", "description": "Flight search: flights, airlines and fares between cities."},
    {"id": "general", "description": "General questions and small talk.", "default": True},
]
SPECS = [AgentSpec(a["id"], a["description"], bool(a.get("default"))) for a in AGENTS]
CLEAR = "what is the weather forecast for Paris tomorrow?"
VAGUE = "hmm, can you help with that thing from before?"


@pytest.fixture(scope="module")
def team():
    t = MockTeam("weather", "flights", "general", "orch").start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(team, tmp_path_factory):
    port = free_port()
    config = orchestrated_config(team, [a["id"] for a in AGENTS], [
        {"type": "agent", "name": "desk", "port": port, "address": "127.0.0.1", "router": "hybrid",
         "agents": AGENTS, "timeout": "20s"}], free_port())
    config["overrides"]["agent_orchestration_timeout"] = "1s"
    g = Gateway(config, tmp_path_factory.mktemp("router-hybrid")).start()
    g.url = f"http://127.0.0.1:{port}"
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(team):
    team.reset()
    yield
    team.reset()


def ask(gw, text: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gw.url}/v1/chat/completions", content=json.dumps(body).encode(),
                      headers={"content-type": "application/json"}, timeout=30)


def answered_by(team) -> list[str]:
    return [name for name in ("weather", "flights", "general") for _ in called_agents(team[name])]


# -- end to end ----------------------------------------------------------------------------


def test_clear_turn_is_decided_locally(gw, team):
    r = ask(gw, CLEAR)
    assert r.status_code == 200, r.text
    assert len(chat_posts(team["orch"])) == 0
    assert answered_by(team) == ["weather"]


def test_vague_turn_goes_to_the_orchestrator(gw, team):
    team["orch"].enqueue(route_reply("flights"))
    r = ask(gw, VAGUE)
    assert r.status_code == 200, r.text
    assert len(chat_posts(team["orch"])) == 1
    assert answered_by(team) == ["flights"]  # the orchestrator's choice, not the embedded default


def test_only_unsure_turns_reach_the_orchestrator(gw, team):
    team["orch"].enqueue(route_reply("general"), route_reply("general"))
    turns = [CLEAR, VAGUE, "how much is a flight from London to Rome on Friday?", "is it any good for Paris?"]
    for text in turns:
        assert ask(gw, text).status_code == 200
    assert len(chat_posts(team["orch"])) == 2  # the two vague ones


def test_orchestrator_error_falls_back_to_the_embedded_choice(gw, team):
    team["orch"].enqueue(*[Reply("error", status=500, body={"error": {"message": "boom"}})] * 5)
    r = ask(gw, VAGUE)
    assert r.status_code == 200, r.text
    assert len(chat_posts(team["orch"])) >= 1
    assert answered_by(team) == ["general"]


def test_orchestrator_timeout_falls_back_to_the_embedded_choice(gw, team):
    team["orch"].enqueue(*[Reply("hang")] * 5)
    r = ask(gw, VAGUE)
    assert r.status_code == 200, r.text
    assert len(chat_posts(team["orch"])) >= 1
    assert answered_by(team) == ["general"]


# -- confidence (unit) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router():
    return EmbeddedRouter(SPECS)


def conf(router, text: str) -> RoutingDecision:
    return router.route([{"role": "user", "content": text}])


@pytest.mark.parametrize("text", [CLEAR, VAGUE, "hmm", "flights from NYC to Paris on Friday",
                                  "What's the weather in Paris and find me flights from NYC to Paris",
                                  "hello there!", "", "can you help me?"])
def test_confidence_is_in_unit_interval(router, text):
    d = conf(router, text)
    assert d.confidence is not None and 0.0 <= d.confidence <= 1.0


def test_clear_turn_is_more_confident_than_a_vague_one(router):
    clear, vague = conf(router, CLEAR), conf(router, VAGUE)
    assert clear.confidence >= 0.6 > vague.confidence
    assert clear.candidates[0][0] == "weather"
    scores = [score for _, score in clear.candidates]
    assert scores == sorted(scores, reverse=True)


# -- selector (unit): span attributes, fallback, no orchestrator ------------------------------------


class FakeSpan:
    recording = True

    def __init__(self):
        self.attrs = {}

    def update(self, attrs):
        self.attrs.update(attrs)

    def set(self, key, value):
        self.attrs[key] = value


class FakeLLM:
    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.calls = answer, error, 0

    async def route(self, messages, headers, call):
        self.calls += 1
        if self.error:
            raise self.error
        return RoutingDecision(list(self.answer), "orchestrator")


def selector(**listener):
    spec = SimpleNamespace(name="desk", router="hybrid", router_confidence=0.6,
                           agents=[SimpleNamespace(id=a["id"], description=a["description"],
                                                   default=bool(a.get("default"))) for a in AGENTS])
    for k, v in listener.items():
        setattr(spec, k, v)
    return AgentSelector(spec, SimpleNamespace(overrides=None), None, None)


def select(sel, text):
    span = FakeSpan()
    s = asyncio.run(sel.select([{"role": "user", "content": text}], {}, None, span))
    return s, span.attrs


def test_hybrid_without_orchestrator_is_embedded_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="plano.routing"):
        sel = selector()
    assert sel.llm is None and "hybrid" in caplog.text
    s, attrs = select(sel, VAGUE)
    assert s.router == "embedded" and s.decided_by == "embedded" and s.agents == ["general"]
    assert attrs["routing.decided_by"] == "embedded" and attrs["routing.confidence"] < 0.6


@pytest.mark.parametrize("text, calls, decided_by, agents", [
    (CLEAR, 0, "embedded", ["weather"]),
    (VAGUE, 1, "llm", ["flights"]),
])
def test_span_records_confidence_candidates_and_who_decided(text, calls, decided_by, agents):
    sel = selector()
    sel.llm = FakeLLM(["flights"])
    s, attrs = select(sel, text)
    assert sel.llm.calls == calls and s.agents == agents
    assert s.decided_by == decided_by and attrs["routing.decided_by"] == decided_by
    assert attrs["routing.mode"] == "hybrid" and attrs["routing.confidence_threshold"] == 0.6
    assert 0.0 <= attrs["routing.confidence"] <= 1.0
    assert attrs["routing.candidates"].split(",")[0].split(":")[0] == ("weather" if text == CLEAR else s.candidates[0][0])


@pytest.mark.parametrize("error", [OrchestratorError("HTTP 500"), TimeoutError(), RuntimeError("bug")])
def test_orchestrator_failure_is_llm_fallback(error):
    sel = selector()
    sel.llm = FakeLLM(error=error)
    s, attrs = select(sel, VAGUE)
    assert s.agents == ["general"] and s.router == "embedded" and s.fallback
    assert s.decided_by == "llm-fallback" and attrs["routing.decided_by"] == "llm-fallback"


def test_threshold_is_the_listener_setting():
    sel = selector(router_confidence=0.0)
    sel.llm = FakeLLM(["flights"])
    s, _ = select(sel, VAGUE)
    assert sel.llm.calls == 0 and s.decided_by == "embedded"


def test_a_matcher_rerank_is_recorded_as_who_decided(monkeypatch):
    """An unsure pick the trained matcher re-ranked says so on the routing span."""
    import numpy as np

    import gateway.routing.embedded as emb

    sel = selector()
    router = sel.embedded

    class Prefer:
        calls = 0

        def logits(self, text, only=None):
            Prefer.calls += 1
            return np.array([20.0 if router.ids[i] == "flights" else -20.0 for i in only], np.float32)

    router.matcher = Prefer()
    monkeypatch.setattr(emb, "RERANK_BELOW", 1e9)  # every specialist pick counts as unsure
    monkeypatch.setattr(emb, "RERANK_TOP", len(router.ids))
    s, attrs = select(sel, CLEAR)
    assert Prefer.calls == 1 and s.agents == ["flights"]
    assert s.decided_by == attrs["routing.decided_by"] == "embedded+matcher"
    monkeypatch.setattr(emb, "RERANK_BELOW", -1e9)  # sure: the matcher is not asked
    s, attrs = select(sel, CLEAR)
    assert Prefer.calls == 1 and s.agents == ["weather"] and attrs["routing.decided_by"] == "embedded"
